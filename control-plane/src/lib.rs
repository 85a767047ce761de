//! Cadenza's control plane: accounts, packages and playlists over the User DB and the
//! Inventory DB, with a cache in front of the User DB. One library with a module per service;
//! the binary in `main.rs` and the all-in-one launcher both call [`App::build`] and [`run`].

pub mod accounts;
pub mod analytics;
pub mod api;
pub mod auth;
pub mod bus;
pub mod cache;
pub mod calendar;
pub mod catalog;
pub mod config;
pub mod error;
pub mod extract;
pub mod objects;
pub mod packages;
pub mod payments;
pub mod play;
pub mod playlists;
pub mod processing;
pub mod search;
pub mod services;
pub mod store;
pub mod subscriptions;
pub mod uploads;
pub mod validate;
pub mod web;

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use telemetry::{Readiness, Shutdown};
use tokio::net::TcpListener;

use crate::accounts::store::NewUser;
use crate::auth::{LoginThrottle, Passwords, Role, random_token};
use crate::bus::Bus;
use crate::cache::Cache;
use crate::config::Config;
use crate::payments::provider::Sandbox;
use crate::store::{Clock, Database, DatabaseKind, InventoryStore, UserStore, new_id};

/// How long a playlist may stay `pending` before the sweeper settles it. Far longer than any
/// create or delete takes, so the sweeper never races one in progress.
pub const ORPHAN_GRACE: Duration = Duration::from_secs(10 * 60);
/// How often the sweeper runs.
const SWEEP_EVERY: Duration = Duration::from_secs(5 * 60);

/// The control plane's shared state; cheap to clone. Handlers take it as an extractor.
#[derive(Debug, Clone)]
pub struct App(Arc<AppInner>);

/// What [`App`] holds.
#[derive(Debug)]
pub struct AppInner {
    /// The configuration in force.
    pub config: Config,
    /// The User DB.
    pub users: UserStore,
    /// The Inventory DB.
    pub inventory: InventoryStore,
    /// The cache in front of the User DB.
    pub cache: Cache,
    /// Password hashing.
    pub passwords: Passwords,
    /// Failed-login throttling.
    pub throttle: LoginThrottle,
    /// The time source.
    pub clock: Clock,
    /// The event bus.
    pub bus: Bus,
    /// The sandbox payment provider.
    pub sandbox: Sandbox,
    /// The key provider webhooks are signed with.
    pub webhook_secret: Vec<u8>,
    /// The object store (raw uploads, packaged media).
    pub objects: objects::Objects,
    /// One chunk at a time per upload.
    pub upload_locks: uploads::UploadLocks,
    /// The catalog: per-track media facts and processing timelines.
    pub catalog: Arc<dyn catalog::store::CatalogStore>,
    /// The play API's keys, locator client and manifest pieces.
    pub player: play::Player,
    /// This process's search index.
    pub search: search::Search,
    /// The listening analytics the home screen reads.
    pub analytics: analytics::Analytics,
}

impl Deref for App {
    type Target = AppInner;

    fn deref(&self) -> &AppInner {
        &self.0
    }
}

impl FromRequestParts<App> for App {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(_parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        Ok(app.clone())
    }
}

/// Credentials of an administrator created at first start.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AdminCredentials {
    /// Email to log in with.
    pub email: String,
    /// Password to log in with.
    pub password: String,
}

