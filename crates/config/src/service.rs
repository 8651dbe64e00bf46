//! `pg_service.conf`: discovery and libpq-compatible parsing.
//!
//! Syntax, as libpq reads it: one `key=value` per line (spaces around `=`
//! allowed), `#` comment lines, blank lines, and `[section]` headers. ACE
//! reads `[cluster]` as defaults shared by a cluster's nodes and
//! `[cluster.node]` as one node. Values are taken literally: there is no
//! quoting or escaping, as in libpq, and an empty value means "not set".

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::error::{ConfigError, Result};

/// Environment variable naming the service file, checked first.
pub const ACE_SERVICE_FILE_ENV: &str = "ACE_PGSERVICEFILE";

/// libpq's environment variable naming the service file, checked second.
pub const PG_SERVICE_FILE_ENV: &str = "PGSERVICEFILE";

/// Connection keys ACE models in [`crate::NodeSettings`].
pub const KNOWN_KEYS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "passfile",
    "sslmode",
    "sslcert",
    "sslkey",
    "sslrootcert",
    "sslcrl",
    "connect_timeout",
    "application_name",
    "options",
];

/// Other libpq keywords: kept in [`crate::NodeSettings::extra`] without a
/// warning, since libpq understands them.
pub const OTHER_LIBPQ_KEYS: &[&str] = &[
    "channel_binding",
    "client_encoding",
    "fallback_application_name",
    "gssdelegation",
    "gssencmode",
    "gsslib",
    "keepalives",
    "keepalives_count",
    "keepalives_idle",
    "keepalives_interval",
    "krbsrvname",
    "load_balance_hosts",
    "replication",
    "requirepeer",
    "requiressl",
    "ssl_max_protocol_version",
    "ssl_min_protocol_version",
    "sslcertmode",
    "sslcompression",
    "sslcrldir",
    "sslnegotiation",
    "sslpassword",
    "sslsni",
    "target_session_attrs",
    "tcp_user_timeout",
];

/// One `key=value` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) key: String,
    pub(crate) value: String,
    pub(crate) line: usize,
}

/// One `[section]` and its entries, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Section {
    pub(crate) name: String,
    pub(crate) line: usize,
    pub(crate) entries: Vec<Entry>,
}

/// Something libpq would accept but an operator probably did not mean.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceWarning {
    /// A key neither ACE nor libpq knows; it is kept and passed on.
    UnknownKey {
        /// Section holding the key.
        section: String,
        /// The key.
        key: String,
        /// 1-based line.
        line: usize,
    },
    /// A section name used twice; as in libpq, the first one wins.
    DuplicateSection {
        /// The section name.
        section: String,
        /// Line of the ignored repeat.
        line: usize,
        /// Line of the section that is used.
        first_line: usize,
    },
    /// A key set twice in one section; as in libpq, the first one wins.
    DuplicateKey {
        /// Section holding the key.
        section: String,
        /// The key.
        key: String,
        /// Line of the ignored repeat.
        line: usize,
    },
    /// A `key=value` line before the first section; libpq never reads it.
    OutsideSection {
        /// The key.
        key: String,
        /// 1-based line.
        line: usize,
    },
}

impl std::fmt::Display for ServiceWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServiceWarning::UnknownKey { section, key, line } => {
                write!(
                    f,
                    "line {line}: unknown key `{key}` in [{section}] (kept and passed on)"
                )
            }
            ServiceWarning::DuplicateSection {
                section,
                line,
                first_line,
            } => write!(
                f,
                "line {line}: section [{section}] repeats line {first_line}; only the first is used"
            ),
            ServiceWarning::DuplicateKey { section, key, line } => {
                write!(
                    f,
                    "line {line}: `{key}` set again in [{section}]; the first value is used"
                )
            }
            ServiceWarning::OutsideSection { key, line } => {
                write!(
                    f,
                    "line {line}: `{key}` is outside any section and is ignored"
                )
            }
        }
    }
}

