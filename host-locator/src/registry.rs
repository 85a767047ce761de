//! The node registry: edges and ISP boxes, what they declare about themselves, and how they
//! are doing.
//!
//! Each node is the only writer of its own entry: its heartbeat carries its whole description
//! plus its current load and health, so a locator that restarts rebuilds the registry from
//! heartbeats within one interval, and several locator replicas behind a load balancer
//! converge on the same view without talking to each other.
//!
//! Readers never lock. The descriptions live in an immutable [`Snapshot`] (with the prefix
//! index and the site table) that is rebuilt and swapped in only when some node's description
//! changes; the fast-changing state (last heartbeat, load, health) lives in atomics inside
//! each node and is updated in place.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};

use arc_swap::ArcSwap;
use ipnet::IpNet;
use prefix_trie::PrefixMap;
use serde::{Deserialize, Serialize};

use crate::geo::GeoPoint;

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeKind {
    /// A CDN edge in a Cadenza site.
    Edge,
    /// An appliance inside an ISP's network, serving the client prefixes it covers.
    IspBox,
}

/// A protocol a player can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// HTTP/1.1.
    H1,
    /// HTTP/2.
    H2,
    /// HTTP/3 over QUIC.
    H3,
}

/// A streaming format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// HLS.
    Hls,
    /// MPEG-DASH.
    Dash,
}

/// A node's public base URLs by protocol.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Urls {
    /// HTTP/1.1 base URL.
    #[serde(default)]
    pub h1: Option<String>,
    /// HTTP/2 base URL.
    #[serde(default)]
    pub h2: Option<String>,
    /// HTTP/3 base URL.
    #[serde(default)]
    pub h3: Option<String>,
}

impl Urls {
    /// The URL for `protocol`, or for the best protocol the node has when none is asked for.
    pub fn for_protocol(&self, protocol: Option<Protocol>) -> Option<&str> {
        match protocol {
            Some(Protocol::H1) => self.h1.as_deref(),
            Some(Protocol::H2) => self.h2.as_deref(),
            Some(Protocol::H3) => self.h3.as_deref(),
            None => self
                .h2
                .as_deref()
                .or(self.h1.as_deref())
                .or(self.h3.as_deref()),
        }
    }
}

/// How much a node can take.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capacity {
    /// Concurrent connections.
    #[serde(default)]
    pub connections: u64,
    /// Egress in bits per second.
    #[serde(default)]
    pub egress_bps: u64,
}

/// What a node reports about its load.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Load {
    /// Open connections.
    #[serde(default)]
    pub connections: u64,
    /// Current egress in bits per second.
    #[serde(default)]
    pub egress_bps: u64,
}

/// A node's registration, and its heartbeat (the same document with fresh load and health).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    /// Unique id, stable across restarts of the node.
    pub id: String,
    /// `edge` or `isp-box`.
    pub kind: NodeKind,
    /// The site (data centre, ISP) it belongs to; nodes of one site share location.
    pub site: String,
    /// Public base URLs per protocol.
    pub urls: Urls,
    /// Where it is. Absent: derived from `address` by GeoIP, else the default region.
    #[serde(default)]
    pub location: Option<GeoPoint>,
    /// Its public address, to locate it by GeoIP when `location` is absent.
    #[serde(default)]
    pub address: Option<std::net::IpAddr>,
    /// What it can take.
    #[serde(default)]
    pub capacity: Capacity,
    /// What it carries now.
    #[serde(default)]
    pub load: Load,
    /// Whether it can serve (false while draining or broken).
    #[serde(default = "yes")]
    pub healthy: bool,
    /// Whether it asks to be avoided for now.
    #[serde(default)]
    pub overloaded: bool,
    /// For ISP boxes: the client prefixes (IPv4 and IPv6 CIDRs) it serves.
    #[serde(default)]
    pub prefixes: Vec<String>,
    /// Formats it serves (default both).
    #[serde(default)]
    pub formats: Option<Vec<Format>>,
}

fn yes() -> bool {
    true
}

