//! The all-in-one Cadenza stack: starts every daemon in this process on localhost with the
//! embedded backends, creates the demo accounts on first start, and describes itself in
//! `DATA_DIR/stack.json` so that people, scripts and tests can find every URL.
//!
//! `main.rs` parses flags and calls [`start`]; the cross-daemon tests in `tests/` call
//! [`start`] with port 0 and read the returned [`StackInfo`].

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use control_plane::App;
use control_plane::accounts::store::NewUser;
use control_plane::auth::random_token;
use control_plane::config::Config as ControlPlaneConfig;
use control_plane::store::{Clock, new_id};
use figment::Figment;
use figment::providers::Serialized;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use telemetry::DaemonConfig as _;
use telemetry::{LogFormat, Secret, Shutdown};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// How to start the stack.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Where every daemon keeps its state.
    pub data_dir: PathBuf,
    /// Address every daemon binds to.
    pub host: IpAddr,
    /// First public port (the control plane's); admin ports are 1000 above. 0: every daemon
    /// takes a free port (tests).
    pub base_port: u16,
    /// Log format of every daemon.
    pub log_format: LogFormat,
    /// The control plane's clock (tests move a manual one to simulate hours of listening).
    pub clock: Clock,
}

/// A daemon's addresses.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Endpoint {
    /// Public base URL.
    pub url: String,
    /// Admin base URL (`/metrics`, `/healthz`, `/readyz`).
    pub admin: String,
}

/// Log-in details of a demo account.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Credentials {
    /// Email.
    pub email: String,
    /// Password.
    pub password: String,
}

/// The demo accounts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DemoAccounts {
    /// The administrator.
    pub admin: Credentials,
    /// An artist, who can upload.
    pub artist: Credentials,
    /// A listener on the free package.
    pub listener: Credentials,
}

/// An edge node's addresses.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EdgeEndpoint {
    /// Node id.
    pub id: String,
    /// Cleartext HTTP/1.1 (and h2c) base URL.
    pub url: String,
    /// HTTP/1.1 and HTTP/2 over TLS base URL (self-signed certificate in local runs).
    pub tls: String,
    /// HTTP/3 base URL (same port as `tls`, over UDP).
    pub h3: String,
    /// Admin base URL (`/metrics`, `/healthz`, `/readyz`, `/purge`).
    pub admin: String,
    /// Its TLS certificate (PEM; self-signed in local runs), for `curl --cacert` and players
    /// that must trust it.
    pub certificate: PathBuf,
}

/// An ISP box's URLs and the client prefixes it serves.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IspBoxEndpoint {
    /// Node id.
    pub id: String,
    /// Cleartext HTTP/1.1 (and h2c) base URL.
    pub url: String,
    /// Admin base URL (`/status`, `/metrics`, `/healthz`, `/drain`, `/purge`).
    pub admin: String,
    /// The client prefixes it serves (only clients there are answered and steered to it).
    pub prefixes: Vec<String>,
}

/// The demo track, packaged and playable through the edge.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DemoTrack {
    /// Track id.
    pub id: String,
    /// The HLS master playlist through the first edge, with a URL token.
    pub hls: String,
    /// The DASH manifest through the first edge, with a URL token.
    pub dash: String,
    /// When the token in those URLs expires (Unix seconds); the next start signs a new one.
    pub expires_at: u64,
}

/// What a demo track became at first start (`DATA_DIR/demo-track.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct DemoTrackRecord {
    id: String,
    hls: String,
    dash: String,
}

/// What `stack.json` holds: every daemon's URLs and the demo credentials.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StackInfo {
    /// The control plane (accounts, packages, playlists, the API).
    pub control_plane: Endpoint,
    /// The host locator (`/v1/locate`, node registration).
    pub host_locator: Endpoint,
    /// The origin edges fill from (only edges may: fills carry the fill key).
    pub origin: Endpoint,
    /// Edge nodes.
    pub edges: Vec<EdgeEndpoint>,
    /// ISP boxes.
    pub isp_boxes: Vec<IspBoxEndpoint>,
    /// Demo accounts.
    pub demo: DemoAccounts,
    /// The demo track (absent if it could not be prepared; the log says why).
    pub demo_track: Option<DemoTrack>,
    /// Every demo track and the demo ad (ids), as the catalogue holds them.
    pub demo_catalogue: Vec<DemoEntry>,
    /// A play of the demo track by the demo listener through the play API, ad included.
    pub demo_play: Option<DemoPlay>,
}

/// One track of the demo catalogue.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DemoEntry {
    /// Track id.
    pub id: String,
    /// `music` or `ad`.
    pub kind: String,
}

/// A play made through the play API at start.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DemoPlay {
    /// The track played.
    pub track_id: String,
    /// The manifest on the primary node (a per-play playlist when ads are spliced in).
    pub manifest_url: String,
    /// The same on the fallback nodes.
    pub fallbacks: Vec<String>,
    /// How many ads precede the track.
    pub ads: usize,
}

/// A running stack.
#[derive(Debug)]
pub struct Stack {
    /// Its description (also in `DATA_DIR/stack.json`).
    pub info: StackInfo,
    /// The control plane's state, for tests that reach past the API.
    pub control_plane: App,
    /// The host locator's state.
    pub host_locator: host_locator::Locator,
    /// The token nodes register with at the host locator.
    pub node_token: String,
    /// Each edge's own shutdown (it also follows the stack's).
    edge_shutdowns: Vec<(String, Shutdown)>,
    tasks: Vec<JoinHandle<anyhow::Result<()>>>,
}

impl Stack {
    /// Drains and stops one edge (as if its machine went away); the rest keep running.
    /// Returns whether an edge of that id was running.
    pub fn stop_edge(&self, id: &str) -> bool {
        self.edge_shutdowns
            .iter()
            .find(|(edge, _)| edge == id)
            .map(|(_, shutdown)| shutdown.trigger())
            .is_some()
    }

