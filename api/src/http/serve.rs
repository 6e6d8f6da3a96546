//! The HTTP server loop: our own accept loop over hyper's HTTP/1 connections, because
//! `axum::serve` neither times connections out nor caps them, so anyone could hold sockets (and
//! the process's file descriptors) open forever.
//!
//! Each connection has a watchdog that knows which phase it is in:
//! - waiting for a request: a new connection must send its first request's headers within
//!   `header_read`; a kept-alive one must start its next request within `idle`;
//! - reading a request's headers (bytes arrived): they must be complete within `header_read` of
//!   the first byte, so a 2 bytes/s drip is cut as surely as silence;
//! - busy (a request is in the router): no connection deadline; its body must be complete within
//!   `body_read` of the headers ([`DeadlineBody`]), and handlers bound their own work.
//!
//! At `max_connections` a new connection takes the place of the open connection that has waited
//! longest without a request in progress (silent, dripping headers, or idle between requests):
//! such a flood cannot lock Stripe out, since a real client's headers arrive at once and its
//! request is then not evictable. If every connection has a request in progress, the new one is
//! answered a short `503` with `Retry-After` and closed at once. Accept errors (e.g. out of file descriptors) are logged and retried after a
//! short pause, never ending or stalling the loop for long.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use mlc_service::telemetry::names;

/// The limits the loop enforces (from `[server]`).
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    pub header_read: Duration,
    pub body_read: Duration,
    pub idle: Duration,
    pub max_connections: usize,
    /// How long shutdown waits for open requests before closing their connections.
    pub shutdown_grace: Duration,
}

impl ServeLimits {
    pub fn from_config(c: &mlc_service::config::ServerConfig) -> Self {
        ServeLimits {
            header_read: Duration::from_secs(c.header_read_timeout_secs),
            body_read: Duration::from_secs(c.body_read_timeout_secs),
            idle: Duration::from_secs(c.idle_timeout_secs),
            max_connections: c.max_connections,
            shutdown_grace: Duration::from_secs(c.shutdown_grace_secs),
        }
    }
}

/// What a request body's read failed on; handlers tell a stalled body (408) from a broken one
/// (400) with it (see `webhooks`).
#[derive(Debug, thiserror::Error)]
pub enum BodyReadError {
    #[error("the body was not complete within {} s (server.body_read_timeout_secs)", .0.as_secs())]
    TimedOut(Duration),
    /// Truncated, badly chunked, or the client went away.
    #[error("the body could not be read: {0}")]
    Broken(#[source] hyper::Error),
}

/// The answer to a connection over the cap: short, complete, and it closes.
static BUSY_RESPONSE: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| {
    let body = serde_json::json!({"error": {
        "code": "too_many_connections",
        "message": "the server is at server.max_connections; retry shortly",
    }})
    .to_string();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
});

/// How long a new connection waits for the one evicted for it to close (it closes as soon as
/// its task runs; this only bounds a pathological scheduler delay).
const EVICTION_WAIT: Duration = Duration::from_secs(1);

/// Pause after an accept error that is not about one connection (out of descriptors, out of
/// memory): short, so the listener resumes as soon as descriptors free up, but not a busy loop.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(20);

/// Serves `router` on `listener` until `shutdown` is cancelled; then stops accepting, lets open
/// requests finish (up to `limits.shutdown_grace`) and closes idle connections.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServeLimits,
    shutdown: CancellationToken,
) {
    let mut connections: JoinSet<()> = JoinSet::new();
    let registry = Arc::new(Registry::default());
    let sockets = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let (closing_tx, closing_rx) = watch::channel(false);
    let mut last_accept_warning: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok((stream, peer)) => (stream, peer),
            // The peer gave up between SYN and accept: nothing to do.
            Err(e) if is_per_connection(&e) => continue,
            Err(e) => {
                // Throttled: a descriptor shortage produces one error per pending connection.
                if last_accept_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(5)) {
                    tracing::warn!(
                        "accept error: {e}; retrying (check server.max_connections against the \
                         open-files limit)"
                    );
                    last_accept_warning = Some(Instant::now());
                }
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        // Finished connections' results are not needed; reaping keeps the set small.
        while connections.try_join_next().is_some() {}
        // A slot is an open socket: it is given back when the connection's task has closed it,
        // so the descriptors in use never exceed the cap, evictions included.
        let slot = match sockets.clone().try_acquire_owned() {
            Ok(slot) => Some(slot),
            Err(_) if registry.evict_longest_waiting() => {
                // The evicted connection closes as soon as its task runs.
                tokio::time::timeout(EVICTION_WAIT, sockets.clone().acquire_owned())
                    .await
                    .ok()
                    .and_then(Result::ok)
            }
            Err(_) => None,
        };
        let Some(slot) = slot else {
            metrics::counter!(names::HTTP_CONNECTIONS_REFUSED).increment(1);
            // A fresh socket's send buffer is empty, so this small write does not block; if it
            // does not fit, the client sees a closed connection, which is also a refusal.
            let _ = stream.try_write(&BUSY_RESPONSE);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        connections.spawn(serve_connection(
            stream,
            peer,
            router.clone(),
            limits,
            closing_rx.clone(),
            registry.clone(),
            slot,
        ));
    }
    drop(listener);
    let _ = closing_tx.send(true);
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(limits.shutdown_grace, drain)
        .await
        .is_err()
    {
        tracing::warn!(
            open = connections.len(),
            "requests still open after server.shutdown_grace_secs: closing their connections"
        );
        connections.shutdown().await;
    }
}