/// A problem with one field of a registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The field.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// The static part of a node, as validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Description {
    /// Id.
    pub id: String,
    /// Kind.
    pub kind: NodeKind,
    /// Site.
    pub site: String,
    /// URLs.
    pub urls: Urls,
    /// Location, resolved.
    pub location: GeoPoint,
    /// Capacity.
    pub capacity: Capacity,
    /// Parsed prefixes.
    pub prefixes: Vec<IpNet>,
    /// Serves HLS.
    pub hls: bool,
    /// Serves DASH.
    pub dash: bool,
    /// Stable hash of the id (rendezvous hashing).
    pub hash: u64,
    /// The location as a unit vector (distance ranking without trigonometry).
    pub unit: [f64; 3],
}

impl Registration {
    /// Checks every field and resolves the location with `locate` (GeoIP) or `default`.
    pub fn validate(
        &self,
        locate: impl Fn(std::net::IpAddr) -> Option<GeoPoint>,
        default: GeoPoint,
    ) -> Result<Description, Vec<Invalid>> {
        let mut errors = Vec::new();
        let mut bad = |field: &str, message: &str| {
            errors.push(Invalid {
                field: field.to_owned(),
                message: message.to_owned(),
            })
        };
        let name_ok = |value: &str| {
            !value.is_empty()
                && value.len() <= 100
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
        };
        if !name_ok(&self.id) {
            bad(
                "id",
                "1 to 100 characters: letters, digits, '-', '_', '.', ':'",
            );
        }
        if !name_ok(&self.site) {
            bad(
                "site",
                "1 to 100 characters: letters, digits, '-', '_', '.', ':'",
            );
        }
        for (field, url) in [
            ("urls.h1", &self.urls.h1),
            ("urls.h2", &self.urls.h2),
            ("urls.h3", &self.urls.h3),
        ] {
            if let Some(url) = url
                && (!(url.starts_with("http://") || url.starts_with("https://"))
                    || url.len() > 500
                    || url.contains(char::is_whitespace))
            {
                bad(field, "an absolute http:// or https:// URL");
            }
        }
        if self.urls.for_protocol(None).is_none() {
            bad("urls", "at least one of h1, h2, h3");
        }
        if let Some(point) = self.location
            && !point.is_valid()
        {
            bad("location", "latitude -90..90 and longitude -180..180");
        }
        let mut prefixes = Vec::with_capacity(self.prefixes.len());
        for (index, prefix) in self.prefixes.iter().enumerate() {
            match prefix.parse::<IpNet>() {
                Ok(net) if net == net.trunc() => prefixes.push(net),
                Ok(_) => bad(
                    &format!("prefixes[{index}]"),
                    "host bits are set; give the network address",
                ),
                Err(_) => bad(
                    &format!("prefixes[{index}]"),
                    "not an IPv4 or IPv6 CIDR prefix",
                ),
            }
        }
        if self.kind == NodeKind::Edge && !prefixes.is_empty() {
            bad("prefixes", "only ISP boxes cover client prefixes");
        }
        if self.prefixes.len() > 200_000 {
            bad("prefixes", "at most 200 000 prefixes per node");
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let formats = self
            .formats
            .clone()
            .unwrap_or_else(|| vec![Format::Hls, Format::Dash]);
        let location = self
            .location
            .or_else(|| self.address.and_then(&locate))
            .unwrap_or(default);
        Ok(Description {
            hash: crate::rendezvous::node_hash(&self.id),
            unit: crate::geo::unit_vector(location),
            id: self.id.clone(),
            kind: self.kind,
            site: self.site.clone(),
            urls: self.urls.clone(),
            location,
            capacity: self.capacity,
            prefixes,
            hls: formats.contains(&Format::Hls),
            dash: formats.contains(&Format::Dash),
        })
    }
}

/// Bits of [`Node::serves`]: the protocols and formats a node can serve.
pub mod serves {
    /// HTTP/1.1.
    pub const H1: u8 = 1;
    /// HTTP/2.
    pub const H2: u8 = 2;
    /// HTTP/3.
    pub const H3: u8 = 4;
    /// HLS.
    pub const HLS: u8 = 8;
    /// DASH.
    pub const DASH: u8 = 16;
}

/// A registered node: its live state and what selection reads, laid out first so that a
/// selection touches one cache line per node, then its full description.
#[derive(Debug)]
#[repr(C)]
pub struct Node {
    /// Unix ms of the last heartbeat.
    pub last_seen_ms: AtomicI64,
    /// Load as thousandths of capacity (the larger of connections and egress).
    pub load_milli: AtomicU32,
    /// Reported healthy.
    pub healthy: AtomicBool,
    /// Reported overloaded.
    pub overloaded: AtomicBool,
    /// Declared in the configuration: never expires.
    pub is_static: bool,
    /// What it serves ([`serves`] bits).
    pub serves: u8,
    /// Stable hash of its id (rendezvous hashing).
    pub hash: u64,
    /// Times it was chosen as primary.
    pub selections: AtomicU64,
    /// What it declared.
    pub description: Description,
}

impl Node {
    fn new(description: Description, is_static: bool, now: i64) -> Self {
        let urls = &description.urls;
        let serves = [
            (urls.h1.is_some(), serves::H1),
            (urls.h2.is_some(), serves::H2),
            (urls.h3.is_some(), serves::H3),
            (description.hls, serves::HLS),
            (description.dash, serves::DASH),
        ]
        .iter()
        .filter(|(yes, _)| *yes)
        .fold(0, |bits, (_, bit)| bits | bit);
        Self {
            last_seen_ms: AtomicI64::new(now),
            load_milli: AtomicU32::new(0),
            healthy: AtomicBool::new(true),
            overloaded: AtomicBool::new(false),
            is_static,
            serves,
            hash: description.hash,
            selections: AtomicU64::new(0),
            description,
        }
    }

