//! Node selection: a pure function of the registry snapshot, the client, the request and the
//! time — no I/O, no clock, no randomness.
//!
//! 1. A healthy ISP box whose prefixes cover the client wins (longest prefix first; a shorter
//!    covering prefix is tried when every box of the longer one is unavailable).
//! 2. Otherwise edges, site by site, nearest first by great-circle distance plus a load
//!    penalty (`distance + load_penalty_km × load²`, load being the mean fraction of capacity
//!    of the site's available nodes): light load barely counts, while a nearly full site loses
//!    to an idle one a few hundred kilometres further.
//! 3. Within a site, rendezvous hashing on the track id orders the nodes, so each track stays
//!    on one node of its site and adding a node moves only its share of tracks.
//!
//! Nodes that cannot serve the requested protocol or format are skipped. The answer is a
//! ranked list with the reason for each entry.

use std::net::IpAddr;

use serde::Serialize;

use crate::geo::{GeoPoint, distance_from_dot, unit_vector};
use crate::registry::{Format, Protocol, Snapshot};

/// Why a node is in an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
#[repr(usize)]
pub enum Reason {
    /// An ISP box covering the client's address.
    IspBox,
    /// The nearest available edge.
    NearestEdge,
    /// A further choice, for failover.
    Fallback,
    /// Nothing can serve the request.
    NoNode,
}

impl Reason {
    /// The label used in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::IspBox => "isp-box",
            Self::NearestEdge => "nearest-edge",
            Self::Fallback => "fallback",
            Self::NoNode => "no-node",
        }
    }
}

/// What is asked.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The track (the rendezvous key).
    pub track: &'a str,
    /// Wanted format, if any.
    pub format: Option<Format>,
    /// Wanted protocol, if any.
    pub protocol: Option<Protocol>,
}

/// Who asks, and from where.
#[derive(Debug, Clone, Copy)]
pub struct Client {
    /// The client's address.
    pub ip: IpAddr,
    /// Its location (GeoIP, override, or the default region).
    pub location: GeoPoint,
}

/// Tuning.
#[derive(Debug, Clone, Copy)]
pub struct Params {
    /// A node silent for longer than this (ms) is out of every answer.
    pub heartbeat_timeout_ms: i64,
    /// The distance, in km, a fully loaded site is pushed back by.
    pub load_penalty_km: f64,
    /// Most candidates in an answer.
    pub max_candidates: usize,
}

/// One ranked candidate.
#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    /// Index into the snapshot's nodes.
    pub node: usize,
    /// Why it is here.
    pub reason: Reason,
    /// Great-circle distance from the client, km (0 for ISP boxes).
    pub distance_km: f64,
}

/// The ranked answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Best first.
    pub candidates: Vec<Candidate>,
}

impl Answer {
    /// The answer's reason: its primary's, or `no-node`.
    pub fn reason(&self) -> Reason {
        self.candidates
            .first()
            .map_or(Reason::NoNode, |candidate| candidate.reason)
    }
}

use crate::near::NEAR_SHARD_CAPACITY;
pub use crate::near::{NEAR_SITES, Near, NearMemo};
pub use crate::rendezvous::{node_hash, rendezvous_weight, track_hash};

/// The nearest few sites of `point` (as [`nearest_sites`] without `all`), remembered per
/// snapshot and place: clients of one city share the scan.
pub fn nearest_sites_memo(snapshot: &Snapshot, point: GeoPoint) -> Near {
    let key = NearMemo::key(point);
    let shard = snapshot.near.shard(key);
    if let Some(near) = shard.lock().expect("near-site memo lock").get(&key) {
        return *near;
    }
    let found = nearest_sites(snapshot, point, false);
    let mut near = Near {
        sites: [(usize::MAX, 0.0); NEAR_SITES],
        len: found.len(),
    };
    near.sites[..found.len()].copy_from_slice(&found);
    let mut shard = shard.lock().expect("near-site memo lock");
    if shard.len() >= NEAR_SHARD_CAPACITY {
        shard.clear();
    }
    shard.insert(key, near);
    near
}

