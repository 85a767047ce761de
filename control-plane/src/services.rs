//! Which of the control plane's services a process runs (`--services`, `services` in the
//! configuration, `CADENZA_SERVICES`): all of them by default, or a set, so that a service can
//! run on its own and scale apart — the CPU-heavy `processing` consumer on workers of its own,
//! say, while the API processes serve HTTP. Every process of a deployment shares the same
//! databases, bus and object store; the services only choose what this one does with them.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One service of the control plane: a set of HTTP routes, a bus consumer or a background
/// task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Service {
    /// HTTP: users, sessions, profiles.
    Accounts,
    /// HTTP: the packages on offer.
    Packages,
    /// HTTP: playlists.
    Playlists,
    /// HTTP: checkout, confirmation, webhooks, refunds; and the sandbox's delayed webhooks.
    Payments,
    /// HTTP: subscriptions and entitlements.
    Subscriptions,
    /// Consumer: `payment.succeeded` → subscription time.
    AccountUpdate,
    /// HTTP: tus and one-request uploads, track status and its event stream, takedowns.
    Uploads,
    /// Consumer: `track.uploaded` → decoded, checked, transcoded, packaged and published.
    Processing,
    /// HTTP and consumer: the catalog's media facts and timelines.
    Catalog,
    /// Consumer: play events → the catalog's play counters.
    PlayCounters,
    /// HTTP: the play API, play events and per-play manifests.
    Play,
    /// HTTP and consumers: this process's search index, fed by track and play events.
    Search,
    /// Consumer: play events → the listening tables home reads.
    Analytics,
    /// HTTP: the home screen and track statistics.
    Home,
    /// HTTP: the web player's files at `/`.
    Web,
    /// Background: settles half-made playlists and finishes uploads whose last byte arrived.
    Sweeper,
}

impl Service {
    /// Every service, in the order they are listed.
    pub const ALL: [Service; 16] = [
        Self::Accounts,
        Self::Packages,
        Self::Playlists,
        Self::Payments,
        Self::Subscriptions,
        Self::AccountUpdate,
        Self::Uploads,
        Self::Processing,
        Self::Catalog,
        Self::PlayCounters,
        Self::Play,
        Self::Search,
        Self::Analytics,
        Self::Home,
        Self::Web,
        Self::Sweeper,
    ];

    /// Its name on the command line and in configuration.
    pub fn name(self) -> &'static str {
        match self {
            Self::Accounts => "accounts",
            Self::Packages => "packages",
            Self::Playlists => "playlists",
            Self::Payments => "payments",
            Self::Subscriptions => "subscriptions",
            Self::AccountUpdate => "account-update",
            Self::Uploads => "uploads",
            Self::Processing => "processing",
            Self::Catalog => "catalog",
            Self::PlayCounters => "play-counters",
            Self::Play => "play",
            Self::Search => "search",
            Self::Analytics => "analytics",
            Self::Home => "home",
            Self::Web => "web",
            Self::Sweeper => "sweeper",
        }
    }

    /// Whether it serves HTTP routes on the public listener.
    pub fn serves_http(self) -> bool {
        matches!(
            self,
            Self::Accounts
                | Self::Packages
                | Self::Playlists
                | Self::Payments
                | Self::Subscriptions
                | Self::Uploads
                | Self::Catalog
                | Self::Play
                | Self::Search
                | Self::Home
                | Self::Web
        )
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A service name that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown service `{0}` (expected all, or some of: {names})", names = names())]
pub struct UnknownService(pub String);

fn names() -> String {
    Service::ALL.map(Service::name).join(", ")
}

impl FromStr for Service {
    type Err = UnknownService;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Service::ALL
            .into_iter()
            .find(|service| service.name() == name)
            .ok_or_else(|| UnknownService(name.to_owned()))
    }
}

/// The services a process runs: never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Services(BTreeSet<Service>);

impl Default for Services {
    fn default() -> Self {
        Self::all()
    }
}

impl Services {
    /// Every service: one process is the whole control plane.
    pub fn all() -> Self {
        Self(Service::ALL.into_iter().collect())
    }

    /// Just these (at least one).
    pub fn only(services: impl IntoIterator<Item = Service>) -> Option<Self> {
        let set: BTreeSet<Service> = services.into_iter().collect();
        (!set.is_empty()).then_some(Self(set))
    }

    /// Whether `service` runs here.
    pub fn runs(&self, service: Service) -> bool {
        self.0.contains(&service)
    }

    /// Whether any service here serves HTTP, so that the public listener is needed.
    pub fn serve_http(&self) -> bool {
        self.0.iter().any(|service| service.serves_http())
    }

    /// The services, in order.
    pub fn iter(&self) -> impl Iterator<Item = Service> + '_ {
        self.0.iter().copied()
    }
}

impl fmt::Display for Services {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Self::all() {
            return f.write_str("all");
        }
        let names: Vec<&str> = self.iter().map(Service::name).collect();
        f.write_str(&names.join(","))
    }
}

impl FromStr for Services {
    type Err = UnknownService;

    /// `all`, or names separated by commas (spaces around them are allowed).
    fn from_str(list: &str) -> Result<Self, Self::Err> {
        let names: Vec<&str> = list
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .collect();
        if names == ["all"] {
            return Ok(Self::all());
        }
        let services = names
            .into_iter()
            .map(Service::from_str)
            .collect::<Result<Vec<_>, _>>()?;
        Self::only(services).ok_or_else(|| UnknownService(list.to_owned()))
    }
}

impl Serialize for Services {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Services {
    /// A string (`"all"`, `"processing,catalog"`) or a list of names.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Text(String),
            List(Vec<String>),
        }
        let text = match Form::deserialize(deserializer)? {
            Form::Text(text) => text,
            Form::List(names) => names.join(","),
        };
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_and_print_back() {
        assert_eq!("all".parse::<Services>().unwrap(), Services::all());
        let some: Services = "processing, catalog".parse().unwrap();
        assert!(some.runs(Service::Processing) && some.runs(Service::Catalog));
        assert!(!some.runs(Service::Accounts));
        assert!(some.serve_http());
        assert_eq!(some.to_string(), "processing,catalog");
        let worker: Services = "processing".parse().unwrap();
        assert!(!worker.serve_http());
        assert_eq!(Services::all().to_string(), "all");
        for service in Service::ALL {
            assert_eq!(service.name().parse::<Service>().unwrap(), service);
        }
    }

    #[test]
    fn unknown_or_empty_lists_are_refused() {
        let error = "processing,transcoding".parse::<Services>().unwrap_err();
        assert_eq!(error, UnknownService("transcoding".to_owned()));
        assert!(error.to_string().contains("account-update"));
        assert!("".parse::<Services>().is_err());
        assert!(" , ".parse::<Services>().is_err());
        assert!("all,processing".parse::<Services>().is_err());
    }

    #[test]
    fn configuration_takes_a_string_or_a_list() {
        #[derive(Deserialize)]
        struct Holder {
            services: Services,
        }
        let text: Holder = serde_json::from_str(r#"{"services": "play,uploads"}"#).unwrap();
        let list: Holder = serde_json::from_str(r#"{"services": ["uploads", "play"]}"#).unwrap();
        assert_eq!(text.services, list.services);
        assert!(serde_json::from_str::<Holder>(r#"{"services": ["nope"]}"#).is_err());
    }
}
