//! `locate()` against a bare `maxminddb` City lookup of the same addresses, with 1 000
//! registered nodes (900 edges in 90 sites, 100 ISP boxes) and 100 000 ISP prefixes.
//! Target: locate ≤ 1.2× the bare lookup. Run: `cargo bench -p host-locator`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{Criterion, criterion_group, criterion_main};
use host_locator::Locator;
use host_locator::config::Config;
use host_locator::geo::GeoPoint;
use host_locator::mmdb::{Value, Writer};
use host_locator::registry::{Capacity, Load, NodeKind, Registration, Urls};
use host_locator::select::Request;
use maxminddb::{Reader, geoip2};
use telemetry::Clock;

/// A deterministic pseudo-random sequence (xorshift), so every run measures the same inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// A record shaped like a real GeoLite2-City one: names in the eight languages MaxMind
/// ships, continent, country, registered country, a subdivision, postal code and time zone.
/// (The bare lookup's cost depends on this; a thin record would flatter it.)
fn city(index: u32, lat: f64, lon: f64) -> Value {
    let names = |base: &str| {
        Value::Map(
            ["de", "en", "es", "fr", "ja", "pt-BR", "ru", "zh-CN"]
                .iter()
                .map(|lang| ((*lang).to_owned(), Value::Str(format!("{base} ({lang})"))))
                .collect(),
        )
    };
    let place =
        |id: u32, base: &str| Value::map([("geoname_id", Value::U32(id)), ("names", names(base))]);
    let country = |id: u32, code: &str, base: &str| {
        Value::map([
            ("geoname_id", Value::U32(id)),
            ("iso_code", Value::str(code)),
            ("names", names(base)),
        ])
    };
    Value::map([
        ("city", place(100_000 + index, &format!("City {index}"))),
        (
            "continent",
            Value::map([
                ("code", Value::str("EU")),
                ("geoname_id", Value::U32(6_255_148)),
                ("names", names("Europe")),
            ]),
        ),
        (
            "country",
            country(
                2_921_044 + index % 50,
                "DE",
                &format!("Country {}", index % 50),
            ),
        ),
        (
            "location",
            Value::map([
                ("accuracy_radius", Value::U16(20)),
                ("latitude", Value::Double(lat)),
                ("longitude", Value::Double(lon)),
                ("time_zone", Value::str("Europe/Berlin")),
            ]),
        ),
        (
            "postal",
            Value::map([("code", Value::Str(format!("{:05}", index * 7 % 99_999)))]),
        ),
        (
            "registered_country",
            country(
                2_921_044 + index % 50,
                "DE",
                &format!("Country {}", index % 50),
            ),
        ),
        (
            "subdivisions",
            Value::Array(vec![Value::map([
                ("geoname_id", Value::U32(2_950_000 + index % 16)),
                ("iso_code", Value::Str(format!("S{}", index % 16))),
                ("names", names(&format!("Region {}", index % 16))),
            ])]),
        ),
    ])
}

