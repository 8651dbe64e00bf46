//! The cluster model: named clusters of ordered nodes with resolved libpq
//! connection settings, and node selection.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::ace_yaml::{AceConfig, CertAuthConfig};
use crate::error::{ConfigError, Result};
use crate::service::{Entry, KNOWN_KEYS, ServiceFile};

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// Plain first, TLS if the server insists.
    Allow,
    /// TLS if the server offers it (libpq's default).
    #[default]
    Prefer,
    /// TLS, without verifying the server certificate.
    Require,
    /// TLS, verifying the chain against `sslrootcert`.
    VerifyCa,
    /// TLS, verifying the chain and that the host name matches.
    VerifyFull,
}

impl SslMode {
    /// Every mode, weakest first.
    pub const ALL: [SslMode; 6] = [
        SslMode::Disable,
        SslMode::Allow,
        SslMode::Prefer,
        SslMode::Require,
        SslMode::VerifyCa,
        SslMode::VerifyFull,
    ];

    /// The libpq spelling, e.g. `verify-full`.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// Whether the server certificate is verified.
    pub fn verifies_server(self) -> bool {
        matches!(self, SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An `sslmode` spelling libpq does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown sslmode `{0}`")]
pub struct UnknownSslMode(pub String);

impl FromStr for SslMode {
    type Err = UnknownSslMode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SslMode::ALL
            .into_iter()
            .find(|mode| mode.as_str() == s)
            .ok_or_else(|| UnknownSslMode(s.to_owned()))
    }
}

/// A password or other secret. `Debug` and `Display` print `****`; read the
/// value with [`Secret::expose`] only where it is handed to the driver.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself. Never log or print it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

/// One node's resolved libpq settings: `[cluster]` values overridden by
/// `[cluster.node]` values, then `cert_auth` defaults (see
/// [`ServiceFile::cluster`]). `None` means "let libpq decide".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSettings {
    /// Host name(s) or socket directory.
    pub host: Option<String>,
    /// Numeric address, skipping DNS.
    pub hostaddr: Option<String>,
    /// Port. Default `5432`. Multi-host port lists are not supported.
    pub port: u16,
    /// Database.
    pub dbname: Option<String>,
    /// Role ACE logs in as.
    pub user: Option<String>,
    /// Password; masked in `Debug` and `Display`.
    pub password: Option<Secret>,
    /// Password file.
    pub passfile: Option<PathBuf>,
    /// TLS mode. Default `prefer`, as libpq.
    pub sslmode: SslMode,
    /// Client certificate.
    pub sslcert: Option<PathBuf>,
    /// Client private key.
    pub sslkey: Option<PathBuf>,
    /// CA bundle verifying the server.
    pub sslrootcert: Option<PathBuf>,
    /// CRL for the server certificate.
    pub sslcrl: Option<PathBuf>,
    /// Connect timeout in seconds.
    pub connect_timeout: Option<u32>,
    /// `application_name`.
    pub application_name: Option<String>,
    /// Command-line options sent to the server (`-c key=value`).
    pub options: Option<String>,
    /// Passphrase of `sslkey`; masked like `password`.
    pub sslpassword: Option<Secret>,
    /// Every other key, as given, in file order (other libpq keywords and
    /// unknown keys, which [`ServiceFile::warnings`] reports).
    pub extra: Vec<(String, String)>,
}

impl Default for NodeSettings {
    fn default() -> Self {
        Self {
            host: None,
            hostaddr: None,
            port: 5432,
            dbname: None,
            user: None,
            password: None,
            passfile: None,
            sslmode: SslMode::Prefer,
            sslcert: None,
            sslkey: None,
            sslrootcert: None,
            sslcrl: None,
            connect_timeout: None,
            application_name: None,
            options: None,
            sslpassword: None,
            extra: Vec::new(),
        }
    }
}

/// `key=value` pairs with secrets masked; fit for a summary, not for a
/// driver.
impl fmt::Display for NodeSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        let mut text = |key: &str, value: Option<&str>| {
            if let Some(value) = value {
                parts.push(format!("{key}={value}"));
            }
        };
        text("host", self.host.as_deref());
        text("hostaddr", self.hostaddr.as_deref());
        text("port", Some(&self.port.to_string()));
        text("dbname", self.dbname.as_deref());
        text("user", self.user.as_deref());
        text("password", self.password.as_ref().map(|_| "****"));
        text("passfile", self.passfile.as_ref().and_then(|p| p.to_str()));
        text("sslmode", Some(self.sslmode.as_str()));
        text("sslcert", self.sslcert.as_ref().and_then(|p| p.to_str()));
        text("sslkey", self.sslkey.as_ref().and_then(|p| p.to_str()));
        text(
            "sslrootcert",
            self.sslrootcert.as_ref().and_then(|p| p.to_str()),
        );
        text("sslcrl", self.sslcrl.as_ref().and_then(|p| p.to_str()));
        text(
            "connect_timeout",
            self.connect_timeout.map(|t| t.to_string()).as_deref(),
        );
        text("application_name", self.application_name.as_deref());
        text("options", self.options.as_deref());
        text("sslpassword", self.sslpassword.as_ref().map(|_| "****"));
        for (key, value) in &self.extra {
            text(key, Some(value));
        }
        f.write_str(&parts.join(" "))
    }
}

