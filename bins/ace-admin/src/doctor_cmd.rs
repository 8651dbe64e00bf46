//! `ace-admin doctor`: walk the whole chain of the certificates-and-mTLS
//! guide for one configuration and say, line by line, what holds and what
//! is broken.
//!
//! The links, in the order a request meets them:
//!
//! 1. `ace.yaml` and `pg_service.conf` load and every file they name is
//!    readable (the findings of `ace_config::check`).
//! 2. The API server certificate matches its key, and its subject
//!    alternative names cover `server.listen_address` and every `--name`.
//! 3. A client certificate (when given) matches its key, chains to the
//!    client CA, is not revoked, is within its validity, has a CN that can
//!    be a role name, and is in `allowed_common_names` when that is set:
//!    the same `ace_pki::ServerPolicy` the server runs decides.
//! 4. ACE reaches every node with its service credentials and the
//!    configured `sslmode`.
//! 5. The client CN's role exists on every node and ACE's user may
//!    `SET ROLE` to it.
//! 6. No certificate or CRL in play expires within 30 days.
//!
//! [`run_checks`] does the work and returns the [`Line`]s; [`run`] is the
//! thin command around it. A link that cannot be checked because an
//! earlier one is broken is reported as `SKIP` with the reason, so one
//! broken link turns exactly its own line to `FAIL`.

use std::collections::BTreeSet;
use std::fmt;
use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use ace_config::{AceConfig, CheckOptions, Cluster, ConfigSource, Level, check};
use ace_pki::inspect::{CertificateReport, certificate_report, format_time};
use ace_pki::load::{load_certificates, load_certified_key, load_crls};
use ace_pki::{PolicySettings, Refusal, ServerPolicy, identity::check_common_name};
use ace_session::{NodeSession, SessionSettings};
use anyhow::Context as _;
use clap::Args;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use time::OffsetDateTime;

/// Certificates and CRLs expiring within this many days are warned about.
const WARN_WITHIN_DAYS: i64 = 30;

/// Check the whole chain for a configuration: config files, the API server
/// certificate and key, a client certificate against the client policy,
/// every node connection, the client CN's role on every node, and
/// certificate and CRL expiry.
///
/// Each line is OK, WARN, FAIL or SKIP (not checked because an earlier link
/// is broken, or nothing to check). Exit status: 0 when nothing fails
/// (warnings included), 1 when any line is FAIL.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// The ace.yaml to read [default: $ACE_CONFIG, else ./ace.yaml, else
    /// built-in defaults].
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,

    /// The pg_service.conf to read [default: $ACE_PGSERVICEFILE,
    /// $PGSERVICEFILE, ./pg_service.conf, ~/.pg_service.conf,
    /// /etc/pg_service.conf].
    #[arg(long, value_name = "PATH")]
    service_file: Option<PathBuf>,

    /// Cluster to check [default: default_cluster; when that is empty,
    /// every cluster in the service file].
    #[arg(long, value_name = "NAME")]
    cluster: Option<String>,

    /// An API client certificate to check against the client policy; its
    /// CN is the role checked on every node.
    #[arg(long, value_name = "PATH", requires = "client_key")]
    client_cert: Option<PathBuf>,

    /// The private key of --client-cert (checked to match; never printed).
    #[arg(long, value_name = "PATH", requires = "client_cert")]
    client_key: Option<PathBuf>,

    /// A host name or address API clients use to reach the server; the
    /// server certificate must name it (repeatable).
    #[arg(long = "name", value_name = "HOST")]
    names: Vec<String>,

    /// Print the lines as one JSON document instead of text.
    #[arg(long)]
    json: bool,
}

