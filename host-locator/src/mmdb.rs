//! A writer of MaxMind DB files (the format of GeoIP2/GeoLite2 and DB-IP databases).
//!
//! The locator only reads GeoIP databases; this writer exists so that tests and benchmarks
//! build databases with known networks, and so that an operator can map private or
//! unlisted networks to locations (`host-locator build-geoip`). It writes an IPv6 tree (IPv4
//! networks live under `::/96`, where readers look for them) with 32-bit records, deduplicated
//! data records, and the standard metadata. No I/O: it returns the file's bytes.

use std::collections::HashMap;

use ipnet::IpNet;

/// A value in a MaxMind DB data record.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// UTF-8 string.
    Str(String),
    /// 64-bit float.
    Double(f64),
    /// Unsigned 16-bit integer.
    U16(u16),
    /// Unsigned 32-bit integer.
    U32(u32),
    /// Unsigned 64-bit integer.
    U64(u64),
    /// Boolean.
    Bool(bool),
    /// Array.
    Array(Vec<Value>),
    /// Map with string keys, in the given order.
    Map(Vec<(String, Value)>),
}

impl Value {
    /// A map from pairs.
    pub fn map<const N: usize>(pairs: [(&str, Value); N]) -> Self {
        Self::Map(
            pairs
                .into_iter()
                .map(|(key, value)| (key.to_owned(), value))
                .collect(),
        )
    }

    /// A string.
    pub fn str(value: &str) -> Self {
        Self::Str(value.to_owned())
    }
}

