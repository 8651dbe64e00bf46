//! Configuration for ACE: `ace.yaml` and `pg_service.conf`.
//!
//! This crate owns everything an operator writes by hand: the typed, validated
//! `ace.yaml` (keys and defaults compatible with upstream ACE), the discovery
//! and parsing of `pg_service.conf`, and the cluster / node model built from
//! them. Other layers take resolved values from here and never read the files
//! themselves.
//!
//! # Main types
//!
//! - [`AceConfig`]: the whole `ace.yaml`, one struct per section. Loaded by
//!   [`ConfigSource::load`] with figment, lowest precedence first: built-in
//!   defaults, the file (`--config`, else `ACE_CONFIG`, else `./ace.yaml`),
//!   `ACE_*` environment variables (`ACE_SERVER__LISTEN_PORT` sets
//!   `server.listen_port`), then command-line overrides. Unknown keys, wrong
//!   types and out-of-range values are [`ConfigError`]s naming the key and the
//!   file or variable that set it.
//! - [`ServiceFile`]: a parsed `pg_service.conf` ([`discover_service_file`]
//!   finds it). [`ServiceFile::cluster`] and [`resolve_cluster`] build a
//!   [`Cluster`] of ordered [`Node`]s with resolved [`NodeSettings`], applying
//!   `cert_auth` defaults; [`Cluster::select`] picks nodes by a
//!   [`NodeSelection`].
//! - [`check`]: the findings behind `ace-admin config check`.
//!
//! Passwords are held as [`Secret`], whose `Debug` and `Display` print
//! `****`; nothing in this crate logs one.
//!
//! # Example
//!
//! ```
//! use ace_config::{AceConfig, ConfigSource, NodeSelection, ServiceFile, resolve_cluster};
//!
//! let config = AceConfig::load(
//!     &ConfigSource::new()
//!         .without_environment()
//!         .with_override("default_cluster", "prod"),
//! )?;
//! let service = ServiceFile::parse(
//!     "pg_service.conf",
//!     "[prod]\ndbname=app\n[prod.n1]\nhost=db1\n[prod.n2]\nhost=db2\nport=5433\n",
//! )?;
//! let cluster = resolve_cluster(&config, &service, None)?;
//! let nodes = cluster.select(&"n2".parse::<NodeSelection>()?)?;
//! assert_eq!(nodes[0].settings.port, 5433);
//! assert_eq!(nodes[0].settings.dbname.as_deref(), Some("app"));
//! # Ok::<(), ace_config::ConfigError>(())
//! ```
//!
//! # Limitations
//!
//! - Multi-host `host`/`port` lists of libpq are kept as text in `host`, but
//!   `port` must be a single number.
//! - Relative paths in either file are relative to the working directory of
//!   the process, not to the file.

#![forbid(unsafe_code)]

mod ace_yaml;
mod check;
mod cluster;
mod error;
mod load;
mod service;
mod templates;

pub use ace_yaml::{
    AceConfig, AutoRepairConfig, CertAuthConfig, JobType, MtreeCdcConfig, MtreeConfig,
    MtreeDiffConfig, PostgresConfig, ScheduleEntry, ScheduleJob, ServerConfig, TableDiffConfig,
};
pub use check::{CheckOptions, CheckReport, Finding, Level, check};
pub use cluster::{
    Cluster, Node, NodeSelection, NodeSettings, Secret, SslMode, UnknownSslMode, resolve_cluster,
};
pub use error::{ConfigError, Result};
pub use load::{
    CONFIG_ENV, ConfigFile, ConfigSource, DEFAULT_CONFIG_FILE, ENV_PREFIX, ENV_SEPARATOR,
    LoadedConfig, TOP_LEVEL_KEYS,
};
pub use service::{
    ACE_SERVICE_FILE_ENV, KNOWN_KEYS, OTHER_LIBPQ_KEYS, PG_SERVICE_FILE_ENV, ServiceFile,
    ServiceWarning, discover_service_file, service_file_candidates,
};
pub use templates::{ACE_YAML_TEMPLATE, SERVICE_FILE_TEMPLATE, write_new_file};