/// How one link of the chain stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    /// Checked and fine.
    Ok,
    /// Not checked: nothing to check, or an earlier link is broken.
    Skip,
    /// Works now, but needs attention (for example, expires soon).
    Warn,
    /// Broken: the chain does not hold here.
    Fail,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Skip => "SKIP",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad` so that `{:<4}` aligns the lines.
        f.pad(self.as_str())
    }
}

/// One line of the doctor's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// How the link stands.
    pub status: Status,
    /// Which link: `server key`, `client revocation`, `node c.n1`, ...
    pub check: String,
    /// What was found. Never holds a secret (paths and reasons only).
    pub message: String,
}

impl Line {
    fn new(status: Status, check: impl Into<String>, message: impl Into<String>) -> Self {
        Line {
            status,
            check: check.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:<4}  {}: {}", self.status, self.check, self.message)
    }
}

/// An API client certificate and its key, as given on the command line.
#[derive(Debug, Clone)]
pub struct ClientPair {
    /// The certificate file (leaf first, then any intermediates).
    pub cert: PathBuf,
    /// Its private key file.
    pub key: PathBuf,
}

/// What [`run_checks`] looks at.
#[derive(Debug, Clone)]
pub struct DoctorOptions {
    /// Where `ace.yaml` comes from.
    pub source: ConfigSource,
    /// Cluster and service file selection.
    pub check: CheckOptions,
    /// The client certificate to check, if any.
    pub client: Option<ClientPair>,
    /// Names the server certificate must cover besides `listen_address`.
    pub names: Vec<String>,
}

/// Runs every check at time `now` and returns the lines in chain order.
///
/// Never fails: every problem is a [`Status::Fail`] line naming the link.
/// Connections opened to the nodes are closed before it returns.
pub async fn run_checks(options: &DoctorOptions, now: OffsetDateTime) -> Vec<Line> {
    let mut lines = Vec::new();

    // 1. ace.yaml, pg_service.conf and the files they name.
    let report = check(&options.source, &options.check);
    for finding in &report.findings {
        let status = match finding.level {
            Level::Ok => Status::Ok,
            Level::Warn => Status::Warn,
            Level::Error => Status::Fail,
        };
        lines.push(Line::new(status, &finding.subject, &finding.message));
    }
    let Some(config) = report.config.as_ref() else {
        lines.push(Line::new(
            Status::Skip,
            "doctor",
            "the remaining checks need a loaded ace.yaml",
        ));
        return lines;
    };

    // 2. The API server certificate, its key and its names.
    check_server(config, &options.names, &mut lines);

    // 3. The client certificate against the client policy.
    let role = match &options.client {
        Some(client) => check_client(config, client, now, &mut lines),
        None => {
            lines.push(Line::new(
                Status::Skip,
                "client certificate",
                "none given (--client-cert, --client-key); client policy and role checks skipped",
            ));
            None
        }
    };

    // 4 and 5. Every node, and the client's role on it.
    for cluster in &report.clusters {
        check_cluster(config, cluster, role.as_deref(), &mut lines).await;
    }

    // 6. Expiry of every certificate and CRL in play.
    check_expiry(config, options, &report.clusters, now, &mut lines);
    lines
}

/// Runs `ace-admin doctor`.
///
/// # Errors
///
/// Only when the async runtime cannot start or standard output cannot be
/// written; everything the doctor finds is a line of its report.
pub fn run(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let mut source = ConfigSource::new();
    if let Some(path) = &args.config {
        source = source.with_path(path);
    }
    let options = DoctorOptions {
        source,
        check: CheckOptions {
            cluster: args.cluster,
            service_file: args.service_file,
        },
        client: args
            .client_cert
            .zip(args.client_key)
            .map(|(cert, key)| ClientPair { cert, key }),
        names: args.names,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let lines = runtime.block_on(run_checks(&options, OffsetDateTime::now_utc()));
    let failures = lines.iter().filter(|l| l.status == Status::Fail).count();
    let warnings = lines.iter().filter(|l| l.status == Status::Warn).count();

    let mut out = std::io::stdout().lock();
    if args.json {
        let lines: Vec<_> = lines
            .iter()
            .map(|line| {
                serde_json::json!({
                    "status": line.status.as_str(),
                    "check": line.check,
                    "message": line.message,
                })
            })
            .collect();
        let document = serde_json::json!({
            "ok": failures == 0,
            "failures": failures,
            "warnings": warnings,
            "lines": lines,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&document)?)?;
    } else {
        for line in &lines {
            writeln!(out, "{line}")?;
        }
        writeln!(
            out,
            "\n{failures} failure(s), {warnings} warning(s): {}",
            if failures == 0 {
                "the chain holds"
            } else {
                "the chain is broken at the FAIL lines"
            }
        )?;
    }
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

// === The API server certificate ===

fn check_server(config: &AceConfig, names: &[String], lines: &mut Vec<Line>) {
    let server = &config.server;
    let (Some(cert), Some(key)) = (&server.tls_cert_file, &server.tls_key_file) else {
        lines.push(Line::new(
            Status::Skip,
            "server key",
            "server.tls_cert_file and server.tls_key_file are not both set",
        ));
        return;
    };
    let provider = rustls::crypto::ring::default_provider();
    match load_certified_key(cert, key, &provider) {
        Ok(_) => lines.push(Line::new(
            Status::Ok,
            "server key",
            format!(
                "{} matches the certificate in {}",
                key.display(),
                cert.display()
            ),
        )),
        Err(error) => lines.push(Line::new(Status::Fail, "server key", error.to_string())),
    }

    // The names clients use: listen_address unless it is a wildcard, then
    // every --name.
    let mut wanted: Vec<String> = Vec::new();
    let listen = server.listen_address.trim();
    if is_wildcard(listen) {
        lines.push(Line::new(
            Status::Skip,
            format!("server name {listen:?}"),
            "server.listen_address listens on every address; give the names clients use with --name",
        ));
    } else {
        wanted.push(listen.to_owned());
    }
    for name in names {
        if !wanted.contains(name) {
            wanted.push(name.clone());
        }
    }
    if wanted.is_empty() {
        return;
    }
    let leaf = match load_certificates(cert) {
        Ok(chain) => chain.into_iter().next(),
        Err(error) => {
            for name in &wanted {
                lines.push(Line::new(
                    Status::Skip,
                    format!("server name {name}"),
                    format!("server certificate unusable: {error}"),
                ));
            }
            return;
        }
    };
    let Some(leaf) = leaf else {
        return;
    };
    let sans = certificate_report(&leaf)
        .map(|report| report.sans.join(", "))
        .unwrap_or_default();
    for name in &wanted {
        lines.push(server_name_line(&leaf, cert, name, &sans));
    }
}

fn is_wildcard(address: &str) -> bool {
    address.is_empty()
        || address == "*"
        || address
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_unspecified())
}

/// Whether the certificate names `name`, decided by webpki exactly as a
/// rustls client would (DNS wildcards, IP addresses, no CN fallback).
fn server_name_line(leaf: &CertificateDer<'_>, path: &Path, name: &str, sans: &str) -> Line {
    let check = format!("server name {name}");
    let server_name = match ServerName::try_from(name) {
        Ok(server_name) => server_name,
        Err(error) => {
            return Line::new(
                Status::Fail,
                check,
                format!("not a valid host name or address: {error}"),
            );
        }
    };
    let covered = ParsedCertificate::try_from(leaf)
        .and_then(|parsed| rustls::client::verify_server_name(&parsed, &server_name));
    match covered {
        Ok(()) => Line::new(
            Status::Ok,
            check,
            format!("{} names it (SANs: {sans})", path.display()),
        ),
        Err(error) => Line::new(
            Status::Fail,
            check,
            format!(
                "{} does not name it ({error}); its SANs are: {}; clients connecting to {name} will refuse the server",
                path.display(),
                if sans.is_empty() { "none" } else { sans }
            ),
        ),
    }
}

// === The client certificate ===

/// Checks the client certificate and returns the role its CN names when
/// the CN can be a role at all.
fn check_client(
    config: &AceConfig,
    client: &ClientPair,
    now: OffsetDateTime,
    lines: &mut Vec<Line>,
) -> Option<String> {
    let provider = rustls::crypto::ring::default_provider();
    let key_ok = match load_certified_key(&client.cert, &client.key, &provider) {
        Ok(_) => {
            lines.push(Line::new(
                Status::Ok,
                "client key",
                format!(
                    "{} matches the certificate in {}",
                    client.key.display(),
                    client.cert.display()
                ),
            ));
            true
        }
        Err(error) => {
            lines.push(Line::new(Status::Fail, "client key", error.to_string()));
            false
        }
    };
    let chain = match load_certificates(&client.cert) {
        Ok(chain) => chain,
        Err(error) => {
            lines.push(Line::new(
                Status::Fail,
                "client certificate",
                error.to_string(),
            ));
            return None;
        }
    };
    let report = match chain.first().map(|leaf| certificate_report(leaf)) {
        Some(Ok(report)) => report,
        Some(Err(reason)) => {
            lines.push(Line::new(
                Status::Fail,
                "client certificate",
                format!("{}: {reason}", client.cert.display()),
            ));
            return None;
        }
        None => return None,
    };
    lines.push(validity_line(
        "client validity",
        &client.cert,
        std::slice::from_ref(&report),
        now,
    ));

    // The policy decides chain and revocation. Its server key pair is not
    // used by `identify`; a matching stand-in lets the client be checked
    // even when the server pair is the broken link.
    let policy = client_policy(config, client, key_ok, lines);
    let outcome = policy.map(|policy| {
        // Outside its validity the certificate is refused for that first;
        // check chain and revocation at a time it is valid, since the
        // validity line already says what is wrong.
        let at = if report.not_before <= now && now < report.not_after {
            now
        } else {
            report.not_before + (report.not_after - report.not_before) / 2
        };
        policy.identify_at(&chain, unix_time(at))
    });
    let cn_line = common_name_line(&report);
    let role =
        (cn_line.status == Status::Ok).then(|| report.common_name.clone().unwrap_or_default());
    match outcome {
        None => {
            lines.push(Line::new(
                Status::Skip,
                "client chain",
                "no client policy to check against",
            ));
            lines.push(Line::new(
                Status::Skip,
                "client revocation",
                "no client policy to check against",
            ));
        }
        Some(result) => {
            let revocation_ok = match &config.server.client_crl_file {
                Some(path) => Line::new(
                    Status::Ok,
                    "client revocation",
                    format!("not revoked by {}", path.display()),
                ),
                None => Line::new(
                    Status::Skip,
                    "client revocation",
                    "no server.client_crl_file configured; revocation is not checked",
                ),
            };
            let ca_note = match config.client_ca_file() {
                Some(path) => format!("chains to the client CA {}", path.display()),
                None => "chains to the client CA".to_owned(),
            };
            match classify(&result) {
                Broken::Nothing => {
                    lines.push(Line::new(Status::Ok, "client chain", ca_note));
                    lines.push(revocation_ok);
                }
                Broken::Revocation(reason) => {
                    lines.push(Line::new(Status::Ok, "client chain", ca_note));
                    lines.push(Line::new(Status::Fail, "client revocation", reason));
                }
                Broken::Chain(reason) => {
                    lines.push(Line::new(Status::Fail, "client chain", reason));
                    lines.push(Line::new(
                        Status::Skip,
                        "client revocation",
                        "the certificate does not chain to the client CA",
                    ));
                }
                Broken::CrlExpired(reason) => {
                    lines.push(Line::new(
                        Status::Skip,
                        "client chain",
                        "the client CRL has expired; nothing is accepted until it is renewed",
                    ));
                    lines.push(Line::new(Status::Fail, "client revocation", reason));
                }
            }
        }
    }
    let cn_ok = cn_line.status == Status::Ok;
    lines.push(cn_line);
    lines.push(allowlist_line(config, report.common_name.as_deref(), cn_ok));
    role
}

/// Builds the client policy of `ace.yaml` the way the server does, with a
/// key pair known to match in place of the server's.
fn client_policy(
    config: &AceConfig,
    client: &ClientPair,
    client_key_ok: bool,
    lines: &mut Vec<Line>,
) -> Option<ServerPolicy> {
    let Some(ca) = config.client_ca_file() else {
        lines.push(Line::new(
            Status::Fail,
            "client policy",
            "no client CA configured (server.client_ca_file or cert_auth.ca_cert_file)",
        ));
        return None;
    };
    let provider = rustls::crypto::ring::default_provider();
    let server_pair = config
        .server
        .tls_cert_file
        .clone()
        .zip(config.server.tls_key_file.clone())
        .filter(|(cert, key)| load_certified_key(cert, key, &provider).is_ok());
    let Some((cert, key)) = client_key_ok
        .then(|| (client.cert.clone(), client.key.clone()))
        .or(server_pair)
    else {
        lines.push(Line::new(
            Status::Skip,
            "client policy",
            "neither the client nor the server key pair matches; cannot build the policy",
        ));
        return None;
    };
    let mut settings = PolicySettings::new(cert, key, ca);
    settings.client_crl_files = config.server.client_crl_file.iter().cloned().collect();
    settings.allowed_common_names = config.server.allowed_common_names.clone();
    settings.admin_common_names = config.server.admin_common_names.clone();
    match ServerPolicy::load(&settings) {
        Ok(policy) => {
            lines.push(Line::new(
                Status::Ok,
                "client policy",
                format!(
                    "{} client CA certificate(s) from {}, {} CRL(s)",
                    policy.client_cas().len(),
                    ca.display(),
                    policy.crls().len()
                ),
            ));
            Some(policy)
        }
        Err(error) => {
            lines.push(Line::new(Status::Fail, "client policy", error.to_string()));
            None
        }
    }
}

/// Which link a policy refusal breaks.
enum Broken {
    Nothing,
    Chain(String),
    Revocation(String),
    CrlExpired(String),
}

fn classify(result: &Result<ace_pki::Identity, Refusal>) -> Broken {
    use rustls::CertificateError as E;
    let refusal = match result {
        Ok(_) => return Broken::Nothing,
        Err(refusal) => refusal,
    };
    match refusal {
        // The CN rules and the allowlist run after chain and revocation, so
        // those held; the CN and allowlist lines say what is wrong.
        Refusal::NoCommonName
        | Refusal::EmptyCommonName
        | Refusal::MultipleCommonNames { .. }
        | Refusal::CommonNameNotText
        | Refusal::CommonNameTooLong { .. }
        | Refusal::CommonNameControlCharacter { .. }
        | Refusal::NotAllowed { .. } => Broken::Nothing,
        Refusal::CrlExpired { .. } => Broken::CrlExpired(refusal.to_string()),
        Refusal::Verification(rustls::Error::InvalidCertificate(
            E::Revoked
            | E::UnknownRevocationStatus
            | E::ExpiredRevocationList
            | E::ExpiredRevocationListContext { .. },
        )) => Broken::Revocation(refusal.to_string()),
        other => Broken::Chain(other.to_string()),
    }
}

fn common_name_line(report: &CertificateReport) -> Line {
    let Some(cn) = &report.common_name else {
        return Line::new(
            Status::Fail,
            "client CN",
            "the subject has no single text CN, so it names no role",
        );
    };
    match check_common_name(cn) {
        Ok(()) => Line::new(
            Status::Ok,
            "client CN",
            format!("{cn} (the role ACE switches to)"),
        ),
        Err(refusal) => Line::new(Status::Fail, "client CN", refusal.to_string()),
    }
}

fn allowlist_line(config: &AceConfig, cn: Option<&str>, cn_ok: bool) -> Line {
    let allowed = &config.server.allowed_common_names;
    match cn {
        Some(cn) if cn_ok => {
            if allowed.is_empty() {
                Line::new(
                    Status::Ok,
                    "client allowlist",
                    "server.allowed_common_names is empty; any CN is accepted",
                )
            } else if allowed.iter().any(|name| name == cn) {
                Line::new(
                    Status::Ok,
                    "client allowlist",
                    format!("{cn} is in server.allowed_common_names"),
                )
            } else {
                Line::new(
                    Status::Fail,
                    "client allowlist",
                    format!(
                        "{cn} is not in server.allowed_common_names ({})",
                        allowed.join(", ")
                    ),
                )
            }
        }
        _ => Line::new(Status::Skip, "client allowlist", "no usable CN"),
    }
}

fn unix_time(at: OffsetDateTime) -> UnixTime {
    let seconds = u64::try_from(at.unix_timestamp()).unwrap_or(0);
    UnixTime::since_unix_epoch(std::time::Duration::from_secs(seconds))
}

// === Nodes and roles ===

async fn check_cluster(
    config: &AceConfig,
    cluster: &Cluster,
    role: Option<&str>,
    lines: &mut Vec<Line>,
) {
    let mut settings = SessionSettings::from_config(config);
    // One connection answers every question the doctor asks.
    settings.max_connections = 1;
    let settings = Arc::new(settings);

    // Connect to every node at once, so a dead node costs one timeout.
    let mut tasks = tokio::task::JoinSet::new();
    for (index, node) in cluster.nodes.iter().enumerate() {
        let node = node.clone();
        let settings = Arc::clone(&settings);
        tasks.spawn(async move { (index, NodeSession::connect(&node, &settings).await) });
    }
    let mut sessions: Vec<Option<Result<NodeSession, String>>> =
        cluster.nodes.iter().map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((index, result)) => sessions[index] = Some(result.map_err(|e| e.to_string())),
            Err(error) => tracing::warn!(%error, "node connection task failed"),
        }
    }

    for (node, session) in cluster.nodes.iter().zip(&sessions) {
        let check = format!("node {}.{}", cluster.name, node.name);
        let line = match session {
            Some(Ok(session)) => Line::new(
                Status::Ok,
                check,
                format!(
                    "connected as {} to database {} (sslmode={})",
                    session.service_user(),
                    session.database(),
                    node.settings.sslmode
                ),
            ),
            Some(Err(error)) => Line::new(Status::Fail, check, error.clone()),
            None => Line::new(Status::Fail, check, "the connection attempt did not finish"),
        };
        lines.push(line);
    }

    if let Some(role) = role {
        for (node, session) in cluster.nodes.iter().zip(&sessions) {
            let check = format!("role {role} on {}.{}", cluster.name, node.name);
            let line = match session {
                Some(Ok(session)) => match session.check_role(role).await {
                    Ok(()) => Line::new(
                        Status::Ok,
                        check,
                        format!("exists, and {} may SET ROLE to it", session.service_user()),
                    ),
                    Err(error) => Line::new(Status::Fail, check, error.to_string()),
                },
                _ => Line::new(Status::Skip, check, "the node was not reached"),
            };
            lines.push(line);
        }
    }
    for session in sessions.into_iter().flatten().flatten() {
        session.close().await;
    }
}

// === Expiry ===

fn check_expiry(
    config: &AceConfig,
    options: &DoctorOptions,
    clusters: &[Cluster],
    now: OffsetDateTime,
    lines: &mut Vec<Line>,
) {
    // Every certificate file in play, named by the first key naming it.
    let mut certs: Vec<(String, PathBuf)> = Vec::new();
    let mut crls: Vec<(String, PathBuf)> = Vec::new();
    let server = &config.server;
    let cert_auth = &config.cert_auth;
    let add = |list: &mut Vec<(String, PathBuf)>, key: String, path: Option<&Path>| {
        if let Some(path) = path {
            list.push((key, path.to_owned()));
        }
    };
    add(
        &mut certs,
        "server.tls_cert_file".into(),
        server.tls_cert_file.as_deref(),
    );
    add(&mut certs, "client CA".into(), config.client_ca_file());
    add(
        &mut certs,
        "cert_auth.ca_cert_file".into(),
        cert_auth.ca_cert_file.as_deref(),
    );
    add(
        &mut certs,
        "cert_auth.ace_user_cert_file".into(),
        cert_auth.ace_user_cert_file.as_deref(),
    );
    add(
        &mut crls,
        "server.client_crl_file".into(),
        server.client_crl_file.as_deref(),
    );
    for cluster in clusters {
        for node in &cluster.nodes {
            let key = |what: &str| format!("{}.{} {what}", cluster.name, node.name);
            add(&mut certs, key("sslcert"), node.settings.sslcert.as_deref());
            add(
                &mut certs,
                key("sslrootcert"),
                node.settings.sslrootcert.as_deref(),
            );
            add(&mut crls, key("sslcrl"), node.settings.sslcrl.as_deref());
        }
    }

    // The client certificate has its own validity line already.
    let mut seen: BTreeSet<PathBuf> = options
        .client
        .iter()
        .map(|client| client.cert.clone())
        .collect();
    for (key, path) in certs {
        if !seen.insert(path.clone()) {
            continue;
        }
        let check = format!("expiry {key}");
        let reports = load_certificates(&path)
            .map_err(|e| e.to_string())
            .and_then(|chain| {
                chain
                    .iter()
                    .map(|der| certificate_report(der))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|reason| format!("{}: {reason}", path.display()))
            });
        match reports {
            Ok(reports) => lines.push(validity_line(&check, &path, &reports, now)),
            Err(reason) => lines.push(Line::new(Status::Fail, check, reason)),
        }
    }
    for (key, path) in crls {
        if !seen.insert(path.clone()) {
            continue;
        }
        lines.push(crl_line(&format!("expiry {key}"), &path, now));
    }
}

/// The validity of the certificates of one file: FAIL when any is expired
/// or not yet valid, WARN when one expires within 30 days.
fn validity_line(
    check: &str,
    path: &Path,
    reports: &[CertificateReport],
    now: OffsetDateTime,
) -> Line {
    if let Some(early) = reports.iter().find(|r| r.not_before > now) {
        return Line::new(
            Status::Fail,
            check,
            format!(
                "{}: {} is not valid until {}",
                path.display(),
                early.subject,
                format_time(early.not_before)
            ),
        );
    }
    let Some(soonest) = reports.iter().min_by_key(|r| r.not_after) else {
        return Line::new(
            Status::Fail,
            check,
            format!("{}: no certificate", path.display()),
        );
    };
    let days = (soonest.not_after - now).whole_days();
    let until = format_time(soonest.not_after);
    if soonest.not_after <= now {
        Line::new(
            Status::Fail,
            check,
            format!("{}: {} expired at {until}", path.display(), soonest.subject),
        )
    } else if days < WARN_WITHIN_DAYS {
        Line::new(
            Status::Warn,
            check,
            format!(
                "{}: {} expires in {days} day(s), at {until}; renew it",
                path.display(),
                soonest.subject
            ),
        )
    } else {
        Line::new(
            Status::Ok,
            check,
            format!(
                "{}: {} valid until {until} ({days} days)",
                path.display(),
                soonest.subject
            ),
        )
    }
}

/// The currency of the CRLs of one file: FAIL when one is past its next
/// update (the server then refuses every client), WARN when that comes
/// within 30 days or is not stated.
fn crl_line(check: &str, path: &Path, now: OffsetDateTime) -> Line {
    let crls = match load_crls(path) {
        Ok(crls) => crls,
        Err(error) => return Line::new(Status::Fail, check, error.to_string()),
    };
    if crls.iter().any(|crl| crl.next_update.is_none()) {
        return Line::new(
            Status::Warn,
            check,
            format!("{}: a CRL states no next update", path.display()),
        );
    }
    let Some(next) = crls.iter().filter_map(|crl| crl.next_update).min() else {
        return Line::new(Status::Fail, check, format!("{}: no CRL", path.display()));
    };
    let days = (next - now).whole_days();
    let when = format_time(next);
    if next <= now {
        Line::new(
            Status::Fail,
            check,
            format!(
                "{}: expired at {when}; every client is refused until it is renewed (ace-admin pki crl)",
                path.display()
            ),
        )
    } else if days < WARN_WITHIN_DAYS {
        Line::new(
            Status::Warn,
            check,
            format!(
                "{}: next update {when}, in {days} day(s); publish a new CRL before then",
                path.display()
            ),
        )
    } else {
        Line::new(
            Status::Ok,
            check,
            format!("{}: next update {when} ({days} days)", path.display()),
        )
    }
}