/// One node of a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The name after the dot in `[cluster.node]`.
    pub name: String,
    /// Resolved connection settings.
    pub settings: NodeSettings,
}

/// A cluster: its name and its nodes in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// The `[cluster]` name.
    pub name: String,
    /// Nodes, in the order their sections appear in the file.
    pub nodes: Vec<Node>,
    /// The service file the cluster was read from.
    pub service_file: PathBuf,
}

/// Which nodes a command works on: `all` or a comma-separated list of exact
/// names.
///
/// ```
/// use ace_config::NodeSelection;
///
/// let picked: NodeSelection = "n1, n3".parse().unwrap();
/// assert_eq!(picked, NodeSelection::Named(vec!["n1".into(), "n3".into()]));
/// assert_eq!("all".parse::<NodeSelection>().unwrap(), NodeSelection::All);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum NodeSelection {
    /// Every node of the cluster.
    #[default]
    All,
    /// These nodes; duplicates are dropped.
    Named(Vec<String>),
}

impl FromStr for NodeSelection {
    type Err = ConfigError;

    /// # Errors
    ///
    /// [`ConfigError::EmptyNodeSelection`] when the list names no node.
    fn from_str(spec: &str) -> Result<Self> {
        if spec.trim() == "all" {
            return Ok(NodeSelection::All);
        }
        let mut names: Vec<String> = Vec::new();
        for name in spec.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if !names.iter().any(|n| n == name) {
                names.push(name.to_owned());
            }
        }
        if names.is_empty() {
            return Err(ConfigError::EmptyNodeSelection {
                spec: spec.to_owned(),
            });
        }
        Ok(NodeSelection::Named(names))
    }
}

impl Cluster {
    /// Names of the nodes, in order.
    pub fn node_names(&self) -> Vec<&str> {
        self.nodes.iter().map(|n| n.name.as_str()).collect()
    }

    /// The node with exactly this name (`n1` never matches `n10`).
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The selected nodes, in cluster order.
    ///
    /// # Errors
    ///
    /// [`ConfigError::UnknownNode`] listing the known nodes when a name does
    /// not match a node exactly.
    pub fn select(&self, selection: &NodeSelection) -> Result<Vec<&Node>> {
        match selection {
            NodeSelection::All => Ok(self.nodes.iter().collect()),
            NodeSelection::Named(names) => {
                if let Some(missing) = names.iter().find(|name| self.node(name).is_none()) {
                    return Err(ConfigError::UnknownNode {
                        cluster: self.name.clone(),
                        node: missing.clone(),
                        known: self.node_names().into_iter().map(str::to_owned).collect(),
                    });
                }
                Ok(self
                    .nodes
                    .iter()
                    .filter(|n| names.contains(&n.name))
                    .collect())
            }
        }
    }
}

impl ServiceFile {
    /// Builds `cluster` from its `[cluster]` and `[cluster.node]` sections.
    ///
    /// Each node starts from the `[cluster]` values and its own section
    /// overrides them. Then, only when `cert_auth.use_cert_auth` is true:
    /// a node that sets neither `sslcert` nor `sslkey` takes both from
    /// `cert_auth` (`ace_user_cert_file`, `ace_user_key_file`), one without
    /// `sslrootcert` takes `cert_auth.ca_cert_file`, and one without
    /// `sslmode` gets `verify-full`. A node's own `sslmode` always stands;
    /// with cert auth off nothing is added and nothing is forced to
    /// `disable`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::UnknownCluster`] listing the known clusters when
    /// `cluster` has no node section; [`ConfigError::InvalidValue`] naming
    /// file, line and key for a `port`, `connect_timeout` or `sslmode` that
    /// does not parse.
    pub fn cluster(&self, cluster: &str, cert_auth: &CertAuthConfig) -> Result<Cluster> {
        let base: &[Entry] = self
            .section(cluster)
            .map(|s| s.entries.as_slice())
            .unwrap_or(&[]);
        let mut nodes = Vec::new();
        for (node_name, section) in self.node_sections(cluster) {
            // Node entries first: the first occurrence of a key wins.
            let mut merged: Vec<&Entry> = section.entries.iter().collect();
            for entry in base {
                if !merged.iter().any(|e| e.key == entry.key) {
                    merged.push(entry);
                }
            }
            let settings = self.settings_from(&merged, cluster, node_name, cert_auth)?;
            nodes.push(Node {
                name: node_name.to_owned(),
                settings,
            });
        }
        if nodes.is_empty() {
            return Err(ConfigError::UnknownCluster {
                cluster: cluster.to_owned(),
                path: self.path().to_owned(),
                known: self
                    .cluster_names()
                    .into_iter()
                    .map(str::to_owned)
                    .collect(),
            });
        }
        tracing::debug!(cluster, nodes = nodes.len(), service_file = %self.path().display(), "resolved cluster");
        Ok(Cluster {
            name: cluster.to_owned(),
            nodes,
            service_file: self.path().to_owned(),
        })
    }