    /// Waits until every daemon has stopped (after the shutdown handle triggers).
    pub async fn wait(self) -> anyhow::Result<()> {
        for task in self.tasks {
            task.await.context("a daemon panicked")??;
        }
        Ok(())
    }
}

/// Starts every daemon, creates the demo content on first start, and writes `stack.json`.
pub async fn start(options: &StackOptions, shutdown: Shutdown) -> anyhow::Result<Stack> {
    std::fs::create_dir_all(&options.data_dir).with_context(|| {
        format!(
            "failed to create the data directory {}",
            options.data_dir.display()
        )
    })?;
    let port = |offset: u16| {
        if options.base_port == 0 {
            0
        } else {
            options.base_port + offset
        }
    };
    let bind = |port: u16| {
        let addr = SocketAddr::new(options.host, port);
        async move {
            TcpListener::bind(addr).await.with_context(|| {
                format!("failed to bind {addr}; is another Cadenza running? Try --base-port")
            })
        }
    };

    let cp_listener = bind(port(0)).await?;
    let cp_admin = bind(port(1000)).await?;
    let locator_listener = bind(port(2)).await?;
    let locator_admin = bind(port(1002)).await?;
    let node_token = secret_file(&options.data_dir, "node-token")?;
    let token_secret = secret_file(&options.data_dir, "url-token-key")?;
    let box_token = secret_file(&options.data_dir, "isp-box-token")?;
    let cp_config = ControlPlaneConfig::load(
        None,
        Figment::new()
            .merge(Serialized::default(
                "data_dir",
                options.data_dir.join("control-plane"),
            ))
            .merge(Serialized::default("listen", cp_listener.local_addr()?))
            .merge(Serialized::default("admin_listen", cp_admin.local_addr()?))
            .merge(Serialized::default("log_format", options.log_format))
            .merge(Serialized::default(
                "play.locator_url",
                format!("http://{}", locator_listener.local_addr()?),
            ))
            .merge(Serialized::default(
                "play.url_token_keys",
                serde_json::json!([{"id": "demo", "secret": token_secret}]),
            ))
            .merge(Serialized::default(
                "isp_boxes",
                serde_json::json!([{"id": DEMO_BOX.id, "token": box_token, "region": DEMO_BOX.site}]),
            )),
    )
    .context("the control plane's configuration is invalid")?;
    let app = App::build(cp_config, options.clock.clone()).await?;
    let demo = demo_accounts(&app, &options.data_dir).await?;

    // The control plane asks the locator on behalf of players and forwards their address.
    let control_plane_net = ipnet::IpNet::from(options.host);
    let locator_config = host_locator::config::Config::load(
        None,
        Figment::new()
            .merge(Serialized::default(
                "listen",
                locator_listener.local_addr()?,
            ))
            .merge(Serialized::default(
                "admin_listen",
                locator_admin.local_addr()?,
            ))
            .merge(Serialized::default("node_token", &node_token))
            .merge(Serialized::default(
                "trusted_proxies",
                vec![control_plane_net],
            ))
            .merge(Serialized::default("log_format", options.log_format)),
    )
    .context("the host locator's configuration is invalid")?;
    let locator = host_locator::Locator::new(locator_config, Clock::system())?;
    let locator_endpoint = endpoint(&locator_listener, &locator_admin)?;
    let (cp_listener_addr, cp_admin_addr) = (cp_listener.local_addr()?, cp_admin.local_addr()?);

    let origin_listener = bind(port(3)).await?;
    let origin_admin = bind(port(1003)).await?;
    let fill_key = secret_file(&options.data_dir, "fill-key")?;
    let origin_config = origin::Config {
        listen: origin_listener.local_addr()?,
        admin_listen: origin_admin.local_addr()?,
        object_store_url: app.config.object_store_url(),
        s3: app.config.s3.clone(),
        fill_key: Some(Secret::new(fill_key.clone())),
        log_format: options.log_format,
        ..origin::Config::default()
    };
    origin_config
        .validate()
        .context("the origin's configuration is invalid")?;
    let origin = origin::Origin::with_objects(origin_config, app.objects.clone())?;
    let origin_endpoint = endpoint(&origin_listener, &origin_admin)?;

    let common = EdgeCommon {
        host: options.host,
        fill_key,
        purge_key: secret_file(&options.data_dir, "purge-key")?,
        token_secret: token_secret.clone(),
        locator: format!("http://{}", locator_listener.local_addr()?),
        node_token: node_token.clone(),
        log_format: options.log_format,
    };

    let mut tasks = vec![
        tokio::spawn(control_plane::run(
            app.clone(),
            Some(cp_listener),
            cp_admin,
            shutdown.clone(),
        )),
        tokio::spawn(host_locator::run(
            locator.clone(),
            locator_listener,
            locator_admin,
            shutdown.clone(),
        )),
        tokio::spawn(origin::run(
            origin,
            origin_listener,
            origin_admin,
            shutdown.clone(),
        )),
    ];
    let (edge_1_shutdown, edge_2_shutdown) = (shutdown.child(), shutdown.child());
    // Two edges in two simulated places: edge-1 in Frankfurt fills from the origin; edge-2 in
    // Amsterdam fills from edge-1 first, then from the origin (a parent chain).
    let (edge_1, task) = start_edge(
        &common,
        EdgePlan {
            id: "edge-1",
            site: "fra",
            location: (50.11, 8.68),
            ports: (port(4), port(5), port(1004)),
            parents: vec![origin_endpoint.url.clone()],
            cache_dir: options.data_dir.join("edge-1-cache"),
            data_dir: options.data_dir.clone(),
        },
        edge_1_shutdown.clone(),
    )
    .await?;
    tasks.push(task);
    let (edge_2, task) = start_edge(
        &common,
        EdgePlan {
            id: "edge-2",
            site: "ams",
            location: (52.37, 4.90),
            ports: (port(6), port(7), port(1006)),
            parents: vec![edge_1.url.clone(), origin_endpoint.url.clone()],
            cache_dir: options.data_dir.join("edge-2-cache"),
            data_dir: options.data_dir.clone(),
        },
        edge_2_shutdown.clone(),
    )
    .await?;
    tasks.push(task);
    let edge = edge_1.clone();
    let (isp_box, task) = start_isp_box(
        &common,
        IspBoxPlan {
            ports: (port(8), port(9), port(1008)),
            origin: origin_endpoint.url.clone(),
            control_plane: format!("http://{cp_listener_addr}"),
            token: box_token,
            cache_dir: options.data_dir.join("isp-box-cache"),
        },
        shutdown.child(),
    )
    .await?;
    tasks.push(task);

    let control_plane_endpoint = endpoint_of(cp_listener_addr, cp_admin_addr);
    let catalogue = match demo_catalogue(
        &control_plane_endpoint.url,
        &demo,
        &options.data_dir,
        &TUNES,
    )
    .await
    {
        Ok(catalogue) => catalogue,
        Err(error) => {
            tracing::warn!(
                message = "The demo catalogue could not be prepared; the stack runs without it.",
                error = format!("{error:#}")
            );
            DemoCatalogue::default()
        }
    };
    let demo_track = match catalogue.tracks.first() {
        Some(record) => Some(sign_demo_track(record, &edge.url, &token_secret)?),
        None => None,
    };
    let demo_play = match catalogue.tracks.first() {
        Some(record) => match demo_play(&control_plane_endpoint.url, &demo, &record.id).await {
            Ok(play) => Some(play),
            Err(error) => {
                tracing::warn!(
                    message = "The demo play could not be made.",
                    error = format!("{error:#}")
                );
                None
            }
        },
        None => None,
    };
    if let Err(error) = demo_listening(
        &control_plane_endpoint.url,
        &demo,
        &options.data_dir,
        &catalogue,
    )
    .await
    {
        tracing::warn!(
            message = "The demo listening history could not be made.",
            error = format!("{error:#}")
        );
    }
    let demo_catalogue = catalogue
        .tracks
        .iter()
        .map(|record| DemoEntry {
            id: record.id.clone(),
            kind: "music".to_owned(),
        })
        .chain(catalogue.ad.iter().map(|record| DemoEntry {
            id: record.id.clone(),
            kind: "ad".to_owned(),
        }))
        .collect();
    let info = StackInfo {
        control_plane: control_plane_endpoint,
        host_locator: locator_endpoint,
        origin: origin_endpoint,
        edges: vec![edge_1, edge_2],
        isp_boxes: vec![isp_box],
        demo,
        demo_track,
        demo_catalogue,
        demo_play,
    };
    write_atomically(
        &options.data_dir.join("stack.json"),
        &serde_json::to_vec_pretty(&info)?,
    )?;
    Ok(Stack {
        info,
        control_plane: app,
        host_locator: locator,
        node_token,
        edge_shutdowns: vec![
            ("edge-1".to_owned(), edge_1_shutdown),
            ("edge-2".to_owned(), edge_2_shutdown),
        ],
        tasks,
    })
}