/// A GeoIP2-City-shaped record: what the locator (and `maxminddb::geoip2::City`) reads.
pub fn city_record(country: &str, city: &str, latitude: f64, longitude: f64) -> Value {
    Value::map([
        (
            "city",
            Value::map([("names", Value::map([("en", Value::str(city))]))]),
        ),
        (
            "country",
            Value::map([
                ("iso_code", Value::str(country)),
                ("names", Value::map([("en", Value::str(country))])),
            ]),
        ),
        (
            "location",
            Value::map([
                ("accuracy_radius", Value::U16(50)),
                ("latitude", Value::Double(latitude)),
                ("longitude", Value::Double(longitude)),
            ]),
        ),
    ])
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Child {
    Empty,
    Node(u32),
    Data(u32),
}

/// Builds a database from networks and their records.
#[derive(Debug)]
pub struct Writer {
    database_type: String,
    description: String,
    entries: Vec<(IpNet, Value)>,
}

impl Writer {
    /// A writer for a database of the given type (e.g. `GeoLite2-City`).
    pub fn new(database_type: &str, description: &str) -> Self {
        Self {
            database_type: database_type.to_owned(),
            description: description.to_owned(),
            entries: Vec::new(),
        }
    }

    /// Maps `network` to `value`. A more specific network wins over a less specific one,
    /// whatever the order of insertion.
    pub fn insert(&mut self, network: IpNet, value: Value) {
        self.entries.push((network.trunc(), value));
    }

    /// The database file's bytes.
    pub fn build(mut self, build_epoch: u64) -> Vec<u8> {
        // Less specific first, so that more specific networks overwrite parts of them.
        self.entries.sort_by_key(|(net, _)| tree_prefix(net).1);
        let mut nodes: Vec<[Child; 2]> = vec![[Child::Empty; 2]];
        let mut data = Vec::new();
        let mut offsets: HashMap<Vec<u8>, u32> = HashMap::new();
        for (net, value) in &self.entries {
            let mut encoded = Vec::new();
            encode(value, &mut encoded);
            let offset = *offsets.entry(encoded.clone()).or_insert_with(|| {
                let offset = data.len() as u32;
                data.extend_from_slice(&encoded);
                offset
            });
            let (bits, len) = tree_prefix(net);
            insert(&mut nodes, bits, len, offset);
        }
        let node_count = nodes.len() as u32;
        let record = |child: Child| match child {
            Child::Empty => node_count,
            Child::Node(index) => index,
            Child::Data(offset) => node_count + 16 + offset,
        };
        let mut out = Vec::with_capacity(nodes.len() * 8 + 16 + data.len() + 256);
        for [left, right] in &nodes {
            out.extend_from_slice(&record(*left).to_be_bytes());
            out.extend_from_slice(&record(*right).to_be_bytes());
        }
        out.extend_from_slice(&[0; 16]);
        out.extend_from_slice(&data);
        out.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
        let metadata = Value::map([
            ("binary_format_major_version", Value::U16(2)),
            ("binary_format_minor_version", Value::U16(0)),
            ("build_epoch", Value::U64(build_epoch)),
            ("database_type", Value::Str(self.database_type)),
            (
                "description",
                Value::map([("en", Value::Str(self.description))]),
            ),
            ("ip_version", Value::U16(6)),
            ("languages", Value::Array(vec![Value::str("en")])),
            ("node_count", Value::U32(node_count)),
            ("record_size", Value::U16(32)),
        ]);
        encode(&metadata, &mut out);
        out
    }
}

/// The network's place in an IPv6 tree: its 128 bits and prefix length (IPv4 under ::/96).
fn tree_prefix(net: &IpNet) -> (u128, u8) {
    match net {
        IpNet::V4(v4) => (u128::from(u32::from(v4.network())), 96 + v4.prefix_len()),
        IpNet::V6(v6) => (u128::from(v6.network()), v6.prefix_len()),
    }
}

fn insert(nodes: &mut Vec<[Child; 2]>, bits: u128, len: u8, offset: u32) {
    let mut node = 0usize;
    for depth in 0..len {
        let bit = ((bits >> (127 - depth)) & 1) as usize;
        if depth + 1 == len {
            nodes[node][bit] = Child::Data(offset);
            return;
        }
        node = match nodes[node][bit] {
            Child::Node(next) => next as usize,
            other => {
                // Split an empty or data leaf: both halves inherit it.
                let next = nodes.len();
                nodes.push([other; 2]);
                nodes[node][bit] = Child::Node(next as u32);
                next
            }
        };
    }
}

fn control(out: &mut Vec<u8>, kind: u8, size: usize) {
    let (size_bits, extra): (u8, Vec<u8>) = match size {
        0..=28 => (size as u8, Vec::new()),
        29..=284 => (29, vec![(size - 29) as u8]),
        285..=65_820 => (30, ((size - 285) as u16).to_be_bytes().to_vec()),
        _ => (31, ((size - 65_821) as u32).to_be_bytes()[1..].to_vec()),
    };
    if kind <= 7 {
        out.push((kind << 5) | size_bits);
    } else {
        out.push(size_bits);
        out.push(kind - 7);
    }
    out.extend_from_slice(&extra);
}

fn unsigned(out: &mut Vec<u8>, kind: u8, value: u64) {
    let bytes = value.to_be_bytes();
    let skip = bytes.iter().take_while(|byte| **byte == 0).count();
    control(out, kind, 8 - skip);
    out.extend_from_slice(&bytes[skip..]);
}

fn encode(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Str(text) => {
            control(out, 2, text.len());
            out.extend_from_slice(text.as_bytes());
        }
        Value::Double(number) => {
            control(out, 3, 8);
            out.extend_from_slice(&number.to_be_bytes());
        }
        Value::U16(number) => unsigned(out, 5, u64::from(*number)),
        Value::U32(number) => unsigned(out, 6, u64::from(*number)),
        Value::U64(number) => unsigned(out, 9, *number),
        Value::Bool(flag) => control(out, 14, usize::from(*flag)),
        Value::Array(items) => {
            control(out, 11, items.len());
            for item in items {
                encode(item, out);
            }
        }
        Value::Map(pairs) => {
            control(out, 7, pairs.len());
            for (key, value) in pairs {
                encode(&Value::Str(key.clone()), out);
                encode(value, out);
            }
        }
    }
}