impl App {
    /// Connects to both databases (migrating them), the cache, and seeds the default packages
    /// on a fresh Inventory DB.
    pub async fn build(config: Config, clock: Clock) -> anyhow::Result<Self> {
        // Install the metrics recorder before anything counts.
        telemetry::metrics_handle();
        let users = Database::connect(&config.user_db_url(), DatabaseKind::User)
            .await
            .context("failed to open the User DB")?;
        let inventory = Database::connect(&config.inventory_db_url(), DatabaseKind::Inventory)
            .await
            .context("failed to open the Inventory DB")?;
        let catalog = catalog::store::open(&config.catalog_url())
            .await
            .context("failed to open the catalog")?;
        let cache = Cache::from_url(
            config.cache_url.as_ref().map(|url| url.expose()),
            &config.cache_prefix,
        )
        .context("failed to configure the cache")?;
        let passwords = Passwords::new(&config.auth)?;
        let throttle = LoginThrottle::new(cache.clone(), &config.auth);
        // Payment and subscription events are produced in User DB transactions, so their
        // outbox is the User DB's.
        let logs = HashMap::from([
            (events::payments::TOPIC, users.clone()),
            (events::subscriptions::TOPIC, users.clone()),
            // Play events are produced in User DB transactions too (with the listening clock).
            (events::plays::TOPIC, users.clone()),
            // Track events are produced in Inventory DB transactions.
            (events::tracks::TOPIC, inventory.clone()),
        ]);
        let bus = Bus::new(
            config.bus_url.as_ref().map(|url| url.expose()),
            &config.bus_namespace,
            logs,
            clock.clone(),
        )
        .context("failed to configure the event bus")?;
        let webhook_secret = match &config.payments.webhook_secret {
            Some(secret) => secret.expose().as_bytes().to_vec(),
            None => random_token().into_bytes(),
        };
        let objects = objects::Objects::from_url(&config.object_store_url(), &config.s3)
            .context("failed to open the object store")?;
        let player =
            play::Player::new(&config.play).context("the play configuration is invalid")?;
        let search = search::Search::new(bus.instance()).context("failed to open search")?;
        let analytics = analytics::Analytics::open(
            &config.analytics_url(),
            Duration::from_millis(config.play.locator_timeout_ms),
        )
        .await
        .context("failed to open the analytics store")?;
        let app = Self(Arc::new(AppInner {
            player,
            search,
            analytics,
            objects,
            upload_locks: uploads::UploadLocks::default(),
            catalog,
            bus,
            sandbox: Sandbox::default(),
            webhook_secret,
            users: UserStore::new(users),
            inventory: InventoryStore::new(inventory),
            cache,
            passwords,
            throttle,
            clock,
            config,
        }));
        app.seed_packages().await?;
        tracing::info!(
            message = "Control plane state opened.",
            user_db = app.users.database().dialect().name(),
            inventory_db = app.inventory.database().dialect().name(),
            cache = app.cache.backend_name(),
            bus = app.bus.transport_name(),
            objects = app.objects.kind(),
        );
        Ok(app)
    }

    async fn seed_packages(&self) -> anyhow::Result<()> {
        if self.inventory.package_count().await? > 0 {
            return Ok(());
        }
        let now = self.clock.now_ms();
        for package in packages::default_packages() {
            self.inventory.insert_package(&package, now).await?;
        }
        tracing::info!(message = "Seeded the default packages.");
        Ok(())
    }

    /// Creates the first administrator if there is none: from the configuration, or with a
    /// random password that the caller must show once. Returns the credentials when it created
    /// an admin with a generated password.
    pub async fn bootstrap_admin(&self) -> anyhow::Result<Option<AdminCredentials>> {
        if self.users.role_exists(Role::Admin.as_str()).await? {
            return Ok(None);
        }
        let (email, password, generated) = match &self.config.bootstrap_admin {
            Some(admin) => (
                validate::normalize_email(&admin.email)
                    .map_err(|error| anyhow::anyhow!(error.message))?,
                admin.password.expose().to_owned(),
                false,
            ),
            None => ("admin@cadenza.localhost".to_owned(), random_token(), true),
        };
        let hash = self
            .passwords
            .hash(password.clone())
            .await
            .map_err(|error| anyhow::anyhow!("{error}"))?;
        let created = self
            .users
            .insert_user(&NewUser {
                id: new_id(),
                email: email.clone(),
                first_name: "Cadenza".to_owned(),
                last_name: "Administrator".to_owned(),
                mobile: "+10000000000".to_owned(),
                address: "-".to_owned(),
                password_hash: hash,
                role: Role::Admin.as_str().to_owned(),
                now: self.clock.now_ms(),
            })
            .await?;
        anyhow::ensure!(
            created,
            "the bootstrap admin's email {email} is already registered to a non-admin account"
        );
        tracing::info!(message = "Created the first administrator.", email);
        Ok(generated.then_some(AdminCredentials { email, password }))
    }

    /// Readiness: both databases answer.
    pub fn readiness(&self, shutdown: Shutdown) -> Readiness {
        let users = self.users.database().clone();
        let inventory = self.inventory.database().clone();
        Readiness::new(shutdown)
            .with_check(
                "user_db",
                Arc::new(move || {
                    let db = users.clone();
                    Box::pin(async move { db.ping().await.map_err(|error| error.to_string()) })
                }),
            )
            .with_check(
                "inventory_db",
                Arc::new(move || {
                    let db = inventory.clone();
                    Box::pin(async move { db.ping().await.map_err(|error| error.to_string()) })
                }),
            )
    }

    /// The public router (for tests that call it without sockets).
    pub fn router(&self) -> axum::Router {
        api::router(self.clone())
    }
}

impl store::Dialect {
    /// `sqlite` or `mysql`, for logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::MySql => "mysql",
        }
    }
}

