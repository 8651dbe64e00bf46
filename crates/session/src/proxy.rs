//! A private, per-node relay that makes ACE's TLS connection itself.
//!
//! sqlx speaks the PostgreSQL protocol; this relay owns the transport. sqlx
//! connects to a Unix socket in a directory only this process's user can
//! enter (a fresh 0700 temporary directory); for each such connection the
//! relay opens TCP to the node (with `connect_timeout` and TCP keepalives),
//! negotiates TLS with PostgreSQL's `SSLRequest` under the rules of
//! [`crate::tls`], and then copies bytes both ways. Because the relay makes
//! the handshake, it knows exactly why one failed (untrusted server
//! certificate, host name mismatch, refused client certificate, ...) and
//! records that for the session layer to report.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixListener, UnixStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

use crate::error::{Result, SessionError, TlsFailure};
use crate::tls::{self, TlsPlan};

/// PostgreSQL's SSLRequest: length 8, code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
/// The port number in the relay's socket name (`.s.PGSQL.<port>`).
pub(crate) const SOCKET_PORT: u16 = 5432;

/// TCP keepalive settings, from `ace.yaml`'s `postgres.tcp_keepalives_*`.
#[derive(Debug, Clone, Copy)]
pub struct Keepalives {
    /// Idle time before the first probe.
    pub idle: Duration,
    /// Time between probes.
    pub interval: Duration,
    /// Probes before the connection is dropped.
    pub count: u32,
}

/// Where and how the relay reaches the node.
#[derive(Debug, Clone)]
pub(crate) struct Upstream {
    pub node: String,
    /// The name verified against the server certificate (`host`).
    pub host: String,
    /// What is dialled (`hostaddr`, else `host`).
    pub dial: String,
    pub port: u16,
    pub plan: TlsPlan,
    pub connect_timeout: Duration,
    pub keepalives: Keepalives,
}

impl Upstream {
    fn address(&self) -> String {
        format!("{}:{}", self.dial, self.port)
    }
}

/// Why the relay could not give sqlx a connection.
#[derive(Debug, Clone)]
pub(crate) enum RelayFailure {
    Unreachable { address: String, reason: String },
    Timeout { address: String, seconds: u64 },
    Tls(TlsFailure),
}

impl RelayFailure {
    pub(crate) fn into_error(self, node: &str) -> SessionError {
        let node = node.to_owned();
        match self {
            RelayFailure::Unreachable { address, reason } => SessionError::Unreachable {
                node,
                address,
                reason,
            },
            RelayFailure::Timeout { address, seconds } => SessionError::Timeout {
                node,
                address,
                seconds,
            },
            RelayFailure::Tls(failure) => SessionError::Tls { node, failure },
        }
    }
}

type LastFailure = Arc<Mutex<Option<(Instant, RelayFailure)>>>;

/// A running relay for one node; stops when dropped.
#[derive(Debug)]
pub(crate) struct Relay {
    dir: tempfile::TempDir,
    last_failure: LastFailure,
    accept: JoinHandle<()>,
}

impl Relay {
    /// Binds the private socket and starts accepting.
    pub(crate) fn start(upstream: Upstream) -> Result<Self> {
        let dir = private_dir().map_err(|error| SessionError::Settings {
            node: upstream.node.clone(),
            reason: format!("cannot create the relay socket directory: {error}"),
        })?;
        let socket = dir.path().join(format!(".s.PGSQL.{SOCKET_PORT}"));
        let listener = UnixListener::bind(&socket).map_err(|error| SessionError::Settings {
            node: upstream.node.clone(),
            reason: format!("cannot bind the relay socket: {error}"),
        })?;
        let last_failure: LastFailure = Arc::default();
        let upstream = Arc::new(upstream);
        let accept = tokio::spawn(accept_loop(listener, upstream, last_failure.clone()));
        Ok(Relay {
            dir,
            last_failure,
            accept,
        })
    }

    /// The directory sqlx connects to (`PgConnectOptions::socket`).
    pub(crate) fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The failure recorded at or after `since`, if any.
    pub(crate) fn failure_since(&self, since: Instant) -> Option<RelayFailure> {
        let guard = self
            .last_failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        guard
            .as_ref()
            .filter(|(at, _)| *at >= since)
            .map(|(_, failure)| failure.clone())
    }
}

