//! When a connection has outlived its welcome: the watchdog of one connection, fed by its
//! socket (bytes read) and its service (requests in flight), cuts it when a request head is too
//! slow, when it sat idle too long, or when the certificate that opened it expires.

use super::limits::ServerLimits;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

/// Why a connection was cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cut {
    /// An HTTP/1.1 request head was still incomplete after the header timeout.
    HeaderTimeout,
    /// No request in flight for the idle timeout.
    Idle,
    /// The peer's certificate, or one of its chain, expired.
    CertificateExpired,
}

impl Cut {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Cut::HeaderTimeout => "the request headers did not arrive within the header timeout",
            Cut::Idle => "no request within the idle timeout",
            Cut::CertificateExpired => "the peer's certificate expired",
        }
    }
}

struct State {
    in_flight: usize,
    /// When the last request finished (or the connection opened).
    idle_since: Instant,
    /// When bytes of a request head began arriving, while no request was in flight.
    head_started: Option<Instant>,
}

/// What one connection is doing, as far as its limits care.
pub(crate) struct Activity {
    state: Mutex<State>,
    changed: Notify,
    /// HTTP/1.1: bytes arriving with no request in flight are the start of a request head.
    /// (HTTP/2 peers send pings and settings while idle; an unfinished stream counts as idle.)
    times_heads: bool,
}

/// A request in flight on the connection, until dropped.
pub(crate) struct InFlight(Arc<Activity>);

impl Activity {
    pub(crate) fn new(times_heads: bool) -> Arc<Activity> {
        let state = State { in_flight: 0, idle_since: Instant::now(), head_started: None };
        Arc::new(Activity { state: Mutex::new(state), changed: Notify::new(), times_heads })
    }

    fn update(&self, change: impl FnOnce(&mut State)) {
        change(&mut self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
        self.changed.notify_waiters();
    }

    fn saw_bytes(&self) {
        if !self.times_heads {
            return;
        }
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if state.in_flight == 0 && state.head_started.is_none() {
            state.head_started = Some(Instant::now());
            drop(state);
            self.changed.notify_waiters();
        }
    }

    /// A request's head arrived and it is being served.
    pub(crate) fn request_started(self: &Arc<Self>) -> InFlight {
        self.update(|state| {
            state.in_flight += 1;
            state.head_started = None;
        });
        InFlight(self.clone())
    }

    /// The earliest limit this connection will reach as things stand, if any.
    fn next_cut(&self, limits: &ServerLimits, expiry: Option<Instant>) -> Option<(Instant, Cut)> {
        let state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut candidates = vec![expiry.map(|at| (at, Cut::CertificateExpired))];
        if state.in_flight == 0 {
            candidates.push(Some((state.idle_since + limits.idle_timeout, Cut::Idle)));
            candidates.push(state.head_started.map(|at| (at + limits.header_timeout, Cut::HeaderTimeout)));
        }
        candidates.into_iter().flatten().min_by_key(|(at, _)| *at)
    }

    /// Resolves when the connection must be cut, and why.
    pub(crate) async fn until_cut(&self, limits: &ServerLimits, expiry: Option<Instant>) -> Cut {
        loop {
            // Listen before looking, so that a change in between is not missed.
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            match self.next_cut(limits, expiry) {
                Some((at, cut)) if at <= Instant::now() => return cut,
                Some((at, _)) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {}
                        () = changed => {}
                    }
                }
                None => changed.await,
            }
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.update(|state| {
            state.in_flight = state.in_flight.saturating_sub(1);
            if state.in_flight == 0 {
                state.idle_since = Instant::now();
            }
        });
    }
}

/// How long a connection cut by a limit has to finish its last answer before it is dropped.
pub(crate) const CUT_GRACE: Duration = Duration::from_secs(1);

/// What bounds the life of one served connection.
pub(crate) struct Lifetime<'a> {
    pub activity: &'a Activity,
    pub limits: &'a ServerLimits,
    /// When the peer's certificate chain expires.
    pub expiry: Option<Instant>,
    pub remote: SocketAddr,
    /// The listener's stop signal: then in-flight requests finish (the server's shutdown bounds it).
    pub stopped: Option<watch::Receiver<bool>>,
}

impl Lifetime<'_> {
    /// Serves `conn` until it ends by itself, a limit cuts it (it gets [`CUT_GRACE`] to finish),
    /// or the listener stops.
    pub(crate) async fn supervise<C, E>(self, mut conn: Pin<&mut C>, graceful_shutdown: impl FnOnce(Pin<&mut C>))
    where
        C: Future<Output = Result<(), E>>,
        E: std::fmt::Display,
    {
        let remote = self.remote;
        let stopping = async {
            match self.stopped {
                Some(mut stopped) => {
                    let _ = stopped.wait_for(|stopped| *stopped).await;
                }
                None => std::future::pending().await,
            }
        };
        let cut = tokio::select! {
            ended = conn.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(%remote, "connection ended: {e}");
                }
                return;
            }
            cut = self.activity.until_cut(self.limits, self.expiry) => Some(cut),
            () = stopping => None,
        };
        graceful_shutdown(conn.as_mut());
        match cut {
            Some(cut) => {
                tracing::debug!(%remote, "closing the connection: {}", cut.describe());
                if tokio::time::timeout(CUT_GRACE, conn).await.is_err() {
                    tracing::debug!(%remote, "the connection did not close within {CUT_GRACE:?}: dropped");
                }
            }
            None => {
                let _ = conn.await;
            }
        }
    }
}

/// A connection's socket that tells its [`Activity`] when bytes arrive.
pub(crate) struct Watched<IO> {
    io: IO,
    activity: Arc<Activity>,
}

impl<IO> Watched<IO> {
    pub(crate) fn new(io: IO, activity: Arc<Activity>) -> Self {
        Watched { io, activity }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Watched<IO> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
        if buf.filled().len() > before {
            this.activity.saw_bytes();
        }
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Watched<IO> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[std::io::IoSlice<'_>]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ServerLimits {
        ServerLimits { header_timeout: Duration::from_secs(1), idle_timeout: Duration::from_secs(5), ..ServerLimits::default() }
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_is_cut_after_the_idle_timeout_and_a_slow_head_sooner() {
        let activity = Activity::new(true);
        let started = Instant::now();
        assert_eq!(activity.until_cut(&limits(), None).await, Cut::Idle);
        assert_eq!(started.elapsed(), Duration::from_secs(5));

        let activity = Activity::new(true);
        let watchdog = {
            let activity = activity.clone();
            tokio::spawn(async move { activity.until_cut(&limits(), None).await })
        };
        tokio::time::sleep(Duration::from_secs(2)).await;
        activity.saw_bytes();
        assert_eq!(watchdog.await.unwrap(), Cut::HeaderTimeout);
        assert_eq!(started.elapsed(), Duration::from_secs(8), "one second after the head began");
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_is_never_idle_but_the_certificate_still_expires() {
        let activity = Activity::new(true);
        let in_flight = activity.request_started();
        let expiry = Instant::now() + Duration::from_secs(30);
        assert_eq!(activity.until_cut(&limits(), Some(expiry)).await, Cut::CertificateExpired);
        assert_eq!(Instant::now(), expiry);
        drop(in_flight);
        let started = Instant::now();
        assert_eq!(activity.until_cut(&limits(), None).await, Cut::Idle);
        assert_eq!(started.elapsed(), Duration::from_secs(5), "idle counts from the end of the last request");
    }
}
