//! `config check`: load everything, look at every file named, and report
//! findings an operator can act on.

use std::collections::BTreeSet;
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

use crate::ace_yaml::AceConfig;
use crate::cluster::{Cluster, resolve_cluster};
use crate::load::{ConfigFile, ConfigSource};
use crate::service::{ServiceFile, discover_service_file};

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Checked and fine.
    Ok,
    /// Works, but probably not what the operator wants.
    Warn,
    /// Will not work.
    Error,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad` so that `{:<5}` aligns report lines.
        f.pad(match self {
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Error => "error",
        })
    }
}

/// One line of a check report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// How serious it is.
    pub level: Level,
    /// What was checked: a key (`server.tls_key_file`), a file, a node.
    pub subject: String,
    /// What was found. Never contains a secret.
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:<5} {}: {}", self.level, self.subject, self.message)
    }
}

/// What to check beyond the config source.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// Cluster to resolve; `None` means `default_cluster`, or every cluster
    /// in the service file when that is empty too.
    pub cluster: Option<String>,
    /// Service file to read instead of discovering one.
    pub service_file: Option<PathBuf>,
}

/// Everything [`check`] found, and what it resolved.
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    /// Findings in the order they were made.
    pub findings: Vec<Finding>,
    /// The file layer of `ace.yaml`, when the config loaded.
    pub config_file: Option<ConfigFile>,
    /// The merged config, when it loaded.
    pub config: Option<AceConfig>,
    /// The service file read, when one was found.
    pub service_file: Option<PathBuf>,
    /// The clusters resolved.
    pub clusters: Vec<Cluster>,
}

impl CheckReport {
    fn push(&mut self, level: Level, subject: impl Into<String>, message: impl Into<String>) {
        self.findings.push(Finding {
            level,
            subject: subject.into(),
            message: message.into(),
        });
    }

    /// The most serious level found (`Ok` for an empty report).
    pub fn worst(&self) -> Level {
        self.findings
            .iter()
            .map(|f| f.level)
            .max()
            .unwrap_or(Level::Ok)
    }

    /// Whether nothing is wrong: no error and no warning.
    pub fn is_clean(&self) -> bool {
        self.worst() == Level::Ok
    }

    /// The resolved settings, with passwords masked, one item per line.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let mut line = |text: String| {
            out.push_str(&text);
            out.push('\n');
        };
        match self.config_file.as_ref().and_then(ConfigFile::path) {
            Some(path) => line(format!("config file: {}", path.display())),
            None => line("config file: none (built-in defaults)".to_owned()),
        }
        if let Some(config) = &self.config {
            let shown = |path: Option<&Path>| {
                path.map_or_else(|| "-".to_owned(), |p| p.display().to_string())
            };
            let list = |names: &[String]| {
                if names.is_empty() {
                    "any".to_owned()
                } else {
                    names.join(",")
                }
            };
            line(format!(
                "default_cluster: {}",
                if config.default_cluster.is_empty() {
                    "-"
                } else {
                    &config.default_cluster
                }
            ));
            line(format!(
                "server: listen {}:{} tls_cert_file={} tls_key_file={} client_ca_file={} client_crl_file={}",
                config.server.listen_address,
                config.server.listen_port,
                shown(config.server.tls_cert_file.as_deref()),
                shown(config.server.tls_key_file.as_deref()),
                shown(config.client_ca_file()),
                shown(config.server.client_crl_file.as_deref()),
            ));
            line(format!(
                "server: allowed_common_names={} admin_common_names={} data_dir={} max_concurrent_tasks={} taskstore={}",
                list(&config.server.allowed_common_names),
                if config.server.admin_common_names.is_empty() {
                    "-".to_owned()
                } else {
                    config.server.admin_common_names.join(",")
                },
                config.server.data_dir.display(),
                config.server.max_concurrent_tasks,
                config.taskstore_path().display(),
            ));
            line(format!(
                "cert_auth: use_cert_auth={} ace_user_cert_file={} ace_user_key_file={} ca_cert_file={}",
                config.cert_auth.use_cert_auth,
                shown(config.cert_auth.ace_user_cert_file.as_deref()),
                shown(config.cert_auth.ace_user_key_file.as_deref()),
                shown(config.cert_auth.ca_cert_file.as_deref()),
            ));
        }
        if let Some(path) = &self.service_file {
            line(format!("service file: {}", path.display()));
        }
        for cluster in &self.clusters {
            line(format!(
                "cluster {} ({})",
                cluster.name,
                plural(cluster.nodes.len())
            ));
            for node in &cluster.nodes {
                // NodeSettings' Display masks password and sslpassword.
                line(format!("  {}: {}", node.name, node.settings));
            }
        }
        out
    }
}

/// Loads `ace.yaml` and `pg_service.conf`, resolves the cluster(s), and
/// checks that every file they name exists and is readable; private keys
/// and password files readable by group or others are warnings.
///
/// Relative paths are taken from the working directory, as the server and
/// libpq would. The check never fails: problems are [`Level::Error`]
/// findings, so `ace-admin doctor` can merge them with its own.
pub fn check(source: &ConfigSource, options: &CheckOptions) -> CheckReport {
    let mut report = CheckReport::default();

    // 1. ace.yaml, with every layer.
    let loaded = match source.load() {
        Ok(loaded) => loaded,
        Err(error) => {
            report.push(Level::Error, "ace.yaml", error.to_string());
            return report;
        }
    };
    match loaded.file.path() {
        Some(path) => report.push(Level::Ok, "ace.yaml", format!("{} loaded", path.display())),
        None => report.push(
            Level::Warn,
            "ace.yaml",
            "no file found (--config, ACE_CONFIG, ./ace.yaml); using built-in defaults",
        ),
    }
    let config = loaded.config;
    report.config_file = Some(loaded.file);

    // 2. Files named in ace.yaml.
    let mut seen = BTreeSet::new();
    let server = &config.server;
    match (&server.tls_cert_file, &server.tls_key_file) {
        (Some(_), None) => report.push(
            Level::Error,
            "server.tls_key_file",
            "not set, but server.tls_cert_file is",
        ),
        (None, Some(_)) => report.push(
            Level::Error,
            "server.tls_cert_file",
            "not set, but server.tls_key_file is",
        ),
        _ => {}
    }
    let named = [
        (
            "server.tls_cert_file",
            server.tls_cert_file.as_deref(),
            FileKind::Plain,
        ),
        (
            "server.tls_key_file",
            server.tls_key_file.as_deref(),
            FileKind::Private,
        ),
        (
            "server.client_crl_file",
            server.client_crl_file.as_deref(),
            FileKind::Plain,
        ),
        (
            "server.client_ca_file",
            config.client_ca_file(),
            FileKind::Plain,
        ),
    ];
    for (subject, path, kind) in named {
        if let Some(path) = path {
            check_file(&mut report, &mut seen, subject, path, kind);
        }
    }
    if config.cert_auth.use_cert_auth {
        let cert_auth = &config.cert_auth;
        let named = [
            (
                "cert_auth.ace_user_cert_file",
                cert_auth.ace_user_cert_file.as_deref(),
                FileKind::Plain,
            ),
            (
                "cert_auth.ace_user_key_file",
                cert_auth.ace_user_key_file.as_deref(),
                FileKind::Private,
            ),
            (
                "cert_auth.ca_cert_file",
                cert_auth.ca_cert_file.as_deref(),
                FileKind::Plain,
            ),
        ];
        for (subject, path, kind) in named {
            match path {
                Some(path) => check_file(&mut report, &mut seen, subject, path, kind),
                None => report.push(
                    Level::Error,
                    subject,
                    "not set, but cert_auth.use_cert_auth is true",
                ),
            }
        }
    }
    if !server.data_dir.is_dir() {
        report.push(
            Level::Warn,
            "server.data_dir",
            format!("{} is not an existing directory", server.data_dir.display()),
        );
    }

    // 3. pg_service.conf.
    let service_path = match &options.service_file {
        Some(path) => Ok(path.clone()),
        None => discover_service_file(),
    };
    let service = match service_path.and_then(ServiceFile::load) {
        Ok(service) => service,
        Err(error) => {
            report.push(Level::Error, "pg_service.conf", error.to_string());
            report.config = Some(config);
            return report;
        }
    };
    report.service_file = Some(service.path().to_owned());
    report.push(
        Level::Ok,
        "pg_service.conf",
        format!("{} parsed", service.path().display()),
    );
    for warning in service.warnings() {
        report.push(
            Level::Warn,
            service.path().display().to_string(),
            warning.to_string(),
        );
    }

    // 4. The cluster(s): the named or default one, else all of them.
    let wanted: Vec<String> = match options
        .cluster
        .clone()
        .or_else(|| Some(config.default_cluster.trim().to_owned()).filter(|c| !c.is_empty()))
    {
        Some(name) => vec![name],
        None => service
            .cluster_names()
            .into_iter()
            .map(str::to_owned)
            .collect(),
    };
    if wanted.is_empty() {
        report.push(
            Level::Error,
            "pg_service.conf",
            "defines no [cluster.node] section",
        );
    }
    for name in wanted {
        match resolve_cluster(&config, &service, Some(&name)) {
            Ok(cluster) => {
                report.push(
                    Level::Ok,
                    format!("cluster {name}"),
                    format!(
                        "{}: {}",
                        plural(cluster.nodes.len()),
                        cluster.node_names().join(", ")
                    ),
                );
                check_nodes(&mut report, &mut seen, &cluster);
                report.clusters.push(cluster);
            }
            Err(error) => report.push(Level::Error, format!("cluster {name}"), error.to_string()),
        }
    }
    report.config = Some(config);
    tracing::debug!(findings = report.findings.len(), worst = %report.worst(), "config check done");
    report
}

fn check_nodes(report: &mut CheckReport, seen: &mut BTreeSet<PathBuf>, cluster: &Cluster) {
    for node in &cluster.nodes {
        let s = &node.settings;
        let subject = |key: &str| format!("{}.{} {key}", cluster.name, node.name);
        let files = [
            ("sslcert", s.sslcert.as_deref(), FileKind::Plain),
            ("sslkey", s.sslkey.as_deref(), FileKind::Private),
            ("sslrootcert", s.sslrootcert.as_deref(), FileKind::Plain),
            ("sslcrl", s.sslcrl.as_deref(), FileKind::Plain),
            ("passfile", s.passfile.as_deref(), FileKind::Private),
        ];
        for (key, path, kind) in files {
            if let Some(path) = path {
                check_file(report, seen, &subject(key), path, kind);
            }
        }
        if s.sslcert.is_some() != s.sslkey.is_some() {
            report.push(
                Level::Error,
                subject("sslcert/sslkey"),
                "one is set without the other",
            );
        }
        if s.host.is_none() && s.hostaddr.is_none() {
            report.push(
                Level::Warn,
                subject("host"),
                "not set; libpq will use the local socket",
            );
        }
    }
}

fn plural(nodes: usize) -> String {
    if nodes == 1 {
        "1 node".to_owned()
    } else {
        format!("{nodes} nodes")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileKind {
    Plain,
    /// A private key or password file: must not be readable by others.
    Private,
}

fn check_file(
    report: &mut CheckReport,
    seen: &mut BTreeSet<PathBuf>,
    subject: &str,
    path: &Path,
    kind: FileKind,
) {
    if !seen.insert(path.to_owned()) {
        return;
    }
    let shown = path.display();
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(error) => {
            report.push(Level::Error, subject, format!("{shown}: {error}"));
            return;
        }
    };
    if !metadata.is_file() {
        report.push(
            Level::Error,
            subject,
            format!("{shown} is not a regular file"),
        );
        return;
    }
    if let Err(error) = File::open(path) {
        report.push(
            Level::Error,
            subject,
            format!("{shown} is not readable: {error}"),
        );
        return;
    }
    if kind == FileKind::Private
        && let Some(mode) = loose_mode(&metadata)
    {
        report.push(
            Level::Warn,
            subject,
            format!("{shown} is accessible by group or others (mode {mode:o}); run chmod 600"),
        );
        return;
    }
    report.push(Level::Ok, subject, format!("{shown} is readable"));
}

#[cfg(unix)]
fn loose_mode(metadata: &std::fs::Metadata) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = metadata.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then_some(mode)
}

#[cfg(not(unix))]
fn loose_mode(_metadata: &std::fs::Metadata) -> Option<u32> {
    None
}