/// A fresh `ace-relay-*` directory only this user can enter (0700 whatever
/// the umask): the socket in it hands out connections authenticated with
/// ACE's client certificate.
fn private_dir() -> std::io::Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix("ace-relay-")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()?;
    // mkdir applies the umask, which can only remove bits; set the mode
    // again so it is exactly 0700.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
    Ok(dir)
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn accept_loop(listener: UnixListener, upstream: Arc<Upstream>, last_failure: LastFailure) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let upstream = upstream.clone();
        let last_failure = last_failure.clone();
        tokio::spawn(async move {
            if let Err(failure) = relay(client, &upstream).await {
                tracing::debug!(node = %upstream.node, ?failure, "relay connection failed");
                *last_failure
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) =
                    Some((Instant::now(), failure));
            }
        });
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

async fn relay(mut client: UnixStream, upstream: &Upstream) -> Result<(), RelayFailure> {
    let timeout = upstream.connect_timeout;
    let mut server = match tokio::time::timeout(timeout, open(upstream)).await {
        Ok(result) => result?,
        Err(_) => {
            return Err(RelayFailure::Timeout {
                address: upstream.address(),
                seconds: timeout.as_secs(),
            });
        }
    };
    match tokio::io::copy_bidirectional(&mut client, &mut server).await {
        Ok(_) => Ok(()),
        // Under TLS 1.3 the server judges ACE's client certificate after the
        // handshake; its refusal arrives here as an alert.
        Err(error) if is_tls_error(&error) => {
            Err(RelayFailure::Tls(tls::classify(&error, &upstream.host)))
        }
        Err(_) => Ok(()),
    }
}

fn is_tls_error(error: &std::io::Error) -> bool {
    error
        .get_ref()
        .is_some_and(|inner| inner.is::<rustls::Error>())
}

async fn open(upstream: &Upstream) -> Result<Box<dyn Io>, RelayFailure> {
    let address = upstream.address();
    let unreachable = |reason: String| RelayFailure::Unreachable {
        address: address.clone(),
        reason,
    };
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((upstream.dial.as_str(), upstream.port))
        .await
        .map_err(|error| unreachable(format!("cannot resolve host: {error}")))?
        .collect();
    let mut last = None;
    let mut tcp = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                tcp = Some(stream);
                break;
            }
            Err(error) => last = Some(error),
        }
    }
    let mut tcp = tcp.ok_or_else(|| {
        unreachable(last.map_or_else(|| "host has no address".to_owned(), |e| e.to_string()))
    })?;
    let _ = tcp.set_nodelay(true);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(upstream.keepalives.idle)
        .with_interval(upstream.keepalives.interval)
        .with_retries(upstream.keepalives.count);
    let _ = socket2::SockRef::from(&tcp).set_tcp_keepalive(&keepalive);

    let (config, name, required) = match &upstream.plan {
        TlsPlan::Plain => return Ok(Box::new(tcp)),
        TlsPlan::Prefer(config, name) => (config.clone(), name.clone(), false),
        TlsPlan::Require(config, name) => (config.clone(), name.clone(), true),
    };
    tcp.write_all(&SSL_REQUEST)
        .await
        .map_err(|error| unreachable(error.to_string()))?;
    let answer = tcp
        .read_u8()
        .await
        .map_err(|error| unreachable(format!("connection closed during SSLRequest: {error}")))?;
    match answer {
        b'S' => {
            let stream = TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|error| RelayFailure::Tls(tls::classify(&error, &upstream.host)))?;
            Ok(Box::new(stream))
        }
        b'N' if !required => Ok(Box::new(tcp)),
        b'N' => Err(RelayFailure::Tls(TlsFailure::ServerRefusedTls {
            sslmode: "require or stricter".into(),
        })),
        other => Err(unreachable(format!(
            "unexpected answer {other:#04x} to SSLRequest (not a PostgreSQL server?)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_relay_directory_is_private() {
        let dir = super::private_dir().unwrap();
        let mode = std::fs::metadata(dir.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{:o}", mode);
    }
}
