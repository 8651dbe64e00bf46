//! A tiny HTTPS server and client for handshake tests: the server accepts
//! with the policy in force at accept time, identifies the caller per
//! request, and answers `cn=<cn> admin=<bool>` over HTTP/1.1 keep-alive.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use ace_pki::PolicyHandle;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector, client::TlsStream};

/// Starts the server on 127.0.0.1:0 and returns its address.
pub async fn serve(handle: Arc<PolicyHandle>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            // The policy of this connection, for its whole life.
            let policy = handle.current();
            tokio::spawn(async move {
                let acceptor = TlsAcceptor::from(policy.server_config());
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut tls = BufReader::new(tls);
                loop {
                    // Read one request head.
                    let mut saw_request = false;
                    loop {
                        let mut line = String::new();
                        match tls.read_line(&mut line).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) if line == "\r\n" || line == "\n" => break,
                            Ok(_) => saw_request = true,
                        }
                    }
                    if !saw_request {
                        return;
                    }
                    let chain = tls
                        .get_ref()
                        .get_ref()
                        .1
                        .peer_certificates()
                        .unwrap_or_default();
                    let body = match policy.identify(chain) {
                        Ok(id) => format!("cn={} admin={}\n", id.cn, id.is_admin),
                        Err(refusal) => format!("refused: {refusal}\n"),
                    };
                    let response = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if tls.get_mut().write_all(response.as_bytes()).await.is_err() {
                        return;
                    }
                    let _ = tls.get_mut().flush().await;
                }
            });
        }
    });
    addr
}

/// A client connection.
pub struct Client {
    stream: BufReader<TlsStream<TcpStream>>,
}

/// Connects to `addr` as `localhost`, trusting `ca_file`, presenting the
/// certificate and key when given. `tls12_only` restricts the client to
/// TLS 1.2.
pub async fn connect(
    addr: SocketAddr,
    ca_file: &Path,
    identity: Option<(&Path, &Path)>,
    tls12_only: bool,
) -> Result<Client, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in ace_pki::load::load_certificates(ca_file).unwrap() {
        roots.add(ca).unwrap();
    }
    let versions: &[&'static rustls::SupportedProtocolVersion] = if tls12_only {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                ace_pki::load::load_certificates(cert).unwrap(),
                ace_pki::load::load_private_key(key).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    Ok(Client {
        stream: BufReader::new(tls),
    })
}

impl Client {
    /// Sends one request and returns the body. Under TLS 1.3 a refused
    /// client certificate shows up here, on the first read.
    pub async fn whoami(&mut self) -> Result<String, String> {
        let request = "GET /whoami HTTP/1.1\r\nHost: localhost\r\n\r\n";
        self.stream
            .get_mut()
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut length = None;
        loop {
            let mut line = String::new();
            let n = self
                .stream
                .read_line(&mut line)
                .await
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("connection closed".to_owned());
            }
            if line == "\r\n" {
                break;
            }
            if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = value.trim().parse::<usize>().ok();
            }
        }
        let mut body = vec![0; length.ok_or("no content-length")?];
        self.stream
            .read_exact(&mut body)
            .await
            .map_err(|e| format!("read: {e}"))?;
        Ok(String::from_utf8(body).unwrap())
    }
}

/// Connects and asks once.
pub async fn whoami(
    addr: SocketAddr,
    ca_file: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<String, String> {
    connect(addr, ca_file, identity, false)
        .await?
        .whoami()
        .await
}

/// Runs a command that must exist, failing the test with a clear message
/// when it does not (CI installs it with scripts/setup.sh).
pub fn run(
    program: &str,
    args: &[&str],
    env: &[(&str, &Path)],
    cwd: &Path,
) -> std::process::Output {
    let mut command = Command::new(program);
    command.args(args).current_dir(cwd);
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().unwrap_or_else(|e| {
        panic!("cannot run {program}: {e}; install it (scripts/setup.sh installs easy-rsa, curl and openssl)")
    })
}