/// A parsed `pg_service.conf`.
///
/// ```
/// use ace_config::ServiceFile;
///
/// let text = "[prod]\ndbname=app\n[prod.n1]\nhost=10.0.0.1\n[prod.n2]\nhost=10.0.0.2\n";
/// let file = ServiceFile::parse("pg_service.conf", text).unwrap();
/// assert_eq!(file.cluster_names(), ["prod"]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceFile {
    path: PathBuf,
    sections: Vec<Section>,
    warnings: Vec<ServiceWarning>,
}

impl ServiceFile {
    /// Reads and parses the file at `path`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Read`] when the file cannot be read;
    /// [`ConfigError::ServiceSyntax`] as for [`ServiceFile::parse`].
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Finds the service file (see [`discover_service_file`]) and loads it.
    ///
    /// # Errors
    ///
    /// As [`discover_service_file`] and [`ServiceFile::load`].
    pub fn discover() -> Result<Self> {
        Self::load(discover_service_file()?)
    }

    /// Parses `text`; `path` is only used in messages.
    ///
    /// # Errors
    ///
    /// [`ConfigError::ServiceSyntax`] naming the line for a line without
    /// `=`, an empty key, an unclosed or malformed `[section]`, or a nested
    /// `service=` key (which libpq refuses too).
    pub fn parse(path: impl AsRef<Path>, text: &str) -> Result<Self> {
        let path = path.as_ref().to_owned();
        let syntax = |line: usize, message: String| ConfigError::ServiceSyntax {
            path: path.clone(),
            line,
            message,
        };
        let mut sections: Vec<Section> = Vec::new();
        let mut warnings = Vec::new();
        // Index into `sections` of the section being filled; `None` before
        // the first header and while inside an ignored duplicate.
        let mut current: Option<usize> = None;
        let mut in_duplicate = false;

        for (index, raw) in text.lines().enumerate() {
            let line_no = index + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(rest) = line.strip_prefix('[') {
                let Some(name) = rest.strip_suffix(']') else {
                    return Err(syntax(
                        line_no,
                        format!("section header `{line}` lacks a closing `]`"),
                    ));
                };
                let name = name.trim();
                validate_section_name(name).map_err(|message| syntax(line_no, message))?;
                if let Some(first) = sections.iter().find(|s| s.name == name) {
                    warnings.push(ServiceWarning::DuplicateSection {
                        section: name.to_owned(),
                        line: line_no,
                        first_line: first.line,
                    });
                    current = None;
                    in_duplicate = true;
                } else {
                    sections.push(Section {
                        name: name.to_owned(),
                        line: line_no,
                        entries: Vec::new(),
                    });
                    current = Some(sections.len() - 1);
                    in_duplicate = false;
                }
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(syntax(
                    line_no,
                    format!(
                        "expected `key=value` or `[section]`, found `{}`",
                        redact_line(line)
                    ),
                ));
            };
            let key = key.trim().to_ascii_lowercase();
            let value = value.trim().to_owned();
            if key.is_empty() {
                return Err(syntax(line_no, "empty key before `=`".to_owned()));
            }
            if key == "service" {
                return Err(syntax(
                    line_no,
                    "nested service specifications are not supported".to_owned(),
                ));
            }
            let Some(section_index) = current else {
                if !in_duplicate {
                    warnings.push(ServiceWarning::OutsideSection { key, line: line_no });
                }
                continue;
            };
            let section = &mut sections[section_index];
            if section.entries.iter().any(|e| e.key == key) {
                warnings.push(ServiceWarning::DuplicateKey {
                    section: section.name.clone(),
                    key,
                    line: line_no,
                });
                continue;
            }
            if !KNOWN_KEYS.contains(&key.as_str()) && !OTHER_LIBPQ_KEYS.contains(&key.as_str()) {
                warnings.push(ServiceWarning::UnknownKey {
                    section: section.name.clone(),
                    key: key.clone(),
                    line: line_no,
                });
            }
            section.entries.push(Entry {
                key,
                value,
                line: line_no,
            });
        }

        for warning in &warnings {
            tracing::warn!(path = %path.display(), %warning, "pg_service.conf");
        }
        Ok(Self {
            path,
            sections,
            warnings,
        })
    }