/// What every demo edge shares.
struct EdgeCommon {
    host: IpAddr,
    fill_key: String,
    purge_key: String,
    token_secret: String,
    locator: String,
    node_token: String,
    log_format: LogFormat,
}

/// One demo edge.
struct EdgePlan {
    id: &'static str,
    site: &'static str,
    location: (f64, f64),
    /// Cleartext, TLS (and HTTP/3), admin.
    ports: (u16, u16, u16),
    parents: Vec<String>,
    cache_dir: PathBuf,
    /// Where its certificate is written.
    data_dir: PathBuf,
}

/// The demo ISP box: an "ISP" of one address, 127.0.0.2, near Munich.
struct DemoBox {
    id: &'static str,
    site: &'static str,
    prefix: &'static str,
    location: (f64, f64),
}

const DEMO_BOX: DemoBox = DemoBox {
    id: "isp-demo-1",
    site: "isp-demo",
    prefix: "127.0.0.2/32",
    location: (48.14, 11.58),
};

/// The demo box's ports and neighbours.
struct IspBoxPlan {
    /// Cleartext, TLS, admin.
    ports: (u16, u16, u16),
    origin: String,
    control_plane: String,
    token: String,
    cache_dir: PathBuf,
}

/// Starts the demo ISP box: it covers 127.0.0.2/32, fills from the nearest edges then the
/// origin, and pre-positions the demo catalogue from the control plane's manifest (its window
/// open all day, so that the demo needs no night).
async fn start_isp_box(
    common: &EdgeCommon,
    plan: IspBoxPlan,
    shutdown: Shutdown,
) -> anyhow::Result<(IspBoxEndpoint, JoinHandle<anyhow::Result<()>>)> {
    let node = node_config(
        common,
        &EdgePlan {
            id: DEMO_BOX.id,
            site: DEMO_BOX.site,
            location: DEMO_BOX.location,
            ports: plan.ports,
            parents: vec![plan.origin],
            cache_dir: plan.cache_dir,
            data_dir: PathBuf::new(),
        },
        2 * 1024 * 1024 * 1024,
    );
    let config = isp_box::Config {
        node,
        prefixes: vec![DEMO_BOX.prefix.parse()?],
        nearest_edges: 2,
        parents_refresh_secs: 10,
        fill: isp_box::config::FillConfig {
            control_plane: Some(plan.control_plane),
            token: Some(Secret::new(plan.token)),
            window_start: "00:00".to_owned(),
            window_hours: 24,
            rate_bps: 100_000_000,
            manifest_refresh_secs: 15,
            poll_ms: 2_000,
            ..isp_box::config::FillConfig::default()
        },
        ..isp_box::Config::default()
    };
    config
        .validate()
        .context("the ISP box's configuration is invalid")?;
    let isp_box = isp_box::IspBox::new(config.clone(), Clock::system())?;
    let (addresses, task) = isp_box.start(shutdown).await.with_context(|| {
        format!(
            "failed to start {}; is another Cadenza running? Try --base-port",
            DEMO_BOX.id
        )
    })?;
    let endpoint = IspBoxEndpoint {
        id: DEMO_BOX.id.to_owned(),
        url: addresses
            .cleartext
            .map(|address| format!("http://{address}"))
            .unwrap_or_default(),
        admin: format!("http://{}", addresses.admin),
        prefixes: vec![DEMO_BOX.prefix.to_owned()],
    };
    Ok((endpoint, task))
}