/// The sites of `snapshot` by plain distance from `point`, nearest first (at most
/// [`NEAR_SITES`]; all of them when `all`).
pub fn nearest_sites(snapshot: &Snapshot, point: GeoPoint, all: bool) -> Vec<(usize, f64)> {
    let u = unit_vector(point);
    let dot = |site: &crate::registry::Site| {
        u[0] * site.unit[0] + u[1] * site.unit[1] + u[2] * site.unit[2]
    };
    let mut sites: Vec<(usize, f64)> = if all {
        let mut every: Vec<(usize, f64)> = snapshot
            .sites
            .iter()
            .enumerate()
            .map(|(index, site)| (index, dot(site)))
            .collect();
        every.sort_by(|a, b| b.1.total_cmp(&a.1));
        every
    } else {
        // The nearest few, by insertion into a small sorted array: no allocation per site.
        let mut best = [(usize::MAX, f64::NEG_INFINITY); NEAR_SITES];
        for (index, site) in snapshot.sites.iter().enumerate() {
            let d = dot(site);
            if d > best[NEAR_SITES - 1].1 {
                let mut slot = NEAR_SITES - 1;
                while slot > 0 && best[slot - 1].1 < d {
                    best[slot] = best[slot - 1];
                    slot -= 1;
                }
                best[slot] = (index, d);
            }
        }
        best.iter()
            .copied()
            .filter(|(index, _)| *index != usize::MAX)
            .collect()
    };
    for site in &mut sites {
        site.1 = distance_from_dot(site.1);
    }
    sites
}

/// The [`serves`](crate::registry::serves) bits a request needs.
fn needs(request: &Request<'_>) -> u8 {
    use crate::registry::serves;
    let protocol = match request.protocol {
        Some(Protocol::H1) => serves::H1,
        Some(Protocol::H2) => serves::H2,
        Some(Protocol::H3) => serves::H3,
        None => 0,
    };
    let format = match request.format {
        Some(Format::Hls) => serves::HLS,
        Some(Format::Dash) => serves::DASH,
        None => 0,
    };
    protocol | format
}

/// Chooses nodes for `client` asking `request` at `now`. `near` are the nearest sites for the
/// client's location, from [`nearest_sites`].
pub fn select(
    snapshot: &Snapshot,
    near: &[(usize, f64)],
    client: &Client,
    request: &Request<'_>,
    now: i64,
    params: &Params,
) -> Answer {
    let need = needs(request);
    let nodes = &snapshot.nodes;
    let usable = |index: usize| {
        let node = &nodes[index];
        node.serves & need == need && node.is_available(now, params.heartbeat_timeout_ms)
    };
    let mut candidates = Vec::with_capacity(params.max_candidates);
    let track = track_hash(request.track);

    // 1. ISP boxes covering the client, longest prefix first.
    if let Some(mut boxes) = covering_boxes(snapshot, client.ip, &usable) {
        boxes.sort_unstable_by_key(|&index| {
            std::cmp::Reverse(rendezvous_weight(track, nodes[index].hash))
        });
        candidates.extend(
            boxes
                .into_iter()
                .take(params.max_candidates)
                .map(|index| Candidate {
                    node: index,
                    reason: Reason::IspBox,
                    distance_km: 0.0,
                }),
        );
    }

    // 2. Edges by penalised site distance: the nearest sites ranked from their aggregates;
    // if none of them yields a usable edge for this request, every site, counted exactly.
    let isp_boxes = candidates.len();
    let sites = rank_sites(snapshot, near, need, now, params);
    let mut rest = pick_edges(snapshot, &sites, &usable, track, params, &mut candidates);
    if candidates.len() == isp_boxes && candidates.len() < params.max_candidates && rest.is_empty()
    {
        let everything = nearest_sites(snapshot, client.location, true);
        let sites = rank_sites_exact(snapshot, &everything, &usable, params);
        rest = pick_edges(snapshot, &sites, &usable, track, params, &mut candidates);
    }
    if candidates.len() < params.max_candidates && !rest.is_empty() {
        // Same-site spares, nearest site first and by rendezvous weight within a site.
        rest.sort_unstable_by(|a, b| a.2.total_cmp(&b.2).then(b.1.cmp(&a.1)));
        candidates.extend(rest.into_iter().map(|(index, _, distance)| Candidate {
            node: index,
            reason: Reason::Fallback,
            distance_km: distance,
        }));
    }
    candidates.truncate(params.max_candidates);
    Answer { candidates }
}

