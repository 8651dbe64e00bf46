//! Layered loading of `ace.yaml` with figment.
//!
//! Precedence, lowest first: built-in defaults (the `Default` impls), the
//! file, environment variables, command-line overrides. Errors are mapped
//! from figment's into [`ConfigError`] variants that name the dotted key and
//! the layer (file path, environment variable, flag) that set it.

use std::env;
use std::path::{Path, PathBuf};

use figment::error::{Actual, Kind};
use figment::providers::{Env, Format, Yaml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider, Source};

use crate::ace_yaml::AceConfig;
use crate::error::{ConfigError, Result};

/// Prefix of environment variables that override `ace.yaml` keys.
pub const ENV_PREFIX: &str = "ACE_";

/// Separator of nested keys in environment variable names:
/// `ACE_SERVER__LISTEN_PORT` sets `server.listen_port`.
pub const ENV_SEPARATOR: &str = "__";

/// Environment variable naming the config file when `--config` is absent.
pub const CONFIG_ENV: &str = "ACE_CONFIG";

/// The file tried last, relative to the working directory.
pub const DEFAULT_CONFIG_FILE: &str = "ace.yaml";

/// Top-level `ace.yaml` keys. Only `ACE_*` variables whose first segment is
/// one of these are read as config, so `ACE_CONFIG`, `ACE_PGSERVICEFILE`,
/// `ACE_TASKS_DB` and `ACE_LOG` are not mistaken for keys.
pub const TOP_LEVEL_KEYS: &[&str] = &[
    "default_cluster",
    "postgres",
    "table_diff",
    "mtree",
    "server",
    "schedule_jobs",
    "schedule_config",
    "auto_repair_config",
    "cert_auth",
    "debug_mode",
];

const CLI_ORIGIN: &str = "command-line flag";

/// Where to load `ace.yaml` from, and what to layer over it.
///
/// ```
/// use ace_config::ConfigSource;
///
/// let source = ConfigSource::new()
///     .without_environment()
///     .with_override("server.listen_port", "7000");
/// let loaded = source.load().unwrap();
/// assert_eq!(loaded.config.server.listen_port, 7000);
/// ```
#[derive(Debug, Clone)]
pub struct ConfigSource {
    path: Option<PathBuf>,
    environment: bool,
    overrides: Vec<(String, String)>,
}

impl Default for ConfigSource {
    fn default() -> Self {
        Self::new()
    }
}

/// Which file a [`ConfigSource`] reads, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigFile {
    /// Named by `--config` ([`ConfigSource::with_path`]); must exist.
    Flag(PathBuf),
    /// Named by `ACE_CONFIG`; must exist.
    Env(PathBuf),
    /// `./ace.yaml`, found in the working directory.
    Default(PathBuf),
    /// No file: built-in defaults, environment and flags only.
    None,
}

impl ConfigFile {
    /// The path, if a file is used.
    pub fn path(&self) -> Option<&Path> {
        match self {
            ConfigFile::Flag(path) | ConfigFile::Env(path) | ConfigFile::Default(path) => {
                Some(path)
            }
            ConfigFile::None => None,
        }
    }
}

/// A validated config and the file it came from.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The merged, validated configuration.
    pub config: AceConfig,
    /// The file layer that was used.
    pub file: ConfigFile,
}

impl ConfigSource {
    /// The usual source: `ACE_CONFIG` or `./ace.yaml`, with `ACE_*`
    /// environment variables and no overrides.
    pub fn new() -> Self {
        Self {
            path: None,
            environment: true,
            overrides: Vec::new(),
        }
    }

    /// Reads this file (the `--config` flag) instead of `ACE_CONFIG` or
    /// `./ace.yaml`.
    pub fn with_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// Ignores the process environment: no `ACE_CONFIG` and no `ACE_*`
    /// overrides. For tests and embedding.
    pub fn without_environment(mut self) -> Self {
        self.environment = false;
        self
    }

    /// Sets a dotted key (`server.listen_port`) above every other layer.
    /// The value is parsed like an environment variable: `7000` is a number,
    /// `true` a boolean, `[a, b]` a list, anything else a string.
    pub fn with_override(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.overrides.push((key.into(), value.into()));
        self
    }