    /// Records a heartbeat; `true` when something selection ranks by may have changed: load,
    /// health or overload, or a silence of at least [`AGGREGATE_MS`] (which is how a node
    /// that had timed out comes back: every timeout is at least a second).
    fn report(&self, registration: &Registration, now: i64) -> bool {
        let silent_for = now - self.last_seen_ms.load(Ordering::Acquire);
        let before = (
            self.load_milli.load(Ordering::Relaxed),
            self.healthy.load(Ordering::Relaxed),
            self.overloaded.load(Ordering::Relaxed),
        );
        let capacity = self.description.capacity;
        // No declared capacity: load cannot be judged, so it counts as none.
        let fraction = |used: u64, total: u64| {
            used.saturating_mul(1000)
                .checked_div(total)
                .map_or(0, |milli| milli.min(u64::from(u32::MAX)) as u32)
        };
        let load = fraction(registration.load.connections, capacity.connections)
            .max(fraction(registration.load.egress_bps, capacity.egress_bps));
        self.load_milli.store(load, Ordering::Relaxed);
        self.healthy.store(registration.healthy, Ordering::Relaxed);
        self.overloaded
            .store(registration.overloaded, Ordering::Relaxed);
        self.last_seen_ms.store(now, Ordering::Release);
        let after = (load, registration.healthy, registration.overloaded);
        silent_for >= AGGREGATE_MS || before != after
    }

    /// Whether the node may be chosen at `now`: heard from within `timeout_ms` (or static),
    /// healthy, not overloaded and below its capacity.
    #[inline]
    pub fn is_available(&self, now: i64, timeout_ms: i64) -> bool {
        (self.is_static || now - self.last_seen_ms.load(Ordering::Acquire) <= timeout_ms)
            && self.healthy.load(Ordering::Relaxed)
            && !self.overloaded.load(Ordering::Relaxed)
            && self.load_milli.load(Ordering::Relaxed) < 1000
    }