    fn settings_from(
        &self,
        entries: &[&Entry],
        cluster: &str,
        node: &str,
        cert_auth: &CertAuthConfig,
    ) -> Result<NodeSettings> {
        let invalid = |entry: &Entry, expected: &str| ConfigError::InvalidValue {
            key: format!("[{cluster}.{node}] {}", entry.key),
            origin: format!("{}:{}", self.path().display(), entry.line),
            value: entry.value.clone(),
            expected: expected.to_owned(),
        };
        let mut settings = NodeSettings::default();
        let mut sslmode_set = false;
        // Keep `extra` in file order: node keys, then cluster keys.
        for entry in entries {
            if entry.value.is_empty() {
                continue;
            }
            let text = || Some(entry.value.clone());
            let path = || Some(PathBuf::from(&entry.value));
            match entry.key.as_str() {
                "host" => settings.host = text(),
                "hostaddr" => settings.hostaddr = text(),
                "port" => {
                    settings.port = entry
                        .value
                        .parse::<u16>()
                        .ok()
                        .filter(|p| *p > 0)
                        .ok_or_else(|| invalid(entry, "a port number in 1..=65535"))?;
                }
                "dbname" => settings.dbname = text(),
                "user" => settings.user = text(),
                "password" => settings.password = Some(Secret::new(&entry.value)),
                "passfile" => settings.passfile = path(),
                "sslmode" => {
                    settings.sslmode = entry.value.parse().map_err(|_| {
                        invalid(
                            entry,
                            "one of: disable, allow, prefer, require, verify-ca, verify-full",
                        )
                    })?;
                    sslmode_set = true;
                }
                "sslcert" => settings.sslcert = path(),
                "sslkey" => settings.sslkey = path(),
                "sslrootcert" => settings.sslrootcert = path(),
                "sslcrl" => settings.sslcrl = path(),
                "connect_timeout" => {
                    let seconds = entry
                        .value
                        .parse::<u32>()
                        .map_err(|_| invalid(entry, "a whole number of seconds"))?;
                    settings.connect_timeout = Some(seconds);
                }
                "application_name" => settings.application_name = text(),
                "options" => settings.options = text(),
                "sslpassword" => settings.sslpassword = Some(Secret::new(&entry.value)),
                other => {
                    debug_assert!(!KNOWN_KEYS.contains(&other));
                    settings.extra.push((other.to_owned(), entry.value.clone()));
                }
            }
        }

        if cert_auth.use_cert_auth {
            if settings.sslcert.is_none() && settings.sslkey.is_none() {
                settings.sslcert = cert_auth.ace_user_cert_file.clone();
                settings.sslkey = cert_auth.ace_user_key_file.clone();
            }
            if settings.sslrootcert.is_none() {
                settings.sslrootcert = cert_auth.ca_cert_file.clone();
            }
            if !sslmode_set {
                settings.sslmode = SslMode::VerifyFull;
            }
        }
        Ok(settings)
    }
}

/// Resolves the cluster a command works on: `name` when given, else
/// `default_cluster` from `ace.yaml`, read from `service`, with
/// `config.cert_auth` applied as [`ServiceFile::cluster`] describes.
///
/// # Errors
///
/// [`ConfigError::NoCluster`] when no name is given and `default_cluster` is
/// empty; otherwise as [`ServiceFile::cluster`].
pub fn resolve_cluster(
    config: &AceConfig,
    service: &ServiceFile,
    name: Option<&str>,
) -> Result<Cluster> {
    let name = name
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .or_else(|| Some(config.default_cluster.trim()).filter(|n| !n.is_empty()));
    match name {
        Some(name) => service.cluster(name, &config.cert_auth),
        None => Err(ConfigError::NoCluster {
            path: service.path().to_owned(),
            known: service
                .cluster_names()
                .into_iter()
                .map(str::to_owned)
                .collect(),
        }),
    }
}