/// Runs `task` every `period` until `shutdown`.
fn every<F>(
    period: Duration,
    shutdown: &Shutdown,
    app: App,
    task: impl Fn(App) -> F + Send + 'static,
) -> tokio::task::JoinHandle<()>
where
    F: Future<Output = ()> + Send,
{
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = shutdown.wait() => break,
                () = tokio::time::sleep(period) => {}
            }
            task(app.clone()).await;
        }
    })
}

/// Runs the services `app.config.services` names until `shutdown` triggers: the public API on
/// `listener` (needed only when one of them serves HTTP), the admin port on `admin`, the bus
/// consumers and background tasks among them; then drains within the configured grace period
/// and closes the databases.
pub async fn run(
    app: App,
    listener: Option<TcpListener>,
    admin: TcpListener,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    use services::Service;
    let services = app.config.services.clone();
    let grace = Duration::from_secs(app.config.drain_grace_secs);
    let admin_addr = admin.local_addr()?;
    let admin_task = tokio::spawn(telemetry::serve(
        admin,
        telemetry::admin_router("control-plane", app.readiness(shutdown.clone())),
        shutdown.clone(),
        grace,
    ));
    let mut workers = app
        .bus
        .start(shutdown.clone())
        .await
        .context("failed to start the event bus")?;
    let consumers: Vec<(Service, &str, &'static str, bus::Handler)> = vec![
        (
            Service::AccountUpdate,
            subscriptions::ACCOUNT_UPDATE,
            events::payments::TOPIC,
            subscriptions::account_update_handler(app.clone()),
        ),
        (
            Service::Processing,
            processing::PROCESSING,
            events::tracks::TOPIC,
            processing::processing_handler(app.clone()),
        ),
        (
            Service::Catalog,
            catalog::CATALOG,
            events::tracks::TOPIC,
            catalog::catalog_handler(app.clone()),
        ),
        (
            Service::PlayCounters,
            catalog::PLAY_COUNTERS,
            events::plays::TOPIC,
            catalog::play_counters_handler(app.clone()),
        ),
        (
            Service::Analytics,
            analytics::ANALYTICS,
            events::plays::TOPIC,
            analytics::analytics_handler(app.clone()),
        ),
        (
            Service::Search,
            app.search.group(),
            events::tracks::TOPIC,
            search::tracks_handler(app.clone()),
        ),
        (
            Service::Search,
            app.search.group(),
            events::plays::TOPIC,
            search::plays_handler(app.clone()),
        ),
    ];
    if services.runs(Service::Search) {
        // The index is whole before the consumers bring it forward.
        app.rebuild_search_index()
            .await
            .context("failed to build the search index")?;
        workers.push(every(
            search::POPULARITY_EVERY,
            &shutdown,
            app.clone(),
            |app| async move { app.refresh_popularity().await },
        ));
    }
    for (service, group, topic, handler) in consumers {
        if services.runs(service) {
            workers.push(
                app.bus
                    .subscribe(group, topic, handler, shutdown.clone())
                    .with_context(|| format!("failed to start the {service} consumer"))?,
            );
        }
    }
    if services.runs(Service::Payments) {
        // The sandbox's asynchronous confirmations arrive after a delay, as a real provider's
        // would.
        let delay = Duration::from_millis(app.config.payments.sandbox_webhook_delay_ms);
        workers.push(every(delay, &shutdown, app.clone(), |app| async move {
            app.deliver_sandbox_webhooks().await;
        }));
    }
    if services.runs(Service::Sweeper) {
        workers.push(every(
            SWEEP_EVERY,
            &shutdown,
            app.clone(),
            |app| async move {
                if let Err(error) = app.sweep_orphans(ORPHAN_GRACE).await {
                    tracing::warn!(message = "Orphan sweep failed; it runs again later.", %error);
                }
            },
        ));
    }
    let public_addr = listener.as_ref().map(TcpListener::local_addr).transpose()?;
    tracing::info!(
        message = "Control plane running.",
        services = %services,
        public = ?public_addr,
        admin = %admin_addr,
    );
    let served = match listener {
        Some(listener) if services.serve_http() => {
            telemetry::serve(listener, app.router(), shutdown.clone(), grace).await
        }
        _ => {
            shutdown.wait().await;
            Ok(())
        }
    };
    shutdown.trigger();
    for worker in workers {
        let _ = worker.await;
    }
    let _ = admin_task.await;
    app.users.database().close().await;
    app.inventory.database().close().await;
    app.analytics.store().close().await;
    tracing::info!(message = "Control plane stopped.");
    served.context("the public listener failed")
}