    /// Load as a fraction of capacity.
    #[inline]
    pub fn load(&self) -> f64 {
        f64::from(self.load_milli.load(Ordering::Relaxed)) / 1000.0
    }
}

/// Nodes of one site.
#[derive(Debug)]
pub struct Site {
    /// Name.
    pub name: String,
    /// Mean location of its nodes.
    pub location: GeoPoint,
    /// The same as a unit vector.
    pub unit: [f64; 3],
    /// Its edges (indexes into [`Snapshot::nodes`]).
    pub edges: Vec<usize>,
    /// What at least one of its edges serves ([`serves`] bits).
    pub serves: u8,
    /// Its available edges and their load, recomputed at most once a [`AGGREGATE_MS`] or
    /// after a heartbeat changed something (see [`Site::availability`]).
    pub aggregate: SiteAggregate,
}

/// How long a site's aggregate may be reused, ms.
pub const AGGREGATE_MS: i64 = 1_000;

/// A site's available edges and their summed load, with when they were counted.
#[derive(Debug)]
pub struct SiteAggregate {
    at_ms: AtomicI64,
    available: AtomicU32,
    load_milli: AtomicU64,
}

impl Default for SiteAggregate {
    fn default() -> Self {
        Self {
            at_ms: AtomicI64::new(i64::MIN),
            available: AtomicU32::new(0),
            load_milli: AtomicU64::new(0),
        }
    }
}

impl Site {
    /// Its available edges (whatever they serve) and their mean load at `now`, from the
    /// aggregate when it is recent, else counted again. Concurrent recounts are harmless: each
    /// stores a complete, recent answer.
    pub fn availability(&self, nodes: &[Arc<Node>], now: i64, timeout_ms: i64) -> (u32, f64) {
        let aggregate = &self.aggregate;
        let at = aggregate.at_ms.load(Ordering::Acquire);
        if at == i64::MIN || now < at || now - at >= AGGREGATE_MS {
            let (mut count, mut load) = (0u32, 0u64);
            for &index in &self.edges {
                let node = &nodes[index];
                if node.is_available(now, timeout_ms) {
                    count += 1;
                    load += u64::from(node.load_milli.load(Ordering::Relaxed));
                }
            }
            aggregate.available.store(count, Ordering::Relaxed);
            aggregate.load_milli.store(load, Ordering::Relaxed);
            aggregate.at_ms.store(now, Ordering::Release);
            return (count, mean_load(count, load));
        }
        let count = aggregate.available.load(Ordering::Relaxed);
        let load = aggregate.load_milli.load(Ordering::Relaxed);
        (count, mean_load(count, load))
    }
}

fn mean_load(count: u32, load_milli: u64) -> f64 {
    if count == 0 {
        0.0
    } else {
        load_milli as f64 / f64::from(count) / 1000.0
    }
}

/// An immutable view of every node's description, with its indexes.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Every node.
    pub nodes: Vec<Arc<Node>>,
    /// Sites that have edges.
    pub sites: Vec<Site>,
    /// ISP boxes by covered prefix.
    pub v4: PrefixMap<ipnet::Ipv4Net, Vec<usize>>,
    /// ISP boxes by covered prefix.
    pub v6: PrefixMap<ipnet::Ipv6Net, Vec<usize>>,
    /// Changes whenever the snapshot is rebuilt (keys memoised answers).
    pub generation: u64,
    /// The nearest sites of the places clients were placed at (sites do not move within a
    /// snapshot, so the answer for a place holds until the next one).
    pub near: crate::near::NearMemo,
}

impl Snapshot {
    fn build(nodes: Vec<Arc<Node>>, generation: u64) -> Self {
        let mut v4: PrefixMap<ipnet::Ipv4Net, Vec<usize>> = PrefixMap::new();
        let mut v6: PrefixMap<ipnet::Ipv6Net, Vec<usize>> = PrefixMap::new();
        let mut by_site: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (index, node) in nodes.iter().enumerate() {
            let description = &node.description;
            match description.kind {
                NodeKind::Edge => by_site.entry(&description.site).or_default().push(index),
                NodeKind::IspBox => {
                    for prefix in &description.prefixes {
                        match prefix {
                            IpNet::V4(net) => v4.entry(*net).or_default().push(index),
                            IpNet::V6(net) => v6.entry(*net).or_default().push(index),
                        }
                    }
                }
            }
        }
        let sites = by_site
            .into_iter()
            .map(|(name, edges)| {
                let n = edges.len() as f64;
                let (lat, lon) = edges.iter().fold((0.0, 0.0), |(lat, lon), &index| {
                    let point = nodes[index].description.location;
                    (lat + point.lat, lon + point.lon)
                });
                let location = GeoPoint {
                    lat: lat / n,
                    lon: lon / n,
                };
                let serves = edges
                    .iter()
                    .fold(0, |bits, &index| bits | nodes[index].serves);
                Site {
                    name: name.to_owned(),
                    location,
                    unit: crate::geo::unit_vector(location),
                    edges,
                    serves,
                    aggregate: SiteAggregate::default(),
                }
            })
            .collect();
        Self {
            nodes,
            sites,
            v4,
            v6,
            generation,
            near: crate::near::NearMemo::default(),
        }
    }
}