/// A demo node's engine settings: the shared keys, its place, its ports, its parents, a disk
/// tier of `disk_bytes`, registered with the host locator.
fn node_config(common: &EdgeCommon, plan: &EdgePlan, disk_bytes: u64) -> edge_node::Config {
    edge_node::Config {
        id: plan.id.to_owned(),
        listen: Some(SocketAddr::new(common.host, plan.ports.0)),
        tls_listen: Some(SocketAddr::new(common.host, plan.ports.1)),
        admin_listen: SocketAddr::new(common.host, plan.ports.2),
        parents: plan.parents.clone(),
        fill_key: Some(Secret::new(common.fill_key.clone())),
        purge_key: Some(Secret::new(common.purge_key.clone())),
        token_keys: vec![edge_node::config::TokenKey {
            id: "demo".to_owned(),
            secret: Secret::new(common.token_secret.clone()),
        }],
        disk_cache_dir: Some(plan.cache_dir.clone()),
        disk_cache_bytes: disk_bytes,
        memory_cache_bytes: 128 * 1024 * 1024,
        locator: Some(edge_node::register::LocatorConfig {
            url: common.locator.clone(),
            token: Secret::new(common.node_token.clone()),
            site: plan.site.to_owned(),
            lat: Some(plan.location.0),
            lon: Some(plan.location.1),
            address: None,
            h1_url: None,
            h2_url: None,
            h3_url: None,
            heartbeat_secs: 2,
            capacity_connections: 10_000,
            capacity_egress_bps: 10_000_000_000,
        }),
        log_format: common.log_format,
        ..edge_node::Config::default()
    }
}

/// Binds and starts one edge, registered with the host locator.
async fn start_edge(
    common: &EdgeCommon,
    plan: EdgePlan,
    shutdown: Shutdown,
) -> anyhow::Result<(EdgeEndpoint, JoinHandle<anyhow::Result<()>>)> {
    let config = node_config(common, &plan, 1024 * 1024 * 1024);
    config
        .validate()
        .with_context(|| format!("{}'s configuration is invalid", plan.id))?;
    let listeners = edge_node::Listeners::bind(&config).await.with_context(|| {
        format!(
            "failed to bind {}; is another Cadenza running? Try --base-port",
            plan.id
        )
    })?;
    let engine = edge_node::Engine::new(config, Arc::new(edge_node::EdgeHooks))?;
    let (addresses, task) = edge_node::start(engine, listeners, shutdown)?;
    let tls = addresses
        .tls
        .map(|address| format!("https://localhost:{}", address.port()))
        .unwrap_or_default();
    let certificate = plan.data_dir.join(format!("{}.pem", plan.id));
    let pem = pem::encode_many(
        &addresses
            .certificate
            .iter()
            .map(|der| pem::Pem::new("CERTIFICATE", der.clone()))
            .collect::<Vec<_>>(),
    );
    write_atomically(&certificate, pem.as_bytes())?;
    let endpoint = EdgeEndpoint {
        id: plan.id.to_owned(),
        url: addresses
            .cleartext
            .map(|address| format!("http://{address}"))
            .unwrap_or_default(),
        h3: if addresses.http3 {
            tls.clone()
        } else {
            String::new()
        },
        tls,
        admin: format!("http://{}", addresses.admin),
        certificate,
    };
    Ok((endpoint, task))
}

/// What the demo catalogue became at first start (`DATA_DIR/demo-catalogue.json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct DemoCatalogue {
    tracks: Vec<DemoTrackRecord>,
    ad: Option<DemoTrackRecord>,
}

/// One tune of the demo catalogue: a title, its artist and a synthesiser.
struct Tune {
    title: &'static str,
    singer: &'static str,
    kind: &'static str,
    wav: fn() -> Vec<u8>,
}

/// The demo catalogue's tunes: names in several scripts and with punctuation, so that search
/// has something to show (try `q=dodsfall`, `q=thalassa`, `q=散歩`, `q=ace`, `q=cafe`,
/// `q=full width`).
const TUNES: [Tune; 12] = [
    music("Cadenza Demo", "Demo Artist", demo_wav),
    music("Minor Waltz", "Demo Artist", waltz_wav),
    music("Pentatonic Drift", "Demo Artist", drift_wav),
    music("Dødsfall Drive", "Ærø Quartet", || song_wav(4)),
    music("Спокойная ночь", "Лёгкий Ветер", || song_wav(5)),
    music("Θάλασσα", "Μελωδία", || song_wav(6)),
    music("夜の散歩", "星空楽団", || song_wav(7)),
    music("Café Ünïcode", "Les Accents", || song_wav(8)),
    music("Spider-Walk", "A.C.E.", || song_wav(9)),
    music("Rage Against the Metronome", "Dvořák Street Band", || {
        song_wav(10)
    }),
    music("Night Bus Home", "Beyoncé Tribute Trio", || song_wav(11)),
    music("Ｆｕｌｌ Ｗｉｄｔｈ Ｆｕｎｋ", "a-ha-ha", || song_wav(12)),
];