    /// Adds an override written as `key=value` (the `--set` flag).
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] when `assignment` has no `=` or an empty key.
    pub fn with_assignment(self, assignment: &str) -> Result<Self> {
        match assignment.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => {
                Ok(self.with_override(key.trim(), value.trim()))
            }
            _ => Err(ConfigError::Invalid {
                key: assignment.to_owned(),
                origin: CLI_ORIGIN.to_owned(),
                message: "expected KEY=VALUE, e.g. server.listen_port=7000".to_owned(),
            }),
        }
    }

    /// Decides which file to read, without reading it.
    pub fn config_file(&self) -> ConfigFile {
        if let Some(path) = &self.path {
            return ConfigFile::Flag(path.clone());
        }
        if self.environment
            && let Some(path) = env::var_os(CONFIG_ENV).filter(|p| !p.is_empty())
        {
            return ConfigFile::Env(PathBuf::from(path));
        }
        let default = PathBuf::from(DEFAULT_CONFIG_FILE);
        if default.exists() {
            ConfigFile::Default(default)
        } else {
            ConfigFile::None
        }
    }

    /// Loads, merges and validates the configuration.
    ///
    /// # Errors
    ///
    /// - [`ConfigError::Read`]: the file named by `--config` or `ACE_CONFIG`
    ///   is missing or unreadable.
    /// - [`ConfigError::Syntax`]: the file is not valid YAML.
    /// - [`ConfigError::UnknownKey`], [`ConfigError::WrongType`],
    ///   [`ConfigError::MissingKey`], [`ConfigError::InvalidValue`],
    ///   [`ConfigError::Invalid`]: a layer sets a key badly.
    /// - [`ConfigError::OutOfRange`], [`ConfigError::UnknownJob`]: the merged
    ///   values break a rule of [`AceConfig::validate`].
    pub fn load(&self) -> Result<LoadedConfig> {
        let file = self.config_file();
        let mut figment = Figment::new();
        if let Some(path) = file.path() {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
            // serde_yaml reads an empty document as null, not as an empty
            // mapping; a file of comments only means "all defaults".
            if has_content(&text) {
                figment = figment.merge(Yaml::file_exact(path));
            }
            tracing::debug!(path = %path.display(), "reading ace.yaml");
        } else {
            tracing::debug!("no ace.yaml found; using built-in defaults");
        }
        if self.environment {
            let env = Env::prefixed(ENV_PREFIX)
                .split(ENV_SEPARATOR)
                .filter(|key| {
                    let top = key.as_str().split('.').next().unwrap_or_default();
                    TOP_LEVEL_KEYS
                        .iter()
                        .any(|known| known.eq_ignore_ascii_case(top))
                });
            figment = figment.merge(env);
        }
        figment = figment.merge(Overrides(self.overrides.clone()));

        let config: AceConfig = figment
            .extract()
            .map_err(|error| map_figment_error(&figment, &file, error))?;
        if let Some(violation) = config.first_violation() {
            let origin = origin_of(&figment, &file, violation.key());
            return Err(violation.into_error(origin));
        }
        Ok(LoadedConfig { config, file })
    }
}

impl AceConfig {
    /// Loads, merges and validates the configuration from `source`.
    ///
    /// # Errors
    ///
    /// See [`ConfigSource::load`].
    pub fn load(source: &ConfigSource) -> Result<AceConfig> {
        source.load().map(|loaded| loaded.config)
    }
}

fn has_content(text: &str) -> bool {
    text.lines().any(|line| {
        let line = line.trim();
        !line.is_empty() && !line.starts_with('#') && line != "---"
    })
}

/// The command-line layer: `--set key=value` pairs.
struct Overrides(Vec<(String, String)>);

impl Provider for Overrides {
    fn metadata(&self) -> Metadata {
        Metadata::named(CLI_ORIGIN)
    }

    fn data(&self) -> figment::Result<Map<Profile, Dict>> {
        let mut dict = Dict::new();
        for (key, raw) in &self.0 {
            let value: Value = raw
                .parse()
                .unwrap_or_else(|never: std::convert::Infallible| match never {});
            if let Value::Dict(_, nested) = figment::util::nest(key, value) {
                merge_dict(&mut dict, nested);
            }
        }
        Ok(Profile::Default.collect(dict))
    }
}