/// Errors about one connection, after which accepting the next works at once.
fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted | WouldBlock
    )
}

/// The open connections, with their phases, for the cap and for eviction at it.
#[derive(Default)]
struct Registry {
    inner: std::sync::Mutex<RegistryInner>,
}

#[derive(Default)]
struct RegistryInner {
    next_id: u64,
    open: std::collections::HashMap<u64, Registered>,
}

struct Registered {
    phase: watch::Receiver<Phase>,
    evict: Arc<tokio::sync::Notify>,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, RegistryInner> {
        // The map stays consistent even if a holder panicked (each change is one call).
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn register(&self, phase: watch::Receiver<Phase>) -> (u64, Arc<tokio::sync::Notify>) {
        let evict = Arc::new(tokio::sync::Notify::new());
        let mut inner = self.lock();
        inner.next_id += 1;
        let id = inner.next_id;
        inner.open.insert(
            id,
            Registered {
                phase,
                evict: evict.clone(),
            },
        );
        (id, evict)
    }

    fn reinstate(&self, id: u64, phase: watch::Receiver<Phase>, evict: Arc<tokio::sync::Notify>) {
        self.lock().open.insert(id, Registered { phase, evict });
    }

    fn remove(&self, id: u64) {
        self.lock().open.remove(&id);
    }

    /// Tells the connection that has waited longest without a request in progress to close,
    /// and stops counting it; `false` if every connection has a request in progress.
    fn evict_longest_waiting(&self) -> bool {
        let mut inner = self.lock();
        let oldest = inner
            .open
            .iter()
            .filter_map(|(id, c)| match *c.phase.borrow() {
                Phase::Waiting { since, .. } | Phase::Reading { since } => Some((since, *id)),
                Phase::Busy => None,
            })
            .min();
        let Some((_, id)) = oldest else {
            return false;
        };
        if let Some(c) = inner.open.remove(&id) {
            // A stored permit: the connection sees it even if it is not waiting on it yet.
            c.evict.notify_one();
        }
        true
    }
}

/// Removes a connection from the registry however its task ends.
struct Deregister {
    registry: Arc<Registry>,
    id: u64,
}

impl Drop for Deregister {
    fn drop(&mut self) {
        self.registry.remove(self.id);
    }
}

/// Where a connection is between requests, as its watchdog sees it.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// No request in progress since `since`; `first`: nothing was served on it yet.
    Waiting { since: Instant, first: bool },
    /// Bytes of a request arrived at `since`, its headers are not complete.
    Reading { since: Instant },
    /// A request is in the router.
    Busy,
}