/// The primary edge (by rendezvous weight) of each site in order, then returns the other
/// usable edges as spares `(node, weight, distance)` — collected only when the primaries did
/// not fill the answer (the common case needs none, so it allocates none).
fn pick_edges(
    snapshot: &Snapshot,
    sites: &[(usize, f64, f64)],
    usable: &impl Fn(usize) -> bool,
    track: u64,
    params: &Params,
    candidates: &mut Vec<Candidate>,
) -> Vec<(usize, u64, f64)> {
    let nodes = &snapshot.nodes;
    // The primary edge of each site first (independent failure domains), then the rest.
    let mut primaries = 0;
    for &(site, distance, _) in sites {
        if candidates.len() >= params.max_candidates {
            break;
        }
        let best = snapshot.sites[site]
            .edges
            .iter()
            .filter(|&&index| usable(index))
            .map(|&index| (rendezvous_weight(track, nodes[index].hash), index))
            .max();
        if let Some((_, index)) = best {
            let reason = if candidates.is_empty() {
                Reason::NearestEdge
            } else {
                Reason::Fallback
            };
            candidates.push(Candidate {
                node: index,
                reason,
                distance_km: distance,
            });
            primaries += 1;
        }
    }
    let mut rest: Vec<(usize, u64, f64)> = Vec::new();
    if candidates.len() >= params.max_candidates {
        return rest;
    }
    // Too few sites: the other usable edges of the sites seen are the spares.
    let chosen = &candidates[candidates.len() - primaries..];
    for &(site, distance, _) in sites {
        for &index in &snapshot.sites[site].edges {
            if usable(index) && !chosen.iter().any(|candidate| candidate.node == index) {
                rest.push((index, rendezvous_weight(track, nodes[index].hash), distance));
            }
        }
    }
    rest
}

/// The near sites that may serve the request, ranked by distance plus the load penalty from
/// each site's aggregate (recent within a second); best score first.
fn rank_sites(
    snapshot: &Snapshot,
    near: &[(usize, f64)],
    need: u8,
    now: i64,
    params: &Params,
) -> Vec<(usize, f64, f64)> {
    let mut ranked: Vec<(usize, f64, f64)> = Vec::with_capacity(near.len());
    for &(index, distance) in near {
        let site = &snapshot.sites[index];
        if site.serves & need != need {
            continue;
        }
        let (count, mean_load) =
            site.availability(&snapshot.nodes, now, params.heartbeat_timeout_ms);
        if count > 0 {
            ranked.push((
                index,
                distance,
                distance + params.load_penalty_km * mean_load * mean_load,
            ));
        }
    }
    ranked.sort_by(|a, b| a.2.total_cmp(&b.2));
    ranked
}

/// Sites with at least one usable edge, with their distance and score, best score first.
fn rank_sites_exact(
    snapshot: &Snapshot,
    near: &[(usize, f64)],
    usable: &impl Fn(usize) -> bool,
    params: &Params,
) -> Vec<(usize, f64, f64)> {
    let mut ranked: Vec<(usize, f64, f64)> = Vec::with_capacity(near.len());
    for &(site, distance) in near {
        let (mut count, mut load) = (0u32, 0u32);
        for &index in &snapshot.sites[site].edges {
            if usable(index) {
                count += 1;
                load += snapshot.nodes[index]
                    .load_milli
                    .load(std::sync::atomic::Ordering::Relaxed);
            }
        }
        if count > 0 {
            let mean_load = f64::from(load) / f64::from(count) / 1000.0;
            ranked.push((
                site,
                distance,
                distance + params.load_penalty_km * mean_load * mean_load,
            ));
        }
    }
    ranked.sort_by(|a, b| a.2.total_cmp(&b.2));
    ranked
}