impl Snapshot {
    /// Makes the next selection recount every site (after a node's state changed other than
    /// through a heartbeat, which does this itself).
    pub fn invalidate_aggregates(&self) {
        for site in &self.sites {
            site.aggregate.at_ms.store(i64::MIN, Ordering::Release);
        }
    }
}

/// The registry: the current snapshot, swapped atomically.
#[derive(Debug)]
pub struct Registry {
    snapshot: ArcSwap<Snapshot>,
    write: std::sync::Mutex<()>,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            write: std::sync::Mutex::new(()),
        }
    }
}

/// What a registration or heartbeat did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upsert {
    /// A node the registry did not know.
    Added,
    /// A known node whose description changed.
    Changed,
    /// A known node reporting in.
    Refreshed,
}

impl Registry {
    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Registers a node or records its heartbeat.
    pub fn upsert(
        &self,
        description: Description,
        registration: &Registration,
        is_static: bool,
        now: i64,
    ) -> Upsert {
        let current = self.snapshot.load();
        if let Some(node) = current
            .nodes
            .iter()
            .find(|node| node.description.id == description.id)
            && node.description == description
        {
            if node.report(registration, now) {
                current.invalidate_aggregates();
            }
            return Upsert::Refreshed;
        }
        let _writer = self.write.lock().expect("registry write lock");
        let current = self.snapshot.load_full();
        let mut nodes: Vec<Arc<Node>> = current.nodes.clone();
        let node = Arc::new(Node::new(description, is_static, now));
        node.report(registration, now);
        let outcome = match nodes
            .iter()
            .position(|existing| existing.description.id == node.description.id)
        {
            Some(index) => {
                nodes[index] = node;
                Upsert::Changed
            }
            None => {
                nodes.push(node);
                Upsert::Added
            }
        };
        self.snapshot
            .store(Arc::new(Snapshot::build(nodes, current.generation + 1)));
        outcome
    }

    /// Removes a node; `false` if unknown.
    pub fn remove(&self, id: &str) -> bool {
        let _writer = self.write.lock().expect("registry write lock");
        let current = self.snapshot.load_full();
        let nodes: Vec<Arc<Node>> = current
            .nodes
            .iter()
            .filter(|node| node.description.id != id)
            .cloned()
            .collect();
        if nodes.len() == current.nodes.len() {
            return false;
        }
        self.snapshot
            .store(Arc::new(Snapshot::build(nodes, current.generation + 1)));
        true
    }

    /// Forgets dynamic nodes silent for longer than `forget_ms` (they were already out of
    /// every answer after the heartbeat timeout). Returns how many.
    pub fn forget_silent(&self, now: i64, forget_ms: i64) -> usize {
        let silent: Vec<String> = self
            .snapshot
            .load()
            .nodes
            .iter()
            .filter(|node| {
                !node.is_static && now - node.last_seen_ms.load(Ordering::Acquire) > forget_ms
            })
            .map(|node| node.description.id.clone())
            .collect();
        for id in &silent {
            self.remove(id);
        }
        silent.len()
    }

    /// Counts for metrics: (nodes, nodes not available now).
    pub fn census(&self, now: i64, timeout_ms: i64) -> (usize, usize) {
        let snapshot = self.snapshot.load();
        let unavailable = snapshot
            .nodes
            .iter()
            .filter(|node| !node.is_available(now, timeout_ms))
            .count();
        (snapshot.nodes.len(), unavailable)
    }
}

/// Shared by tests and the benchmark: a map of nodes by id.
pub fn by_id(snapshot: &Snapshot) -> HashMap<&str, &Arc<Node>> {
    snapshot
        .nodes
        .iter()
        .map(|node| (node.description.id.as_str(), node))
        .collect()
}