fn merge_dict(into: &mut Dict, from: Dict) {
    for (key, value) in from {
        match (into.get_mut(&key), value) {
            (Some(Value::Dict(_, existing)), Value::Dict(_, nested)) => {
                merge_dict(existing, nested)
            }
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

/// Names the layer that set `key`: the file path, the environment variable,
/// or the flag. Keys set by no layer come from the built-in defaults.
fn origin_of(figment: &Figment, file: &ConfigFile, key: &str) -> String {
    match figment.find_metadata(key) {
        Some(metadata) => describe(metadata, file, key),
        None => "built-in defaults".to_owned(),
    }
}

fn describe(metadata: &Metadata, file: &ConfigFile, key: &str) -> String {
    match &metadata.source {
        Some(Source::File(path)) => path.display().to_string(),
        _ if metadata.name.contains("environment") => {
            format!(
                "environment variable {ENV_PREFIX}{}",
                key.to_ascii_uppercase().replace('.', ENV_SEPARATOR)
            )
        }
        _ if metadata.name == CLI_ORIGIN => format!("{CLI_ORIGIN} --set {key}"),
        _ => match file.path() {
            Some(path) => path.display().to_string(),
            None => metadata.name.to_string(),
        },
    }
}

fn map_figment_error(figment: &Figment, file: &ConfigFile, error: figment::Error) -> ConfigError {
    // Figment chains errors; the first is the one the user hit first.
    let error = error
        .into_iter()
        .next()
        .unwrap_or_else(|| figment::Error::from("unknown error".to_owned()));
    let path = error.path.join(".");
    // For unknown and missing fields figment's path may or may not already
    // end with the field; name it once either way.
    let key_with = |field: &str| {
        if error.path.last().is_some_and(|last| last == field) {
            path.clone()
        } else if path.is_empty() {
            field.to_owned()
        } else {
            format!("{path}.{field}")
        }
    };
    let origin_for = |key: &str| match &error.metadata {
        Some(metadata) if figment.find_metadata(key).is_none() => describe(metadata, file, key),
        _ => origin_of(figment, file, key),
    };
    match &error.kind {
        Kind::UnknownField(field, expected) => {
            let key = key_with(field);
            ConfigError::UnknownKey {
                origin: origin_for(&key),
                key,
                expected: expected.iter().map(|s| (*s).to_owned()).collect(),
            }
        }
        Kind::MissingField(field) => {
            let key = key_with(field);
            ConfigError::MissingKey {
                origin: origin_for(&path),
                key,
            }
        }
        Kind::InvalidType(actual, expected) => ConfigError::WrongType {
            origin: origin_for(&path),
            key: path.clone(),
            expected: expected.clone(),
            found: actual.to_string(),
        },
        Kind::InvalidValue(actual @ (Actual::Signed(_) | Actual::Unsigned(_)), expected)
            if integer_range(expected).is_some() =>
        {
            ConfigError::OutOfRange {
                origin: origin_for(&path),
                key: path.clone(),
                value: match actual {
                    Actual::Signed(v) => v.to_string(),
                    Actual::Unsigned(v) => v.to_string(),
                    _ => actual.to_string(),
                },
                allowed: integer_range(expected).unwrap_or_default(),
            }
        }
        Kind::UnknownVariant(value, expected) => ConfigError::InvalidValue {
            origin: origin_for(&path),
            key: path.clone(),
            value: value.clone(),
            expected: format!("one of: {}", expected.join(", ")),
        },
        Kind::Message(message) if error.path.is_empty() => ConfigError::Syntax {
            origin: match (&error.metadata, file.path()) {
                (Some(metadata), _) => describe(metadata, file, ""),
                (None, Some(path)) => path.display().to_string(),
                (None, None) => "configuration".to_owned(),
            },
            message: message.clone(),
        },
        other => ConfigError::Invalid {
            origin: origin_for(&path),
            key: path.clone(),
            message: other.to_string(),
        },
    }
}

/// The allowed range of the unsigned integer types serde names.
fn integer_range(expected: &str) -> Option<String> {
    let high = match expected {
        "u8" => u64::from(u8::MAX),
        "u16" => u64::from(u16::MAX),
        "u32" => u64::from(u32::MAX),
        "u64" | "usize" => u64::MAX,
        _ => return None,
    };
    Some(format!("0..={high}"))
}
