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
use control_plane::auth::random_token;
use control_plane::config::Config as ControlPlaneConfig;
use control_plane::store::{Clock, NewUser, new_id};
use figment::Figment;
use figment::providers::Serialized;
use serde::{Deserialize, Serialize};
use telemetry::{LogFormat, Shutdown};
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

/// What `stack.json` holds: every daemon's URLs and the demo credentials.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StackInfo {
    /// The control plane (accounts, packages, playlists, the API).
    pub control_plane: Endpoint,
    /// The host locator (`/v1/locate`, node registration).
    pub host_locator: Endpoint,
    /// Edge nodes (none yet).
    pub edges: Vec<Endpoint>,
    /// ISP boxes (none yet).
    pub isp_boxes: Vec<Endpoint>,
    /// Demo accounts.
    pub demo: DemoAccounts,
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
    tasks: Vec<JoinHandle<anyhow::Result<()>>>,
}

impl Stack {
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
    let cp_config = ControlPlaneConfig::load(
        None,
        Figment::new()
            .merge(Serialized::default(
                "data_dir",
                options.data_dir.join("control-plane"),
            ))
            .merge(Serialized::default("listen", cp_listener.local_addr()?))
            .merge(Serialized::default("admin_listen", cp_admin.local_addr()?))
            .merge(Serialized::default("log_format", options.log_format)),
    )
    .context("the control plane's configuration is invalid")?;
    let app = App::build(cp_config, Clock::system()).await?;
    let demo = demo_accounts(&app, &options.data_dir).await?;

    let locator_listener = bind(port(2)).await?;
    let locator_admin = bind(port(1002)).await?;
    let node_token = node_token(&options.data_dir)?;
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
            .merge(Serialized::default("log_format", options.log_format)),
    )
    .context("the host locator's configuration is invalid")?;
    let locator = host_locator::Locator::new(locator_config, Clock::system())?;

    let info = StackInfo {
        control_plane: endpoint(&cp_listener, &cp_admin)?,
        host_locator: endpoint(&locator_listener, &locator_admin)?,
        edges: Vec::new(),
        isp_boxes: Vec::new(),
        demo,
    };
    let tasks = vec![
        tokio::spawn(control_plane::run(
            app.clone(),
            cp_listener,
            cp_admin,
            shutdown.clone(),
        )),
        tokio::spawn(host_locator::run(
            locator.clone(),
            locator_listener,
            locator_admin,
            shutdown,
        )),
    ];
    write_atomically(
        &options.data_dir.join("stack.json"),
        &serde_json::to_vec_pretty(&info)?,
    )?;
    Ok(Stack {
        info,
        control_plane: app,
        host_locator: locator,
        node_token,
        tasks,
    })
}

fn endpoint(public: &TcpListener, admin: &TcpListener) -> anyhow::Result<Endpoint> {
    Ok(Endpoint {
        url: format!("http://{}", public.local_addr()?),
        admin: format!("http://{}", admin.local_addr()?),
    })
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

/// The token nodes present to the host locator: made at first start, kept in
/// `DATA_DIR/node-token` (mode 0600).
fn node_token(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("node-token");
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
    format!(
        "\n  Cadenza is running.\n\n\
         \x20 Control plane   {url}   (API: {url}/api/v1/, OpenAPI: {url}/api/v1/openapi.json)\n\
         \x20 Admin port      {admin}/metrics   {admin}/readyz\n\
         \x20 Host locator    {locator}/v1/locate?track=ID   (admin: {locator_admin}/metrics)\n\n\
         \x20 Demo accounts (log in with POST {url}/api/v1/sessions):\n\
         \x20   listener  {le}  /  {lp}\n\
         \x20   artist    {ae}  /  {ap}\n\
         \x20   admin     {me}  /  {mp}\n\n\
         \x20 Try:  curl -s {url}/api/v1/packages\n\n\
         \x20 Everything above is also in {stack}. Ctrl-C stops the stack; the next start reuses {dir}.\n",
        url = cp.url,
        admin = cp.admin,
        locator = info.host_locator.url,
        locator_admin = info.host_locator.admin,
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