/// The usable ISP boxes of the longest covering prefix that has any.
fn covering_boxes(
    snapshot: &Snapshot,
    ip: IpAddr,
    usable: &impl Fn(usize) -> bool,
) -> Option<Vec<usize>> {
    match ip {
        IpAddr::V4(v4) => longest_usable(&snapshot.v4, 32, usable, |len| {
            ipnet::Ipv4Net::new(v4, len).ok().map(|net| net.trunc())
        }),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => covering_boxes(snapshot, IpAddr::V4(v4), usable),
            None => longest_usable(&snapshot.v6, 128, usable, |len| {
                ipnet::Ipv6Net::new(v6, len).ok().map(|net| net.trunc())
            }),
        },
    }
}

/// Walks from the longest prefix of `map` covering the address (`query(len)` is its prefix of
/// length `len`) to shorter ones until one has usable boxes.
fn longest_usable<P: prefix_trie::Prefix>(
    map: &prefix_trie::PrefixMap<P, Vec<usize>>,
    max_len: u8,
    usable: &impl Fn(usize) -> bool,
    query: impl Fn(u8) -> Option<P>,
) -> Option<Vec<usize>> {
    let mut len = max_len;
    loop {
        let (prefix, boxes) = map.get_lpm(&query(len)?)?;
        let alive: Vec<usize> = boxes
            .iter()
            .copied()
            .filter(|&index| usable(index))
            .collect();
        if !alive.is_empty() {
            return Some(alive);
        }
        len = prefix.prefix_len().checked_sub(1)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{Capacity, Load, NodeKind, Registration, Registry, Urls};

    const DEFAULT: GeoPoint = GeoPoint {
        lat: 50.0,
        lon: 8.0,
    };

    fn edge(id: &str, site: &str, lat: f64, lon: f64) -> Registration {
        Registration {
            id: id.into(),
            kind: NodeKind::Edge,
            site: site.into(),
            urls: Urls {
                h1: Some(format!("http://{id}.example")),
                h2: Some(format!("https://{id}.example")),
                h3: None,
            },
            location: Some(GeoPoint { lat, lon }),
            address: None,
            capacity: Capacity {
                connections: 1000,
                egress_bps: 0,
            },
            load: Load::default(),
            healthy: true,
            overloaded: false,
            prefixes: Vec::new(),
            formats: None,
        }
    }

    fn isp_box(id: &str, prefixes: &[&str]) -> Registration {
        Registration {
            kind: NodeKind::IspBox,
            prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
            ..edge(id, &format!("isp-{id}"), 0.0, 0.0)
        }
    }

    fn registry(nodes: &[Registration]) -> Registry {
        let registry = Registry::default();
        for node in nodes {
            registry.upsert(node.validate(|_| None, DEFAULT).unwrap(), node, false, 0);
        }
        registry
    }

    const PARAMS: Params = Params {
        heartbeat_timeout_ms: 10_000,
        load_penalty_km: 500.0,
        max_candidates: 5,
    };

    fn ids(
        registry: &Registry,
        client: Client,
        track: &str,
        protocol: Option<Protocol>,
        now: i64,
    ) -> Vec<(String, Reason)> {
        let snapshot = registry.snapshot();
        let near = nearest_sites(&snapshot, client.location, false);
        let request = Request {
            track,
            format: None,
            protocol,
        };
        select(&snapshot, &near, &client, &request, now, &PARAMS)
            .candidates
            .iter()
            .map(|c| (snapshot.nodes[c.node].description.id.clone(), c.reason))
            .collect()
    }

    fn client(ip: &str, lat: f64, lon: f64) -> Client {
        Client {
            ip: ip.parse().unwrap(),
            location: GeoPoint { lat, lon },
        }
    }

    #[test]
    fn remembered_nearest_sites_are_the_scanned_ones() {
        let registry = registry(&[
            edge("a1", "fra", 50.11, 8.68),
            edge("b1", "ams", 52.37, 4.90),
            edge("c1", "par", 48.86, 2.35),
        ]);
        let snapshot = registry.snapshot();
        for point in [
            GeoPoint {
                lat: 51.0,
                lon: 5.0,
            },
            GeoPoint {
                lat: 48.0,
                lon: 3.0,
            },
        ] {
            let scanned = nearest_sites(&snapshot, point, false);
            assert_eq!(
                nearest_sites_memo(&snapshot, point).as_slice(),
                &scanned[..]
            );
            // From the memo the second time, the same.
            assert_eq!(
                nearest_sites_memo(&snapshot, point).as_slice(),
                &scanned[..]
            );
        }
    }

    #[test]
    fn nearest_site_first_then_fallbacks() {
        let registry = registry(&[
            edge("fra-1", "fra", 50.1, 8.7),
            edge("lon-1", "lon", 51.5, -0.1),
            edge("nyc-1", "nyc", 40.7, -74.0),
        ]);
        let paris = client("203.0.113.1", 48.85, 2.35);
        let answer = ids(&registry, paris, "t1", None, 0);
        assert_eq!(answer[0], ("lon-1".into(), Reason::NearestEdge));
        assert_eq!(answer[1], ("fra-1".into(), Reason::Fallback));
        assert_eq!(answer[2], ("nyc-1".into(), Reason::Fallback));
    }

    #[test]
    fn isp_boxes_win_by_longest_prefix() {
        let registry = registry(&[
            edge("fra-1", "fra", 50.1, 8.7),
            isp_box("wide", &["198.51.100.0/22"]),
            isp_box("narrow", &["198.51.100.0/24", "2001:db8:1::/48"]),
        ]);
        let inside = ids(&registry, client("198.51.100.77", 50.0, 8.0), "t", None, 0);
        assert_eq!(inside[0], ("narrow".into(), Reason::IspBox));
        assert_eq!(
            inside[1],
            ("fra-1".into(), Reason::Fallback),
            "an edge still backs the box up"
        );
        let wider = ids(&registry, client("198.51.101.1", 50.0, 8.0), "t", None, 0);
        assert_eq!(wider[0].0, "wide");
        let edge_of_prefix = ids(&registry, client("198.51.103.255", 50.0, 8.0), "t", None, 0);
        assert_eq!(edge_of_prefix[0].0, "wide");
        let outside = ids(&registry, client("198.51.104.0", 50.0, 8.0), "t", None, 0);
        assert_eq!(outside[0], ("fra-1".into(), Reason::NearestEdge));
        let v6 = ids(
            &registry,
            client("2001:db8:1:ffff::1", 50.0, 8.0),
            "t",
            None,
            0,
        );
        assert_eq!(v6[0].0, "narrow");
        let mapped = ids(
            &registry,
            client("::ffff:198.51.100.9", 50.0, 8.0),
            "t",
            None,
            0,
        );
        assert_eq!(mapped[0].0, "narrow");
        // The narrow box goes silent: the wide one covers its clients.
        let later = 20_000;
        registry
            .snapshot()
            .nodes
            .iter()
            .filter(|n| n.description.id != "narrow")
            .for_each(|n| {
                n.last_seen_ms
                    .store(later, std::sync::atomic::Ordering::SeqCst)
            });
        assert_eq!(
            ids(
                &registry,
                client("198.51.100.77", 50.0, 8.0),
                "t",
                None,
                later
            )[0]
            .0,
            "wide"
        );
    }

    #[test]
    fn unavailable_nodes_are_skipped() {
        let registry = registry(&[edge("a-1", "a", 50.0, 8.0), edge("b-1", "b", 52.0, 13.0)]);
        let near_a = client("203.0.113.1", 50.0, 8.0);
        let snapshot = registry.snapshot();
        let a = &snapshot.nodes[0];
        a.overloaded
            .store(true, std::sync::atomic::Ordering::SeqCst);
        registry.snapshot().invalidate_aggregates();
        assert_eq!(ids(&registry, near_a, "t", None, 0)[0].0, "b-1");
        a.overloaded
            .store(false, std::sync::atomic::Ordering::SeqCst);
        registry.snapshot().invalidate_aggregates();
        a.healthy.store(false, std::sync::atomic::Ordering::SeqCst);
        registry.snapshot().invalidate_aggregates();
        assert_eq!(ids(&registry, near_a, "t", None, 0)[0].0, "b-1");
        a.healthy.store(true, std::sync::atomic::Ordering::SeqCst);
        registry.snapshot().invalidate_aggregates();
        a.load_milli
            .store(1000, std::sync::atomic::Ordering::SeqCst);
        registry.snapshot().invalidate_aggregates();
        assert_eq!(
            ids(&registry, near_a, "t", None, 0)[0].0,
            "b-1",
            "at capacity"
        );
        a.load_milli.store(0, std::sync::atomic::Ordering::SeqCst);
        registry.snapshot().invalidate_aggregates();
        assert_eq!(ids(&registry, near_a, "t", None, 0)[0].0, "a-1");
        assert_eq!(
            ids(&registry, near_a, "t", None, 10_001).len(),
            0,
            "both silent past the timeout"
        );
        assert_eq!(
            ids(&registry, near_a, "t", Some(Protocol::H3), 0).len(),
            0,
            "nobody speaks h3"
        );
    }

    #[test]
    fn load_moves_traffic_to_a_nearby_site() {
        let registry = registry(&[
            edge("near-1", "near", 50.0, 8.0),
            edge("close-1", "close", 50.5, 8.5),
        ]);
        let here = client("203.0.113.1", 50.0, 8.2);
        assert_eq!(ids(&registry, here, "t", None, 0)[0].0, "near-1");
        let near = &registry.snapshot().nodes[0];
        near.load_milli
            .store(200, std::sync::atomic::Ordering::SeqCst);
        registry.snapshot().invalidate_aggregates();
        assert_eq!(
            ids(&registry, here, "t", None, 0)[0].0,
            "near-1",
            "light load barely counts"
        );
        near.load_milli
            .store(900, std::sync::atomic::Ordering::SeqCst);
        registry.snapshot().invalidate_aggregates();
        assert_eq!(
            ids(&registry, here, "t", None, 0)[0].0,
            "close-1",
            "a nearly full site yields"
        );
    }

    #[test]
    fn rendezvous_is_stable_and_moves_one_nth() {
        let mut nodes: Vec<Registration> = (0..4)
            .map(|i| edge(&format!("fra-{i}"), "fra", 50.1, 8.7))
            .collect();
        let before = registry(&nodes);
        let here = client("203.0.113.1", 50.0, 8.0);
        let tracks: Vec<String> = (0..4000).map(|i| format!("track-{i}")).collect();
        let first: Vec<String> = tracks
            .iter()
            .map(|t| ids(&before, here, t, None, 0)[0].0.clone())
            .collect();
        let again: Vec<String> = tracks
            .iter()
            .map(|t| ids(&before, here, t, None, 0)[0].0.clone())
            .collect();
        assert_eq!(first, again, "deterministic");
        nodes.push(edge("fra-4", "fra", 50.1, 8.7));
        let after = registry(&nodes);
        let moved: Vec<(&String, String)> = tracks
            .iter()
            .zip(&first)
            .filter_map(|(t, old)| {
                let new = ids(&after, here, t, None, 0)[0].0.clone();
                (new != *old).then_some((old, new))
            })
            .collect();
        let share = moved.len() as f64 / tracks.len() as f64;
        assert!(
            (0.15..0.25).contains(&share),
            "moved {share} of tracks, expected ~1/5"
        );
        assert!(
            moved.iter().all(|(_, new)| new == "fra-4"),
            "only to the new node"
        );
    }
}
