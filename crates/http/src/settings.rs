//! Transport limits, and the client policy built from `ace.yaml`.

use std::sync::Arc;
use std::time::Duration;

use ace_config::AceConfig;
use ace_pki::{PolicyHandle, PolicySettings, ServerPolicy};

use crate::error::{Error, Result};

/// Limits of the transport. [`Limits::default`] holds the values
/// `ace-server` runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest request body accepted; a larger one is answered 413.
    /// Default 1 MiB.
    pub max_body_bytes: usize,
    /// Time a client has to finish the TLS handshake. Default 10 s.
    pub handshake_timeout: Duration,
    /// Time a client has to send a whole request head (HTTP/1.1). Default
    /// 10 s.
    pub header_read_timeout: Duration,
    /// Time a client has to send a whole request body; 408 after it.
    /// Default 30 s.
    pub body_read_timeout: Duration,
    /// A connection with no traffic and no request in flight for this long
    /// is closed. Default 120 s.
    pub idle_timeout: Duration,
    /// Connections served at once; further clients wait in the listen
    /// backlog until one closes. Default 1024.
    pub max_connections: usize,
    /// After the shutdown signal, how long running tasks may take to
    /// finish before they are recorded as interrupted. Default 30 s.
    pub shutdown_grace: Duration,
    /// How often an open connection's certificate is checked again with
    /// the policy it was accepted with (expiry during a long-lived
    /// connection). Default 60 s.
    pub recheck_interval: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 1024 * 1024,
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            max_connections: 1024,
            shutdown_grace: Duration::from_secs(30),
            recheck_interval: Duration::from_secs(60),
        }
    }
}

/// The client policy settings `ace.yaml` describes: `server.tls_cert_file`
/// and `server.tls_key_file`, the client CA (`server.client_ca_file`, else
/// `cert_auth.ca_cert_file`), `server.client_crl_file`,
/// `server.allowed_common_names` and `server.admin_common_names`. Every
/// relaxation stays off.
///
/// # Errors
///
/// [`Error::MissingSetting`] naming the key when the server certificate,
/// its key or the client CA is not configured.
pub fn policy_settings(config: &AceConfig) -> Result<PolicySettings> {
    let server = &config.server;
    let cert = server.tls_cert_file.as_ref().ok_or(Error::MissingSetting {
        key: "server.tls_cert_file",
    })?;
    let key = server.tls_key_file.as_ref().ok_or(Error::MissingSetting {
        key: "server.tls_key_file",
    })?;
    let ca = config.client_ca_file().ok_or(Error::MissingSetting {
        key: "server.client_ca_file (or cert_auth.ca_cert_file)",
    })?;
    let mut settings = PolicySettings::new(cert, key, ca);
    settings.client_crl_files = server.client_crl_file.iter().cloned().collect();
    settings.allowed_common_names = server.allowed_common_names.clone();
    settings.admin_common_names = server.admin_common_names.clone();
    Ok(settings)
}

/// Rebuilds the client policy from `config` and swaps it into `handle`
/// (what `ace-server` does on `SIGHUP`). Connections accepted afterwards
/// use the new policy; open connections keep theirs. When the new policy
/// does not load, the old one stays in force.
///
/// # Errors
///
/// As [`policy_settings`], or [`Error::Policy`] with the loading error
/// (the file at fault is named).
pub fn reload_policy(handle: &PolicyHandle, config: &AceConfig) -> Result<Arc<ServerPolicy>> {
    let settings = policy_settings(config)?;
    Ok(handle.reload(&settings)?)
}
