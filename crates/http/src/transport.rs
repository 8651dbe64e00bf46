//! The accept loop and the per-connection driver: TLS with the policy in
//! force at accept time, the caller's identity, hyper over HTTP/1.1 or
//! HTTP/2, timeouts, the connection cap and graceful shutdown.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use ace_pki::{Identity, ServerPolicy};
use futures::FutureExt;
use http::{HeaderValue, Response, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::api::{self, Reply};
use crate::error::{Error, Result};
use crate::server::{self, Server, Shared};

/// Serves the API on `listener` until `shutdown` completes.
///
/// Each accepted connection takes a slot of `max_connections` (the loop
/// stops accepting while all are taken), must finish its TLS handshake
/// within `handshake_timeout` under the policy current at that moment, and
/// keeps that policy for its whole life. Requests are then answered over
/// HTTP/1.1 or HTTP/2 (by ALPN).
///
/// When `shutdown` completes: the listener is dropped, open connections
/// finish the request in flight and close, running tasks get
/// `shutdown_grace` to finish, and those still live after it are
/// cancelled and recorded FAILED as interrupted. Then this returns.
///
/// # Errors
///
/// [`Error::Io`] when `server.data_dir` cannot be created or resolved.
/// Accept errors (for example too many open files) are logged and
/// retried, never returned.
pub async fn serve(
    listener: TcpListener,
    server: Server,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let shared = server.into_shared()?;
    let local = listener.local_addr().ok();
    info!(
        address = ?local,
        max_connections = shared.limits.max_connections,
        max_concurrent_tasks = shared.config.server.max_concurrent_tasks,
        data_dir = %shared.data_dir.display(),
        "API server listening"
    );
    let slots = Arc::new(Semaphore::new(shared.limits.max_connections.max(1)));
    let stop = CancellationToken::new();
    let connections = TaskTracker::new();

    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            () = &mut shutdown => break,
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // EMFILE and friends: wait a little rather than spin.
                warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let shared = Arc::clone(&shared);
        let stop = stop.child_token();
        connections.spawn(
            async move {
                connection(shared, tcp, stop).await;
                drop(slot);
            }
            .instrument(info_span!("conn", %peer)),
        );
    }

    info!("shutting down: no new connections; finishing requests and tasks");
    drop(listener);
    stop.cancel();
    connections.close();
    let tasks = server::shutdown(&shared);
    let drained = tokio::time::timeout(shared.limits.shutdown_grace, connections.wait());
    let ((), drained) = tokio::join!(tasks, drained);
    if drained.is_err() {
        warn!("connections still open after the grace period; closing them");
    }
    info!("API server stopped");
    Ok(())
}

/// What a connection knows about its caller.
struct Caller {
    policy: Arc<ServerPolicy>,
    chain: Vec<CertificateDer<'static>>,
    identity: Mutex<(Identity, Instant)>,
    recheck: Duration,
}

impl Caller {
    /// The caller's identity, checked again with the connection's policy
    /// when the last check is older than `recheck_interval`.
    fn identity(&self) -> Result<Identity> {
        let mut guard = self.identity.lock().unwrap_or_else(PoisonError::into_inner);
        if guard.1.elapsed() >= self.recheck {
            let identity =
                self.policy
                    .identify(&self.chain)
                    .map_err(|refusal| Error::Unauthenticated {
                        reason: refusal.to_string(),
                    })?;
            *guard = (identity, Instant::now());
        }
        Ok(guard.0.clone())
    }
}