/// A tune of the demo artist's.
const fn music(title: &'static str, singer: &'static str, wav: fn() -> Vec<u8>) -> Tune {
    Tune {
        title,
        singer,
        kind: "music",
        wav,
    }
}

const AD_TUNE: Tune = Tune {
    title: "Cadenza Premium: no ads, ever",
    singer: "Cadenza",
    kind: "ad",
    wav: jingle_wav,
};

/// The demo catalogue: twelve tunes uploaded by the demo artist and one ad uploaded by the
/// administrator, all through the real upload API and pipeline at first start, then
/// remembered in `DATA_DIR/demo-catalogue.json`.
async fn demo_catalogue(
    api: &str,
    demo: &DemoAccounts,
    data_dir: &Path,
    tunes: &[Tune],
) -> anyhow::Result<DemoCatalogue> {
    let path = data_dir.join("demo-catalogue.json");
    if let Ok(bytes) = std::fs::read(&path) {
        return serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is corrupt", path.display()));
    }
    let http = reqwest::Client::new();
    let artist = log_in(&http, api, &demo.artist).await?;
    let admin = log_in(&http, api, &demo.admin).await?;
    let mut uploads = Vec::new();
    // A data directory from before the catalogue already holds the first tune.
    let earlier: Option<DemoTrackRecord> = std::fs::read(data_dir.join("demo-track.json"))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    for (index, tune) in tunes.iter().chain([&AD_TUNE]).enumerate() {
        if index == 0
            && let Some(record) = &earlier
        {
            uploads.push(record.id.clone());
            continue;
        }
        let token = if tune.kind == "ad" { &admin } else { &artist };
        uploads.push(upload(&http, api, token, tune).await?);
    }
    tracing::info!(
        message = "Preparing the demo catalogue (first start only).",
        tracks = uploads.len()
    );
    let mut catalogue = DemoCatalogue::default();
    for (index, track) in uploads.into_iter().enumerate() {
        let record = wait_until_ready(&http, api, &admin, &track).await?;
        if index < tunes.len() {
            catalogue.tracks.push(record);
        } else {
            catalogue.ad = Some(record);
        }
    }
    write_atomically(&path, &serde_json::to_vec_pretty(&catalogue)?)?;
    Ok(catalogue)
}

