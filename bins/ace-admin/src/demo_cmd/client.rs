//! The demo's API client: HTTP/1.1 over rustls, presenting a client
//! certificate, as any caller of the API would.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// A caller of the API: its certificate and key, and the CA it trusts.
pub(crate) struct ApiClient {
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
}

/// A response: status and JSON body (`Null` when the body is not JSON).
pub(crate) struct Answer {
    pub status: StatusCode,
    pub body: Value,
}

impl ApiClient {
    /// A client for the API at `addr` (reached as `localhost`), trusting
    /// `ca` and presenting `cert` and `key`.
    pub fn new(addr: SocketAddr, ca: &Path, cert: &Path, key: &Path) -> anyhow::Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        for der in ace_pki::load::load_certificates(ca)? {
            roots
                .add(der)
                .with_context(|| format!("{}: not a usable CA certificate", ca.display()))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("choosing TLS versions")?
            .with_root_certificates(roots)
            .with_client_auth_cert(
                ace_pki::load::load_certificates(cert)?,
                ace_pki::load::load_private_key(key)?,
            )
            .context("loading the client certificate")?;
        Ok(ApiClient {
            addr,
            tls: Arc::new(config),
        })
    }

    /// Sends one request on a new connection. A certificate the server
    /// refuses fails here, in the handshake or (TLS 1.3) at the request.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Answer> {
        let tcp = TcpStream::connect(self.addr)
            .await
            .with_context(|| format!("connecting to {}", self.addr))?;
        let server_name = ServerName::try_from("localhost").context("server name")?;
        let tls = TlsConnector::from(Arc::clone(&self.tls))
            .connect(server_name, tcp)
            .await
            .context("TLS handshake")?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .context("HTTP/1.1 handshake")?;
        tokio::spawn(conn);
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, "localhost");
        let payload = match body {
            Some(value) => {
                request = request.header(http::header::CONTENT_TYPE, "application/json");
                Bytes::from(value.to_string())
            }
            None => Bytes::new(),
        };
        let request = request
            .body(Full::new(payload))
            .context("building the request")?;
        let response = sender
            .send_request(request)
            .await
            .context("sending the request")?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .context("reading the response")?
            .to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Answer { status, body })
    }

    /// POSTs a task request and returns the task id from the 202 answer.
    pub async fn submit(&self, path: &str, body: &Value) -> anyhow::Result<String> {
        let answer = self.send(Method::POST, path, Some(body)).await?;
        if answer.status != StatusCode::ACCEPTED {
            bail!("POST {path} answered {}: {}", answer.status, answer.body);
        }
        answer.body["task_id"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("POST {path}: no task_id in {}", answer.body))
    }

    /// Polls `GET /api/v1/tasks/{id}` until the task has finished and
    /// returns it; a task that did not complete is an error.
    pub async fn wait(&self, id: &str) -> anyhow::Result<Value> {
        let path = format!("/api/v1/tasks/{id}");
        loop {
            let answer = self.send(Method::GET, &path, None).await?;
            if answer.status != StatusCode::OK {
                bail!("GET {path} answered {}: {}", answer.status, answer.body);
            }
            match answer.body["status"].as_str() {
                Some("COMPLETED") => return Ok(answer.body),
                Some("FAILED" | "CANCELLED") => bail!(
                    "task {id} ended {}: {}",
                    answer.body["status"],
                    answer.body["task_context"]["error"]
                ),
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
}
