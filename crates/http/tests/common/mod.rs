//! Shared set-up for the API tests: an in-process server on 127.0.0.1:0
//! with certificates from an rcgen CA, and a real TLS client (tokio-rustls
//! and hyper's client connection) that presents a client certificate.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ace_config::{AceConfig, ServiceFile};
use ace_http::{Limits, Server};
use ace_pki::PolicyHandle;
use ace_tasks::TaskStore;
use ace_testkit::{Issued, TestCa};
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

/// The API's PKI: a CA, the server certificate (for `localhost` and
/// `127.0.0.1`), and the files the server reads.
pub struct ApiPki {
    pub ca: TestCa,
    pub dir: tempfile::TempDir,
    pub ca_file: PathBuf,
    pub crl_file: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

impl ApiPki {
    pub fn new() -> Self {
        let ca = TestCa::new("ACE API test CA").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("api-ca.crt");
        std::fs::write(&ca_file, ca.cert_pem()).unwrap();
        let crl_file = dir.path().join("api.crl");
        std::fs::write(&crl_file, ca.crl_pem().unwrap()).unwrap();
        let server = ca.server_cert(&["localhost", "127.0.0.1"]).unwrap();
        let (server_cert, server_key) = server.write_to(dir.path(), "api-server").unwrap();
        ApiPki {
            ca,
            dir,
            ca_file,
            crl_file,
            server_cert,
            server_key,
        }
    }

    /// Rewrites the CRL file from the CA's revocation list.
    pub fn write_crl(&self) {
        std::fs::write(&self.crl_file, self.ca.crl_pem().unwrap()).unwrap();
    }

    /// A config whose `server` section points at these files, with the CRL,
    /// a data directory and a task store in the temporary directory.
    pub fn config(&self) -> AceConfig {
        let mut config = AceConfig::default();
        config.server.tls_cert_file = Some(self.server_cert.clone());
        config.server.tls_key_file = Some(self.server_key.clone());
        config.server.client_ca_file = Some(self.ca_file.clone());
        config.server.client_crl_file = Some(self.crl_file.clone());
        config.server.data_dir = self.dir.path().join("data");
        config.server.taskstore_path = Some(self.dir.path().join("tasks.db"));
        config.server.admin_common_names = vec!["admin_user".into()];
        config
    }

    /// Writes a client certificate and key for `issued` and returns their
    /// paths (for curl).
    pub fn write_client(&self, issued: &Issued, stem: &str) -> (PathBuf, PathBuf) {
        issued.write_to(self.dir.path(), stem).unwrap()
    }
}

/// A running in-process server.
pub struct Running {
    pub addr: SocketAddr,
    pub policy: Arc<PolicyHandle>,
    pub store: TaskStore,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<ace_http::Result<()>>>,
}

impl Running {
    /// Starts a server for `config` with `service` on 127.0.0.1:0.
    pub async fn start(config: AceConfig, service: ServiceFile) -> Self {
        Self::start_with(config, service, Limits::default()).await
    }

    pub async fn start_with(config: AceConfig, service: ServiceFile, limits: Limits) -> Self {
        let policy =
            Arc::new(PolicyHandle::load(&ace_http::policy_settings(&config).unwrap()).unwrap());
        let store = TaskStore::open(config.taskstore_path()).await.unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server =
            Server::new(config, service, Arc::clone(&policy), store.clone()).with_limits(limits);
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(ace_http::serve(listener, server, async move {
            let _ = stopped.await;
        }));
        Running {
            addr,
            policy,
            store,
            stop: Some(stop),
            handle: Some(handle),
        }
    }

    /// Sends the shutdown signal and waits for `serve` to return.
    pub async fn shutdown(mut self) -> ace_http::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.handle.take().unwrap().await.unwrap()
    }
}

/// A service file with one cluster whose nodes nobody listens on; enough
/// for tests that never reach a node.
pub fn unreachable_service() -> ServiceFile {
    ServiceFile::parse(
        "pg_service.conf",
        "[test]\ndbname=app\nuser=ace_user\nhost=127.0.0.1\n[test.n1]\nport=1\n[test.n2]\nport=2\n",
    )
    .unwrap()
}