    /// The file this was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Things libpq accepts but that are probably mistakes.
    pub fn warnings(&self) -> &[ServiceWarning] {
        &self.warnings
    }

    /// Clusters with at least one `[cluster.node]` section, in file order.
    pub fn cluster_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for section in &self.sections {
            if let Some((cluster, _)) = section.name.split_once('.')
                && !names.contains(&cluster)
            {
                names.push(cluster);
            }
        }
        names
    }

    pub(crate) fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// `[cluster.node]` sections of `cluster`, in file order.
    pub(crate) fn node_sections<'a>(
        &'a self,
        cluster: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a Section)> + 'a {
        self.sections.iter().filter_map(move |section| {
            let (c, node) = section.name.split_once('.')?;
            (c == cluster).then_some((node, section))
        })
    }
}

fn validate_section_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err("empty section name `[]`".to_owned());
    }
    if let Some((cluster, node)) = name.split_once('.')
        && (cluster.is_empty() || node.is_empty())
    {
        return Err(format!(
            "section `[{name}]` must be `[cluster]` or `[cluster.node]`"
        ));
    }
    Ok(())
}

/// A malformed line might be a password someone forgot the key for; show
/// only its start.
fn redact_line(line: &str) -> String {
    let shown: String = line.chars().take(12).collect();
    if shown.len() < line.len() {
        format!("{shown}...")
    } else {
        shown
    }
}

/// Where the service file is looked for, in order, given a way to read
/// environment variables: `ACE_PGSERVICEFILE`, `PGSERVICEFILE`,
/// `./pg_service.conf`, `$HOME/.pg_service.conf`, `/etc/pg_service.conf`.
///
/// The flag says whether the path was named by an environment variable
/// (and so must exist) rather than merely tried.
pub fn service_file_candidates(lookup: impl Fn(&str) -> Option<OsString>) -> Vec<(PathBuf, bool)> {
    let mut candidates = Vec::new();
    for var in [ACE_SERVICE_FILE_ENV, PG_SERVICE_FILE_ENV] {
        if let Some(path) = lookup(var).filter(|p| !p.is_empty()) {
            candidates.push((PathBuf::from(path), true));
        }
    }
    candidates.push((PathBuf::from("pg_service.conf"), false));
    if let Some(home) = lookup("HOME").filter(|h| !h.is_empty()) {
        candidates.push((PathBuf::from(home).join(".pg_service.conf"), false));
    }
    candidates.push((PathBuf::from("/etc/pg_service.conf"), false));
    candidates
}

/// Finds the service file from the process environment; see
/// [`service_file_candidates`] for the order.
///
/// # Errors
///
/// [`ConfigError::Read`] when a file named by `ACE_PGSERVICEFILE` or
/// `PGSERVICEFILE` (the first one set) does not exist;
/// [`ConfigError::ServiceFileNotFound`] when none of the places holds one.
pub fn discover_service_file() -> Result<PathBuf> {
    discover_with(|var| std::env::var_os(var))
}

pub(crate) fn discover_with(lookup: impl Fn(&str) -> Option<OsString>) -> Result<PathBuf> {
    let candidates = service_file_candidates(lookup);
    for (path, named) in &candidates {
        if path.is_file() {
            tracing::debug!(path = %path.display(), "found pg_service.conf");
            return Ok(path.clone());
        }
        if *named {
            return Err(ConfigError::Read {
                path: path.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "named by ACE_PGSERVICEFILE or PGSERVICEFILE but not found",
                ),
            });
        }
    }
    Err(ConfigError::ServiceFileNotFound {
        searched: candidates.into_iter().map(|(path, _)| path).collect(),
    })
}