impl Phase {
    fn deadline(self, limits: &ServeLimits) -> Option<(Instant, &'static str)> {
        match self {
            Phase::Waiting { since, first: true } | Phase::Reading { since } => {
                Some((since + limits.header_read, "header_timeout"))
            }
            Phase::Waiting {
                since,
                first: false,
            } => Some((since + limits.idle, "idle_timeout")),
            Phase::Busy => None,
        }
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: std::net::SocketAddr,
    router: Router,
    limits: ServeLimits,
    mut closing: watch::Receiver<bool>,
    registry: Arc<Registry>,
    // A parameter, so dropped after the locals: after the socket (moved into one) is closed.
    _slot: tokio::sync::OwnedSemaphorePermit,
) {
    let phase = Arc::new(watch::Sender::new(Phase::Waiting {
        since: Instant::now(),
        first: true,
    }));
    let mut watch_phase = phase.subscribe();
    let (id, evict) = registry.register(phase.subscribe());
    let _deregister = Deregister {
        registry: registry.clone(),
        id,
    };
    let io = TokioIo::new(Watched {
        io: stream,
        phase: phase.clone(),
    });
    let service_phase = phase.clone();
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let router = router.clone();
        let phase = service_phase.clone();
        phase.send_replace(Phase::Busy);
        async move {
            let mut request =
                request.map(|body| Body::new(DeadlineBody::new(body, limits.body_read)));
            // Who is on the other end (the sign-in slow-down counts per address).
            request
                .extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            let response = router.oneshot(request).await;
            phase.send_replace(Phase::Waiting {
                since: Instant::now(),
                first: false,
            });
            Ok::<_, Infallible>(response.unwrap_or_else(|e| match e {}))
        }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        // A client that sent its whole request and closed its side still has it handled (and
        // answered, if it still listens): Stripe's delivery is complete, so is ours. Without
        // this, hyper drops the handler at the end of the stream, at any point of its work.
        .half_close(true)
        .serve_connection(io, service)
        // GraphQL subscriptions upgrade to a WebSocket: the connection then belongs to the
        // subscription's task (this function returns once the upgrade is handed over).
        .with_upgrades();
    tokio::pin!(connection);
    let mut shutting_down = false;
    loop {
        let deadline = watch_phase.borrow_and_update().deadline(&limits);
        let sleep_until = deadline.map(|(at, _)| at);
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!("connection ended: {e}");
                }
                return;
            }
            _ = sleep_or_never(sleep_until) => {
                // The phase may have moved while the timer fired: only a still-due deadline closes.
                let current = watch_phase.borrow().deadline(&limits);
                if let Some((at, reason)) = current
                    && at <= Instant::now()
                {
                    metrics::counter!(names::HTTP_CONNECTIONS_CLOSED, "reason" => reason)
                        .increment(1);
                    tracing::debug!(reason, "closing a connection");
                    return;
                }
            }
            changed = watch_phase.changed() => {
                // The sender lives as long as this function; an error cannot happen, but would
                // mean no more phase changes, so stop watching rather than spin.
                if changed.is_err() {
                    return;
                }
            }
            _ = evict.notified() => {
                // Its request may have started since it was chosen: then it stays, counted again.
                if matches!(*watch_phase.borrow(), Phase::Busy) {
                    registry.reinstate(id, phase.subscribe(), evict.clone());
                    continue;
                }
                metrics::counter!(names::HTTP_CONNECTIONS_CLOSED, "reason" => "evicted")
                    .increment(1);
                tracing::debug!("closing a waiting connection for a new one (server.max_connections)");
                return;
            }
            _ = closing.changed(), if !shutting_down => {
                shutting_down = true;
                // Idle connections close now; a request in progress finishes first. One that is
                // still sending its headers is closed by its deadline.
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

async fn sleep_or_never(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The socket, noting when a request's first bytes arrive (waiting → reading).
struct Watched {
    io: TcpStream,
    phase: Arc<watch::Sender<Phase>>,
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.io).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.phase.send_if_modified(|p| match p {
                Phase::Waiting { .. } => {
                    *p = Phase::Reading {
                        since: Instant::now(),
                    };
                    true
                }
                _ => false,
            });
        }
        result
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// A request body that must be complete by a deadline set when the headers arrived (a total
/// deadline, not one per chunk: a drip of one byte a second would reset a per-chunk timer).
pub struct DeadlineBody {
    inner: Incoming,
    timeout: Duration,
    deadline: Pin<Box<Sleep>>,
    expired: bool,
}

impl DeadlineBody {
    fn new(inner: Incoming, timeout: Duration) -> Self {
        DeadlineBody {
            inner,
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            expired: false,
        }
    }
}

impl hyper::body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = BodyReadError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyReadError>>> {
        let this = self.get_mut();
        if this.expired {
            return Poll::Ready(None);
        }
        // The deadline first: a body that always has a little data ready must not outrun it.
        if !this.inner.is_end_stream() && this.deadline.as_mut().poll(cx).is_ready() {
            this.expired = true;
            return Poll::Ready(Some(Err(BodyReadError::TimedOut(this.timeout))));
        }
        Pin::new(&mut this.inner)
            .poll_frame(cx)
            .map(|frame| frame.map(|f| f.map_err(BodyReadError::Broken)))
    }

    fn is_end_stream(&self) -> bool {
        self.expired || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
