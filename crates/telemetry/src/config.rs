//! Configuration helpers every daemon uses: secrets that never reach a log line, and the
//! layering of defaults, a TOML file, `CADENZA_*` environment variables and flags.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A value that must never reach a log line: passwords, keys, URLs with credentials.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// Command-line flags, the last configuration layer: every flag given replaces its key.
///
/// `Flags::default().set("listen", cli.listen).set("log_format", cli.log_format).into()`
#[derive(Debug)]
pub struct Flags(Figment);

impl Default for Flags {
    fn default() -> Self {
        Self(Figment::new())
    }
}

impl Flags {
    /// Sets `key` to `value` when the flag was given.
    pub fn set<T: Serialize>(self, key: &str, value: Option<T>) -> Self {
        match value {
            Some(value) => Self(self.0.merge(Serialized::default(key, value))),
            None => self,
        }
    }
}

impl From<Flags> for Figment {
    fn from(flags: Flags) -> Self {
        flags.0
    }
}

/// A configuration that cannot be used, with the one line that says why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file, environment or flags could not be read into the typed configuration.
    #[error("configuration could not be read: {0}")]
    Load(#[from] Box<figment::Error>),
    /// A value was read but is not acceptable.
    #[error("configuration is invalid: {field}: {problem}")]
    Invalid {
        /// The offending key, dotted (`auth.argon2_memory_kib`).
        field: String,
        /// What is wrong with it.
        problem: String,
    },
}

impl ConfigError {
    /// The value at `field` is not acceptable, for the reason `problem`.
    pub fn invalid(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

/// A daemon's configuration: its defaults, its own checks, and the one way it is loaded.
pub trait DaemonConfig: Default + Serialize + DeserializeOwned {
    /// Checks what the types cannot.
    fn validate(&self) -> Result<(), ConfigError>;

    /// How the daemon logs.
    fn log_format(&self) -> crate::LogFormat;

    /// Layers defaults, the TOML `file` (if any), `CADENZA_*` variables and `overrides`
    /// (flags) with [`load_layered`], then validates.
    fn load(file: Option<&Path>, overrides: Figment) -> Result<Self, ConfigError> {
        let config: Self = load_layered(&Self::default(), file, overrides)?;
        config.validate()?;
        Ok(config)
    }
}

/// Layers `defaults`, the TOML `file` (if any), `CADENZA_*` variables (nested keys with `__`,
/// e.g. `CADENZA_AUTH__SESSION_IDLE_TTL_SECS`) and `overrides` (flags), and extracts `T`.
///
/// Only variables naming one of `T`'s top-level keys are taken, so that unrelated `CADENZA_*`
/// variables (the log filter, test settings, other daemons' keys) never fail a start.
pub fn load_layered<T>(
    defaults: &T,
    file: Option<&Path>,
    overrides: Figment,
) -> Result<T, Box<figment::Error>>
where
    T: Serialize + DeserializeOwned,
{
    let known: BTreeSet<String> = match serde_json::to_value(defaults) {
        Ok(serde_json::Value::Object(map)) => map.keys().cloned().collect(),
        _ => BTreeSet::new(),
    };
    let mut figment = Figment::from(Serialized::defaults(defaults));
    if let Some(path) = file {
        figment = figment.merge(Toml::file_exact(path));
    }
    figment
        .merge(Env::prefixed("CADENZA_").split("__").filter(move |key| {
            let key = key.as_str().to_ascii_lowercase();
            known.contains(key.split('.').next().unwrap_or(""))
        }))
        .merge(overrides)
        .extract()
        .map_err(|mut error: figment::Error| {
            // A flag's (or a default's) error would name this file's line and the profile:
            // name the key instead.
            let from_code = error
                .metadata
                .as_ref()
                .is_some_and(|metadata| matches!(metadata.source, Some(figment::Source::Code(_))));
            if from_code {
                let key = error.path.join(".");
                error.profile = None;
                error.metadata = Some(figment::Metadata::named(format!("the flags (at `{key}`)")));
            }
            Box::new(error)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Serialize, Deserialize)]
    struct Sample {
        port: u16,
    }

    #[test]
    fn a_bad_flag_names_its_key_not_the_code() {
        let flags = Flags::default().set("port", Some("eighty"));
        let error = load_layered(&Sample { port: 80 }, None, flags.into()).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("the flags (at `port`)"), "{message}");
        assert!(!message.contains(".rs"), "{message}");
        let flags = Flags::default().set("port", Some(8080));
        assert_eq!(
            load_layered(&Sample { port: 80 }, None, flags.into())
                .unwrap()
                .port,
            8080
        );
    }
}