/// Which HTTP version the client speaks (offered through ALPN).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Http1,
    Http2,
}

enum Sender {
    Http1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    Http2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

/// A TLS client connection to the API.
pub struct Client {
    sender: Sender,
}

/// A response: status, headers, and the body as JSON (`Value::Null` when
/// it is not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Client {
    /// Connects to `addr` as `localhost`, trusting `ca`, presenting
    /// `identity` when given. A handshake the server refuses fails here or
    /// (TLS 1.3) at the first request.
    pub async fn connect(
        addr: SocketAddr,
        ca: CertificateDer<'static>,
        identity: Option<&Issued>,
        proto: Proto,
    ) -> Result<Client, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca).unwrap();
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let mut config = match identity {
            Some(issued) => builder
                .with_client_auth_cert(vec![issued.cert()], issued.key())
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = match proto {
            Proto::Http1 => vec![b"http/1.1".to_vec()],
            Proto::Http2 => vec![b"h2".to_vec()],
        };
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let tls = TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let negotiated = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        let io = TokioIo::new(tls);
        let sender = match proto {
            Proto::Http1 => {
                let (sender, conn) = hyper::client::conn::http1::handshake(io)
                    .await
                    .map_err(|e| format!("http1: {e}"))?;
                tokio::spawn(conn);
                Sender::Http1(sender)
            }
            Proto::Http2 => {
                assert_eq!(negotiated.as_deref(), Some(&b"h2"[..]), "ALPN chose h2");
                let (sender, conn) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                        .await
                        .map_err(|e| format!("http2: {e}"))?;
                tokio::spawn(conn);
                Sender::Http2(sender)
            }
        };
        Ok(Client { sender })
    }

    /// One request; `Err` when the connection fails (a refused
    /// certificate under TLS 1.3 shows up here).
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<Bytes>,
    ) -> Result<Answer, String> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("https://localhost{path}"));
        if let Some(content_type) = content_type {
            request = request.header(http::header::CONTENT_TYPE, content_type);
        }
        let mut request = request.body(Full::new(body.into())).unwrap();
        let response = match &mut self.sender {
            Sender::Http1(sender) => {
                request
                    .headers_mut()
                    .insert(http::header::HOST, "localhost".parse().unwrap());
                *request.uri_mut() = path.parse().unwrap();
                sender.send_request(request).await
            }
            Sender::Http2(sender) => sender.send_request(request).await,
        }
        .map_err(|e| format!("request: {e}"))?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    pub async fn get(&mut self, path: &str) -> Result<Answer, String> {
        self.send(Method::GET, path, None, Bytes::new()).await
    }

    pub async fn post_json(&mut self, path: &str, body: &Value) -> Result<Answer, String> {
        self.send(
            Method::POST,
            path,
            Some("application/json"),
            body.to_string(),
        )
        .await
    }
}

/// Connects with HTTP/1.1 and panics if that fails.
pub async fn client(addr: SocketAddr, ca: &TestCa, identity: &Issued) -> Client {
    Client::connect(addr, ca.cert_der(), Some(identity), Proto::Http1)
        .await
        .unwrap()
}

/// Polls `GET tasks/{id}` until the task is finished and returns it.
pub async fn wait_finished(client: &mut Client, id: &str) -> Value {
    loop {
        let answer = client.get(&format!("/api/v1/tasks/{id}")).await.unwrap();
        assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
        match answer.body["status"].as_str() {
            Some("COMPLETED" | "FAILED" | "CANCELLED") => return answer.body,
            Some("PENDING" | "RUNNING") => tokio::time::sleep(Duration::from_millis(100)).await,
            other => panic!("unexpected status {other:?}: {}", answer.body),
        }
    }
}

/// Runs a command and returns its stdout; panics with stderr on failure.
pub async fn run(program: &str, args: &[String], cwd: &Path) -> String {
    let output = tokio::process::Command::new(program)
        .args(args)
        .current_dir(cwd)
        .output()
        .await
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}