async fn log_in(
    http: &reqwest::Client,
    api: &str,
    credentials: &Credentials,
) -> anyhow::Result<String> {
    let session: serde_json::Value = http
        .post(format!("{api}/api/v1/sessions"))
        .json(&serde_json::json!({"email": credentials.email, "password": credentials.password}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(session["token"]
        .as_str()
        .context("the session has no token")?
        .to_owned())
}

async fn upload(
    http: &reqwest::Client,
    api: &str,
    token: &str,
    tune: &Tune,
) -> anyhow::Result<String> {
    let upload: serde_json::Value = http
        .post(format!("{api}/api/v1/tracks"))
        .query(&[
            ("title", tune.title),
            ("singer", tune.singer),
            ("filename", "demo.wav"),
            ("kind", tune.kind),
        ])
        .bearer_auth(token)
        .body((tune.wav)())
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(upload["track_id"]
        .as_str()
        .context("the upload names no track")?
        .to_owned())
}

async fn wait_until_ready(
    http: &reqwest::Client,
    api: &str,
    token: &str,
    track: &str,
) -> anyhow::Result<DemoTrackRecord> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    loop {
        let state: serde_json::Value = http
            .get(format!("{api}/api/v1/tracks/{track}"))
            .bearer_auth(token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        match state["status"].as_str() {
            Some("ready") => {
                return Ok(DemoTrackRecord {
                    id: track.to_owned(),
                    hls: state["hls"].as_str().context("no HLS path")?.to_owned(),
                    dash: state["dash"].as_str().context("no DASH path")?.to_owned(),
                });
            }
            Some("rejected" | "failed") => {
                anyhow::bail!(
                    "the demo track {track} was {}: {}",
                    state["status"],
                    state["reason"]
                );
            }
            _ if std::time::Instant::now() > deadline => {
                anyhow::bail!("the demo track {track} was not ready after five minutes");
            }
            _ => tokio::time::sleep(std::time::Duration::from_millis(250)).await,
        }
    }
}

/// A play of the first demo track by the demo listener, through the play API (so on the free
/// package it starts with the demo ad), once the edges have registered with the locator.
async fn demo_play(api: &str, demo: &DemoAccounts, track: &str) -> anyhow::Result<DemoPlay> {
    let http = reqwest::Client::new();
    let token = log_in(&http, api, &demo.listener).await?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let response = http
            .post(format!("{api}/api/v1/play"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"track_id": track, "format": "hls", "protocol": "h1", "device": "cadenza-banner"}))
            .send()
            .await?;
        if response.status().is_success() {
            let answer: serde_json::Value = response.json().await?;
            return Ok(DemoPlay {
                track_id: track.to_owned(),
                manifest_url: answer["manifest_url"]
                    .as_str()
                    .context("the play has no manifest")?
                    .to_owned(),
                fallbacks: answer["fallbacks"]
                    .as_array()
                    .map(|urls| {
                        urls.iter()
                            .filter_map(|url| url.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default(),
                ads: answer["ads"].as_array().map_or(0, Vec::len),
            });
        }
        // 503 until the edges' first heartbeats reach the locator.
        if response.status() != reqwest::StatusCode::SERVICE_UNAVAILABLE
            || std::time::Instant::now() > deadline
        {
            anyhow::bail!(
                "the demo play failed: {} {}",
                response.status(),
                response.text().await.unwrap_or_default()
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// A listening history for the demo listener, made once (`DATA_DIR/demo-listening.json`)
/// through the play API like any player's: five tunes heard to the end and one skipped, and a
/// playlist of three, so that the home page has recently played, top, "because you listened"
/// and playlists to show from the first start.
async fn demo_listening(
    api: &str,
    demo: &DemoAccounts,
    data_dir: &Path,
    catalogue: &DemoCatalogue,
) -> anyhow::Result<()> {
    let marker = data_dir.join("demo-listening.json");
    if marker.exists() || catalogue.tracks.len() < 7 {
        return Ok(());
    }
    let http = reqwest::Client::new();
    let token = log_in(&http, api, &demo.listener).await?;
    let mut history = Vec::new();
    for (index, record) in catalogue.tracks.iter().enumerate().skip(1).take(6) {
        let play: serde_json::Value = http
            .post(format!("{api}/api/v1/play"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"track_id": record.id, "format": "hls", "device": "cadenza-demo"}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let play_id = play["play_id"].as_str().context("the play has no id")?;
        let end = if index == 6 { "skip" } else { "complete" };
        for (kind, position_ms) in [("start", 0), (end, 1_000)] {
            http.post(format!("{api}/api/v1/play-events"))
                .bearer_auth(&token)
                .json(&serde_json::json!({"play_id": play_id, "type": kind, "position_ms": position_ms}))
                .send()
                .await?
                .error_for_status()?;
        }
        history.push(serde_json::json!({"track_id": record.id, "play_id": play_id, "end": end}));
    }
    let mut playlist: Option<String> = None;
    for record in catalogue.tracks.iter().skip(3).take(3) {
        let body = match &playlist {
            Some(id) => serde_json::json!({"track_id": record.id, "playlist_id": id}),
            None => serde_json::json!({"track_id": record.id, "name": "Demo favourites"}),
        };
        let added: serde_json::Value = http
            .post(format!("{api}/api/v1/playlists/tracks"))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        if playlist.is_none() {
            playlist = Some(
                added["playlist"]["id"]
                    .as_str()
                    .context("the new playlist has no id")?
                    .to_owned(),
            );
        }
    }
    write_atomically(
        &marker,
        &serde_json::to_vec_pretty(&serde_json::json!({"plays": history, "playlist": playlist}))?,
    )?;
    Ok(())
}

/// Signs week-long URLs for the demo track's directory, through the edge.
fn sign_demo_track(
    record: &DemoTrackRecord,
    edge: &str,
    secret: &str,
) -> anyhow::Result<DemoTrack> {
    let keyring = url_token::Keyring::new(
        vec![url_token::Key::new("demo", secret.as_bytes())?],
        "demo",
    )?;
    let directory = record
        .hls
        .rsplit_once('/')
        .map(|(directory, _)| format!("{directory}/"))
        .context("the HLS path has no directory")?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let expires_at = now + 7 * 24 * 3600;
    let token = keyring.sign(&directory, now, expires_at, None)?;
    Ok(DemoTrack {
        id: record.id.clone(),
        hls: format!("{edge}/t/{token}{}", record.hls),
        dash: format!("{edge}/t/{token}{}", record.dash),
        expires_at,
    })
}

/// Twenty seconds of a little tune in 44.1 kHz stereo WAV: a C-major arpeggio over a bass,
/// each note with a soft attack and decay, so the pipeline has music to analyse.
fn demo_wav() -> Vec<u8> {
    let notes = [
        261.63, 329.63, 392.00, 523.25, 392.00, 329.63, 293.66, 349.23,
    ];
    media::wav::pcm_wav(20.0, 44_100, None, |t| {
        let beat = (t * 4.0) as usize;
        let within = t * 4.0 - beat as f64;
        let envelope = (within * 40.0).min(1.0) * (-within * 3.0).exp();
        let note = notes[beat % notes.len()];
        let bass = notes[(beat / 8) % 4] / 2.0;
        let tau = std::f64::consts::TAU;
        let melody = (tau * note * t).sin() * envelope;
        let low = (tau * bass * t).sin() * 0.5;
        (0.35 * melody + 0.2 * low, 0.25 * melody + 0.25 * low)
    })
}

/// Eighteen seconds of a waltz in A minor, three beats to the bar, with a plucked envelope.
fn waltz_wav() -> Vec<u8> {
    let notes = [
        220.00, 261.63, 329.63, 246.94, 293.66, 349.23, 207.65, 246.94, 329.63,
    ];
    media::wav::pcm_wav(18.0, 44_100, None, |t| {
        let beat = (t * 3.0) as usize;
        let within = t * 3.0 - beat as f64;
        let envelope = (within * 60.0).min(1.0) * (-within * 5.0).exp();
        let note = notes[beat % notes.len()];
        let tau = std::f64::consts::TAU;
        let tone = (tau * note * t).sin() + 0.3 * (tau * 2.0 * note * t).sin();
        let pad = (tau * notes[(beat / 3) % 3] / 2.0 * t).sin() * 0.3;
        (
            0.3 * tone * envelope + 0.15 * pad,
            0.25 * tone * envelope + 0.2 * pad,
        )
    })
}

/// Sixteen seconds of slow pentatonic bells over a drone.
fn drift_wav() -> Vec<u8> {
    let notes = [
        293.66, 329.63, 440.00, 493.88, 587.33, 493.88, 440.00, 329.63,
    ];
    media::wav::pcm_wav(16.0, 44_100, None, |t| {
        let beat = (t * 2.0) as usize;
        let within = t * 2.0 - beat as f64;
        let envelope = (within * 20.0).min(1.0) * (-within * 1.5).exp();
        let note = notes[(beat * 3) % notes.len()];
        let tau = std::f64::consts::TAU;
        let bell = (tau * note * t).sin() * envelope;
        let drone = (tau * 146.83 * t).sin() * 0.25 + (tau * 220.0 * t).sin() * 0.1;
        (0.35 * bell + drone * 0.6, 0.3 * bell + drone * 0.7)
    })
}

/// A seeded little song of 14 to 19 s: a melody drawn at random from a scale (major, minor,
/// pentatonic or dorian) in its own key and tempo, over a bass that follows a random
/// progression, with its own timbre and a noise hi-hat on its own pattern. Each seed is a
/// recording of its own: the pipeline's duplicate check keeps them apart, where repeated
/// arpeggios of one shape were taken for copies of each other.
fn song_wav(seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    const SCALES: [&[i32]; 4] = [
        &[0, 2, 4, 5, 7, 9, 11],
        &[0, 2, 3, 5, 7, 8, 10],
        &[0, 2, 4, 7, 9],
        &[0, 2, 3, 5, 7, 9, 10],
    ];
    let scale = SCALES[(next() % SCALES.len() as u64) as usize];
    let pitch = |root: f64, semitones: i32| root * 2f64.powf(f64::from(semitones) / 12.0);
    let root = pitch(196.0, (next() % 12) as i32);
    let beats_per_second = (72 + next() % 80) as f64 / 60.0;
    let seconds = (14 + next() % 6) as f64;
    let steps = (seconds * beats_per_second * 2.0) as usize + 2;
    let melody: Vec<Option<f64>> = (0..steps)
        .map(|_| {
            // One half-beat in eight rests.
            let degree = (next() % (scale.len() as u64 * 2 + 1)) as usize;
            (degree < scale.len() * 2).then(|| {
                let octave = (degree / scale.len()) as i32;
                pitch(root, scale[degree % scale.len()] + 12 * octave)
            })
        })
        .collect();
    let progression: Vec<f64> = (0..4)
        .map(|_| pitch(root / 2.0, scale[(next() % scale.len() as u64) as usize]))
        .collect();
    let second = (next() % 60) as f64 / 100.0;
    let third = (next() % 40) as f64 / 100.0;
    let hats = next();
    let mut noise = next() | 1;
    media::wav::pcm_wav(seconds, 44_100, None, move |t| {
        let tau = std::f64::consts::TAU;
        let half_beats = t * beats_per_second * 2.0;
        let step = half_beats as usize;
        let within = half_beats - step as f64;
        let envelope = (within * 50.0).min(1.0) * (-within * 2.5).exp();
        let lead = melody[step % melody.len()].map_or(0.0, |f| {
            ((tau * f * t).sin()
                + second * (tau * 2.0 * f * t).sin()
                + third * (tau * 3.0 * f * t).sin())
                * envelope
        });
        let bass_note = progression[(step / 8) % progression.len()];
        let bass = (tau * bass_note * t).sin() * 0.35;
        noise ^= noise << 13;
        noise ^= noise >> 7;
        noise ^= noise << 17;
        let hat = if hats >> (step % 64) & 1 == 1 {
            ((noise >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * (-within * 30.0).exp() * 0.2
        } else {
            0.0
        };
        (
            0.3 * lead + 0.25 * bass + hat,
            0.25 * lead + 0.3 * bass + 0.8 * hat,
        )
    })
}

/// Eight seconds of a bright jingle: the demo ad.
fn jingle_wav() -> Vec<u8> {
    let notes = [523.25, 659.25, 783.99, 1046.50, 783.99, 1046.50];
    media::wav::pcm_wav(8.0, 44_100, None, |t| {
        let beat = (t * 6.0) as usize;
        let within = t * 6.0 - beat as f64;
        let envelope = (within * 80.0).min(1.0) * (-within * 4.0).exp();
        let note = notes[beat % notes.len()];
        let tau = std::f64::consts::TAU;
        let ring = ((tau * note * t).sin() + 0.5 * (tau * 3.0 * note * t).sin()) * envelope;
        let bass = (tau * 130.81 * t).sin() * 0.2;
        (0.3 * ring + bass, 0.3 * ring + bass)
    })
}

fn endpoint(public: &TcpListener, admin: &TcpListener) -> anyhow::Result<Endpoint> {
    Ok(Endpoint {
        url: format!("http://{}", public.local_addr()?),
        admin: format!("http://{}", admin.local_addr()?),
    })
}

fn endpoint_of(public: SocketAddr, admin: SocketAddr) -> Endpoint {
    Endpoint {
        url: format!("http://{public}"),
        admin: format!("http://{admin}"),
    }
}

/// The demo accounts: created at first start with random passwords kept in
/// `DATA_DIR/demo-credentials.json` (mode 0600), and read back on every later start.
async fn demo_accounts(app: &App, data_dir: &Path) -> anyhow::Result<DemoAccounts> {
    let path = data_dir.join("demo-credentials.json");
    if let Ok(bytes) = std::fs::read(&path) {
        let accounts: DemoAccounts = serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{} is corrupt; delete the data directory to start over",
                path.display()
            )
        })?;
        return Ok(accounts);
    }
    let admin = app
        .bootstrap_admin()
        .await?
        .context("an administrator exists but the demo credentials file is missing; delete the data directory to start over")?;
    let mut accounts = DemoAccounts {
        admin: Credentials {
            email: admin.email,
            password: admin.password,
        },
        artist: Credentials {
            email: "artist@cadenza.localhost".to_owned(),
            password: random_token(),
        },
        listener: Credentials {
            email: "listener@cadenza.localhost".to_owned(),
            password: random_token(),
        },
    };
    for (credentials, first_name, role) in [
        (&mut accounts.artist, "Demo Artist", "artist"),
        (&mut accounts.listener, "Demo Listener", "listener"),
    ] {
        let hash = app
            .passwords
            .hash(credentials.password.clone())
            .await
            .map_err(|error| anyhow::anyhow!("{error}"))?;
        app.create_user(NewUser {
            id: new_id(),
            email: credentials.email.clone(),
            first_name: first_name.to_owned(),
            last_name: "Cadenza".to_owned(),
            mobile: "+10000000001".to_owned(),
            address: "127.0.0.1".to_owned(),
            password_hash: hash,
            role: role.to_owned(),
            now: app.clock.now_ms(),
        })
        .await
        .map_err(|error| anyhow::anyhow!("creating the demo {role}: {error}"))?;
    }
    write_private(&path, &serde_json::to_vec_pretty(&accounts)?)?;
    Ok(accounts)
}

/// A random secret made at first start and kept in `DATA_DIR/{name}` (mode 0600): the node
/// token, the fill key, the purge key, the URL-token key.
fn secret_file(data_dir: &Path, name: &str) -> anyhow::Result<String> {
    let path = data_dir.join(name);
    if let Ok(token) = std::fs::read_to_string(&path) {
        return Ok(token.trim().to_owned());
    }
    let token = random_token();
    write_private(&path, token.as_bytes())?;
    Ok(token)
}

/// Writes through a temporary file and a rename, so a reader never sees half a file.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("failed to write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("failed to write {}", path.display()))?;
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    write_atomically(path, bytes)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// The banner `cargo run --release` prints: where to point a browser, player or script.
pub fn banner(info: &StackInfo, data_dir: &Path) -> String {
    let cp = &info.control_plane;
    let demo = &info.demo;
    let mut edges = String::new();
    for edge in &info.edges {
        edges.push_str(&format!(
            "  Edge {id:<10} {url}   (TLS h1/h2: {tls}, HTTP/3: {h3}; admin: {admin}/metrics)\n",
            id = edge.id,
            url = edge.url,
            tls = edge.tls,
            h3 = if edge.h3.is_empty() { "off" } else { &edge.h3 },
            admin = edge.admin,
        ));
    }
    for isp_box in &info.isp_boxes {
        edges.push_str(&format!(
            "  ISP box {id:<7} {url}   (serves only clients from {prefixes}; status: {admin}/status, or\n\
             \x20                 cargo run --release -p isp-box -- status --admin {admin})\n\
             \x20                 Clients there are sent to it:  curl -s --interface 127.0.0.2 '{locator}/v1/locate?track=ID'\n",
            id = isp_box.id,
            url = isp_box.url,
            prefixes = isp_box.prefixes.join(", "),
            admin = isp_box.admin,
            locator = info.host_locator.url,
        ));
    }
    let track = match &info.demo_track {
        Some(track) => format!(
            "  Demo track (HLS, through the edge; open it in any HLS player, e.g. ffplay or VLC):\n\
             \x20   {hls}\n\
             \x20 DASH:\n\
             \x20   {dash}\n\n",
            hls = track.hls,
            dash = track.dash,
        ),
        None => "  The demo track could not be prepared; see the log above.\n\n".to_owned(),
    };
    let play = match &info.demo_play {
        Some(play) => format!(
            "  The demo listener's play of it through the play API (free package; {ads}):\n\
             \x20   ffplay -autoexit '{url}'\n\
             \x20 or, without a window:  ffmpeg -i '{url}' -f null -\n\n",
            ads = match play.ads {
                0 => "no ad this time, one came at the start of the session".to_owned(),
                1 => "an ad spliced in front".to_owned(),
                n => format!("{n} ads spliced in front"),
            },
            url = play.manifest_url,
        ),
        None => String::new(),
    };
    format!(
        "\n  Cadenza is running.\n\n\
         \x20 Web player      {url}/   (open it in a browser; log in as the demo listener below)\n\
         \x20 Control plane   {url}   (API: {url}/api/v1/, OpenAPI: {url}/api/v1/openapi.json)\n\
         \x20 Admin port      {admin}/metrics   {admin}/readyz\n\
         \x20 Host locator    {locator}/v1/locate?track=ID   (admin: {locator_admin}/metrics)\n\
         \x20 Origin          {origin}   (fills only; admin: {origin_admin}/metrics)\n\
         {edges}\n\
         {track}\
         {play}\
         \x20 Demo accounts (log in with POST {url}/api/v1/sessions):\n\
         \x20   listener  {le}  /  {lp}\n\
         \x20   artist    {ae}  /  {ap}\n\
         \x20   admin     {me}  /  {mp}\n\n\
         \x20 Try:  curl -s {url}/api/v1/packages\n\
         \x20       curl -s '{url}/api/v1/search?q=minor%20walz&type=track,artist'   (search as you type; also q=dodsfall, q=thalassa)\n\
         \x20       curl -s {url}/api/v1/home -H 'authorization: Bearer TOKEN'   (the home screen, as the listener)\n\n\
         \x20 Everything above is also in {stack}. Ctrl-C stops the stack; the next start reuses {dir}.\n",
        url = cp.url,
        admin = cp.admin,
        locator = info.host_locator.url,
        locator_admin = info.host_locator.admin,
        origin = info.origin.url,
        origin_admin = info.origin.admin,
        le = demo.listener.email,
        lp = demo.listener.password,
        ae = demo.artist.email,
        ap = demo.artist.password,
        me = demo.admin.email,
        mp = demo.admin.password,
        stack = data_dir.join("stack.json").display(),
        dir = data_dir.display(),
    )
}