fn setup() -> (Locator, Reader<Vec<u8>>, Vec<IpAddr>) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    // GeoIP: 50 000 /24 networks in 500 cities around the world.
    let cities: Vec<(f64, f64)> = (0..500)
        .map(|_| {
            (
                (rng.next() % 120) as f64 - 55.0,
                (rng.next() % 360) as f64 - 180.0,
            )
        })
        .collect();
    let mut writer = Writer::new("GeoLite2-City", "benchmark");
    let mut addresses = Vec::new();
    for i in 0..50_000u32 {
        let network = Ipv4Addr::from((i + (1 << 16)) << 8);
        let (lat, lon) = cities[(i % 500) as usize];
        writer.insert(
            format!("{network}/24").parse().unwrap(),
            city(i % 500, lat, lon),
        );
        if i % 50 == 0 {
            addresses.push(IpAddr::V4(Ipv4Addr::from(u32::from(network) | 7)));
        }
    }
    let bytes = writer.build(0);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.mmdb");
    std::fs::write(&path, &bytes).unwrap();
    let locator = Locator::new(
        Config {
            geoip_db: Some(path),
            // The nodes register once and never heartbeat: keep them fresh for the whole run,
            // or after ten seconds every answer would take the "no node" path and the
            // benchmark would measure that instead.
            heartbeat_timeout_secs: 24 * 3600,
            ..Config::default()
        },
        Clock::system(),
    )
    .unwrap();
    let registration =
        |id: String, kind: NodeKind, site: String, location: GeoPoint, prefixes: Vec<String>| {
            Registration {
                urls: Urls {
                    h1: None,
                    h2: Some(format!("https://{id}.cdn.example")),
                    h3: None,
                },
                id,
                kind,
                site,
                location: Some(location),
                address: None,
                capacity: Capacity {
                    connections: 10_000,
                    egress_bps: 0,
                },
                load: Load {
                    connections: rng_load(),
                    egress_bps: 0,
                },
                healthy: true,
                overloaded: false,
                prefixes,
                formats: None,
            }
        };
    // 900 edges in 90 sites.
    for site in 0..90 {
        let (lat, lon) = cities[site * 5];
        for n in 0..10 {
            let node = registration(
                format!("edge-{site}-{n}"),
                NodeKind::Edge,
                format!("site-{site}"),
                GeoPoint { lat, lon },
                Vec::new(),
            );
            let description = node
                .validate(|_| None, locator.config.default_location)
                .unwrap();
            locator
                .registry
                .upsert(description, &node, false, locator.clock.now_ms());
        }
    }
    // 100 ISP boxes with 1 000 prefixes each, in 10.0.0.0/8-like space outside the GeoIP
    // networks, plus a few covering GeoIP networks so some clients hit a box.
    for b in 0..100u32 {
        let mut prefixes: Vec<String> = (0..1000u32)
            .map(|p| format!("{}/24", Ipv4Addr::from((100 << 24) | (b << 14) | (p << 8))))
            .collect();
        prefixes.push(format!("{}/24", Ipv4Addr::from((b * 500 + (1 << 16)) << 8)));
        let node = registration(
            format!("isp-{b}"),
            NodeKind::IspBox,
            format!("isp-{b}"),
            GeoPoint { lat: 0.0, lon: 0.0 },
            prefixes,
        );
        let description = node
            .validate(|_| None, locator.config.default_location)
            .unwrap();
        locator
            .registry
            .upsert(description, &node, false, locator.clock.now_ms());
    }
    let snapshot = locator.registry.snapshot();
    let prefixes: usize = snapshot
        .nodes
        .iter()
        .map(|node| node.description.prefixes.len())
        .sum();
    assert_eq!(snapshot.nodes.len(), 1000);
    assert!(prefixes >= 100_000, "{prefixes}");
    std::mem::forget(dir);
    (locator, Reader::from_source(bytes).unwrap(), addresses)
}

fn rng_load() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    (NEXT.fetch_add(2654435761, Ordering::Relaxed) >> 7) % 5000
}

fn bench(c: &mut Criterion) {
    let (locator, reader, addresses) = setup();
    let tracks: Vec<String> = (0..addresses.len()).map(|i| format!("track-{i}")).collect();
    // Every address resolves, and answers exist.
    for (ip, track) in addresses.iter().zip(&tracks).take(50) {
        assert!(
            reader
                .lookup(*ip)
                .unwrap()
                .decode::<geoip2::City>()
                .unwrap()
                .is_some()
        );
        let answer = locator.locate(
            *ip,
            None,
            &Request {
                track,
                format: None,
                protocol: None,
            },
        );
        assert!(answer.primary().is_some());
    }
    let mut group = c.benchmark_group("locate");
    group.bench_function("maxminddb_city_lookup", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % addresses.len();
            black_box(
                reader
                    .lookup(black_box(addresses[i]))
                    .unwrap()
                    .decode::<geoip2::City>()
                    .unwrap(),
            )
        })
    });
    group.bench_function("locator_locate", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % addresses.len();
            let request = Request {
                track: &tracks[i],
                format: None,
                protocol: None,
            };
            black_box(locator.locate(black_box(addresses[i]), None, &request))
        })
    });
    // Where the time goes (diagnostics, not targets).
    group.bench_function("part_geoip_place", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % addresses.len();
            black_box(locator.place(black_box(addresses[i]), None))
        })
    });
    let snapshot = locator.registry.snapshot();
    let placed: Vec<GeoPoint> = addresses
        .iter()
        .map(|ip| locator.place(*ip, None).0)
        .collect();
    group.bench_function("part_nearest_sites", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % addresses.len();
            black_box(host_locator::select::nearest_sites(
                &snapshot, placed[i], false,
            ))
        })
    });
    group.bench_function("part_nearest_sites_memo", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % addresses.len();
            black_box(host_locator::select::nearest_sites_memo(
                &snapshot, placed[i],
            ))
        })
    });
    group.finish();
    // Still real answers after the measurements.
    let request = Request {
        track: &tracks[0],
        format: None,
        protocol: None,
    };
    assert!(
        locator
            .locate(addresses[0], None, &request)
            .primary()
            .is_some()
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