async fn connection(shared: Arc<Shared>, tcp: TcpStream, stop: CancellationToken) {
    // The policy of this connection, for its whole life.
    let policy = shared.policy.current();
    let acceptor = TlsAcceptor::from(policy.server_config());
    let tls =
        match tokio::time::timeout(shared.limits.handshake_timeout, acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => {
                ack_now(tls.get_ref().0);
                tls
            }
            Ok(Err(error)) => {
                // The policy logged the certificate's refusal and reason.
                debug!(%error, "TLS handshake failed");
                return;
            }
            Err(_) => {
                debug!("TLS handshake timed out");
                return;
            }
        };
    let (_, session) = tls.get_ref();
    let chain: Vec<CertificateDer<'static>> = session
        .peer_certificates()
        .unwrap_or_default()
        .iter()
        .map(|c| c.clone().into_owned())
        .collect();
    let identity = match policy.identify(&chain) {
        Ok(identity) => identity,
        Err(refusal) => {
            // The handshake applies the same checks, so this is a
            // certificate that expired in between.
            warn!(reason = %refusal, "client refused after the handshake");
            return;
        }
    };
    debug!(cn = %identity.cn, alpn = ?session.alpn_protocol().map(String::from_utf8_lossy), "connection accepted");
    let caller = Arc::new(Caller {
        policy,
        chain,
        identity: Mutex::new((identity, Instant::now())),
        recheck: shared.limits.recheck_interval,
    });

    let limits = shared.limits.clone();
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Tracked {
        inner: tls,
        activity: Arc::clone(&activity),
    });
    let service = {
        let activity = Arc::clone(&activity);
        service_fn(move |request| {
            let shared = Arc::clone(&shared);
            let caller = Arc::clone(&caller);
            let activity = Arc::clone(&activity);
            async move {
                let _busy = activity.busy();
                Ok::<_, Infallible>(respond(&shared, &caller, request).await)
            }
        })
    };

    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Some(limits.header_read_timeout))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(64);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);

    let idle = limits.idle_timeout;
    let mut draining = false;
    loop {
        let deadline = activity.deadline(idle);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(error) = result {
                    debug!(%error, "connection ended with an error");
                }
                return;
            }
            () = stop.cancelled(), if !draining => {
                conn.as_mut().graceful_shutdown();
                draining = true;
            }
            () = tokio::time::sleep_until(deadline), if !draining => {
                if activity.is_idle(idle) {
                    debug!("closing idle connection");
                    conn.as_mut().graceful_shutdown();
                    draining = true;
                }
            }
        }
    }
}

/// Acknowledges at once what the client sent last (its TLS Finished).
///
/// This server sends no session tickets, so nothing follows the client's
/// Finished to carry the ACK: Linux delays it (up to 40 ms), and a client
/// that writes its request in a second segment without `TCP_NODELAY` (as
/// `ab` and many OpenSSL clients do) waits that long under Nagle's
/// algorithm before its request leaves. One `setsockopt` per connection.
fn ack_now(tcp: &TcpStream) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Err(error) = socket2::SockRef::from(tcp).set_tcp_quickack(true) {
        debug!(%error, "TCP_QUICKACK not set");
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = tcp;
}

/// Answers one request and writes its log line.
async fn respond(
    shared: &Arc<Shared>,
    caller: &Caller,
    request: hyper::Request<Incoming>,
) -> Response<Full<bytes::Bytes>> {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let (reply, cn) = match caller.identity() {
        Ok(identity) => {
            let handled = std::panic::AssertUnwindSafe(api::handle(shared, &identity, request))
                .catch_unwind()
                .await;
            let reply = handled.unwrap_or_else(|_| {
                tracing::error!(cn = %identity.cn, %method, %path, "request handler panicked");
                Reply::error(&Error::HandlerPanicked, None)
            });
            (reply, identity.cn)
        }
        Err(error) => (Reply::error(&error, None), String::from("-")),
    };
    let task_id = reply
        .task_id
        .map_or_else(|| String::from("-"), |id| id.to_string());
    info!(
        target: "ace_http::access",
        %method,
        %path,
        status = reply.status.as_u16(),
        %cn,
        %task_id,
        duration_ms = started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    let mut response = Response::new(Full::new(reply.body));
    *response.status_mut() = reply.status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(allow) = reply.allow.and_then(|a| HeaderValue::from_str(&a).ok()) {
        headers.insert(header::ALLOW, allow);
    }
    response
}

// === Idle tracking ===

/// When the connection last moved bytes, and how many requests are in
/// flight on it.
struct Activity {
    epoch: Instant,
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Activity {
            epoch: Instant::now(),
            last_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(now, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.epoch + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }

    fn deadline(&self, idle: Duration) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.last() + idle)
    }

    fn is_idle(&self, idle: Duration) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0 && self.last().elapsed() >= idle
    }

    fn busy(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        Busy(Arc::clone(self))
    }
}

/// Marks a request in flight until dropped.
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An I/O stream that records when it last moved bytes.
struct Tracked<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