/// Parses `network,country,city,latitude,longitude` lines (a header line and `#` comments are
/// skipped) into a City database, for `host-locator build-geoip`.
pub fn from_csv(text: &str, build_epoch: u64) -> Result<Vec<u8>, String> {
    let mut writer = Writer::new(
        "Cadenza-City",
        "Networks mapped to locations by the operator",
    );
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || (number == 0 && line.starts_with("network"))
        {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let [network, country, city, latitude, longitude] = fields[..] else {
            return Err(format!(
                "line {}: expected 5 fields, got {}",
                number + 1,
                fields.len()
            ));
        };
        let network: IpNet = network
            .parse()
            .map_err(|_| format!("line {}: {network:?} is not a CIDR network", number + 1))?;
        let latitude: f64 = latitude
            .parse()
            .ok()
            .filter(|lat: &f64| (-90.0..=90.0).contains(lat))
            .ok_or_else(|| format!("line {}: bad latitude {latitude:?}", number + 1))?;
        let longitude: f64 = longitude
            .parse()
            .ok()
            .filter(|lon: &f64| (-180.0..=180.0).contains(lon))
            .ok_or_else(|| format!("line {}: bad longitude {longitude:?}", number + 1))?;
        writer.insert(network, city_record(country, city, latitude, longitude));
    }
    Ok(writer.build(build_epoch))
}

#[cfg(test)]
mod tests {
    use super::*;
    use maxminddb::{Reader, geoip2};
    use std::net::IpAddr;

    fn sample() -> Vec<u8> {
        let mut writer = Writer::new("GeoLite2-City", "test");
        writer.insert(
            "81.2.69.0/24".parse().unwrap(),
            city_record("GB", "London", 51.5142, -0.0931),
        );
        writer.insert(
            "81.2.0.0/16".parse().unwrap(),
            city_record("GB", "Britain", 52.0, -1.0),
        );
        writer.insert(
            "2001:db8::/32".parse().unwrap(),
            city_record("DE", "Berlin", 52.52, 13.40),
        );
        writer.insert(
            "10.0.0.0/8".parse().unwrap(),
            city_record("XX", "Private", 0.0, 0.0),
        );
        writer.build(1_700_000_000)
    }

    #[test]
    fn maxminddb_reads_what_we_write() {
        let reader = Reader::from_source(sample()).unwrap();
        assert_eq!(reader.metadata().database_type, "GeoLite2-City");
        let city = |ip: &str| {
            reader
                .lookup(ip.parse::<IpAddr>().unwrap())
                .unwrap()
                .decode::<geoip2::City>()
                .unwrap()
                .map(|city| {
                    (
                        city.country.iso_code.map(str::to_owned),
                        city.city.names.english.map(str::to_owned),
                        city.location.latitude,
                    )
                })
        };
        assert_eq!(
            city("81.2.69.160"),
            Some((Some("GB".into()), Some("London".into()), Some(51.5142)))
        );
        assert_eq!(
            city("81.2.1.1"),
            Some((Some("GB".into()), Some("Britain".into()), Some(52.0))),
            "the less specific network still covers the rest"
        );
        assert_eq!(city("2001:db8::1").unwrap().1.as_deref(), Some("Berlin"));
        assert_eq!(city("8.8.8.8"), None);
        assert_eq!(city("10.200.0.1").unwrap().0.as_deref(), Some("XX"));
    }

    #[test]
    fn builds_from_csv_and_reports_bad_lines() {
        let bytes = from_csv(
            "network,country,city,latitude,longitude\n192.0.2.0/24,FR,Paris,48.85,2.35\n",
            0,
        )
        .unwrap();
        let reader = Reader::from_source(bytes).unwrap();
        let city: geoip2::City = reader
            .lookup("192.0.2.7".parse::<IpAddr>().unwrap())
            .unwrap()
            .decode()
            .unwrap()
            .unwrap();
        assert_eq!(city.country.iso_code, Some("FR"));
        assert!(
            from_csv("192.0.2.0/24,FR,Paris,91,2", 0)
                .unwrap_err()
                .contains("latitude")
        );
        assert!(
            from_csv("nope,FR,Paris,1,2", 0)
                .unwrap_err()
                .contains("CIDR")
        );
        assert!(
            from_csv("192.0.2.0/24,FR", 0)
                .unwrap_err()
                .contains("5 fields")
        );
    }

    #[test]
    fn large_sizes_encode() {
        let mut out = Vec::new();
        encode(&Value::Str("x".repeat(70_000)), &mut out);
        assert_eq!(out[0] & 0x1f, 31);
        let mut out = Vec::new();
        encode(&Value::Str("y".repeat(300)), &mut out);
        assert_eq!(out[0] & 0x1f, 30);
    }
}
