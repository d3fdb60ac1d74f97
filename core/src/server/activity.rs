//! When a connection has outlived its welcome: the watchdog of one connection, fed by its
//! socket (bytes read) and its service (requests in flight), cuts it when a request head is too
//! slow, when it sat idle too long, or when the certificate that opened it expires.

use super::limits::ServerLimits;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
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
    /// Until when the watchdog ([`Activity::until_cut`]) sleeps, unless woken; `None` when it
    /// sleeps with no deadline, or is not running. A change wakes it only when it brings a cut
    /// before that: requests come and go without waking it.
    asleep_until: Option<Instant>,
}

/// What one connection is doing, as far as its limits care.
pub(crate) struct Activity {
    state: Mutex<State>,
    changed: Notify,
    /// HTTP/1.1: bytes arriving with no request in flight are the start of a request head.
    /// (HTTP/2 peers send pings and settings while idle; an unfinished stream counts as idle.)
    times_heads: bool,
    header_timeout: Duration,
    idle_timeout: Duration,
}

/// A request in flight on the connection, until dropped.
pub(crate) struct InFlight(Arc<Activity>);

impl Activity {
    pub(crate) fn new(times_heads: bool, limits: &ServerLimits) -> Arc<Activity> {
        let state = State { in_flight: 0, idle_since: Instant::now(), head_started: None, asleep_until: None };
        Arc::new(Activity {
            state: Mutex::new(state),
            changed: Notify::new(),
            times_heads,
            header_timeout: limits.header_timeout,
            idle_timeout: limits.idle_timeout,
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Wakes the watchdog if a cut is now due at `cut_at`, before it would wake on its own.
    fn wake_if_sooner(&self, state: MutexGuard<'_, State>, cut_at: Instant) {
        let sooner = state.asleep_until.is_none_or(|until| cut_at < until);
        drop(state);
        if sooner {
            self.changed.notify_waiters();
        }
    }

    fn saw_bytes(&self) {
        if !self.times_heads {
            return;
        }
        let mut state = self.state();
        if state.in_flight == 0 && state.head_started.is_none() {
            let now = Instant::now();
            state.head_started = Some(now);
            self.wake_if_sooner(state, now + self.header_timeout);
        }
    }

    /// A request's head arrived and it is being served. Its cuts only move later (none but the
    /// certificate's apply while a request is in flight), so the watchdog sleeps on.
    pub(crate) fn request_started(self: &Arc<Self>) -> InFlight {
        let mut state = self.state();
        state.in_flight += 1;
        state.head_started = None;
        drop(state);
        InFlight(self.clone())
    }

    /// The earliest limit this connection will reach as things stand, if any.
    fn next_cut(&self, state: &State, expiry: Option<Instant>) -> Option<(Instant, Cut)> {
        let idle = state.in_flight == 0;
        [
            expiry.map(|at| (at, Cut::CertificateExpired)),
            idle.then(|| (state.idle_since + self.idle_timeout, Cut::Idle)),
            state.head_started.filter(|_| idle).map(|at| (at + self.header_timeout, Cut::HeaderTimeout)),
        ]
        .into_iter()
        .flatten()
        .min_by_key(|(at, _)| *at)
    }

    /// Resolves when the connection must be cut, and why.
    pub(crate) async fn until_cut(&self, expiry: Option<Instant>) -> Cut {
        loop {
            // Listen before looking, so that a change in between is not missed.
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let asleep_until = {
                let mut state = self.state();
                let now = Instant::now();
                let next = self.next_cut(&state, expiry);
                if let Some((_, cut)) = next.filter(|(at, _)| *at <= now) {
                    return cut;
                }
                // While no head has begun on an idle connection, sleep at most until a head
                // beginning now would time out: a head that begins later cuts later, and needs
                // no wake-up; nor does the end of a request, whose idle timeout is longer.
                let head_bound =
                    (self.times_heads && state.in_flight == 0 && state.head_started.is_none()).then(|| now + self.header_timeout);
                state.asleep_until = [next.map(|(at, _)| at), head_bound].into_iter().flatten().min();
                state.asleep_until
            };
            match asleep_until {
                Some(at) => {
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
        let mut state = self.0.state();
        state.in_flight = state.in_flight.saturating_sub(1);
        if state.in_flight == 0 {
            let now = Instant::now();
            state.idle_since = now;
            self.0.wake_if_sooner(state, now + self.0.idle_timeout);
        }
    }
}

/// How long a connection cut by a limit has to finish its last answer before it is dropped.
pub(crate) const CUT_GRACE: Duration = Duration::from_secs(1);

/// What bounds the life of one served connection.
pub(crate) struct Lifetime<'a> {
    pub activity: &'a Activity,
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
            cut = self.activity.until_cut(self.expiry) => Some(cut),
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
        let activity = Activity::new(true, &limits());
        let started = Instant::now();
        assert_eq!(activity.until_cut(None).await, Cut::Idle);
        assert_eq!(started.elapsed(), Duration::from_secs(5));

        let activity = Activity::new(true, &limits());
        let watchdog = {
            let activity = activity.clone();
            tokio::spawn(async move { activity.until_cut(None).await })
        };
        tokio::time::sleep(Duration::from_secs(2)).await;
        activity.saw_bytes();
        assert_eq!(watchdog.await.unwrap(), Cut::HeaderTimeout);
        assert_eq!(started.elapsed(), Duration::from_secs(8), "one second after the head began");
    }

    #[tokio::test(start_paused = true)]
    async fn a_watchdog_left_asleep_by_requests_still_cuts_on_time() {
        for head_begins in [true, false] {
            let activity = Activity::new(true, &limits());
            let started = Instant::now();
            let watchdog = {
                let activity = activity.clone();
                tokio::spawn(async move { activity.until_cut(None).await })
            };
            tokio::time::sleep(Duration::from_millis(500)).await;
            let in_flight = activity.request_started();
            // Far past the idle timeout: a connection with a request in flight is never idle.
            tokio::time::sleep(Duration::from_secs(10)).await;
            drop(in_flight);
            tokio::time::sleep(Duration::from_secs(3)).await;
            if head_begins {
                activity.saw_bytes();
            }
            let cut = tokio::time::timeout(Duration::from_secs(60), watchdog).await.expect("the watchdog cuts").unwrap();
            let (expected, after) = if head_begins { (Cut::HeaderTimeout, 14_500) } else { (Cut::Idle, 15_500) };
            assert_eq!((cut, started.elapsed()), (expected, Duration::from_millis(after)));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_is_never_idle_but_the_certificate_still_expires() {
        let activity = Activity::new(true, &limits());
        let in_flight = activity.request_started();
        let expiry = Instant::now() + Duration::from_secs(30);
        assert_eq!(activity.until_cut(Some(expiry)).await, Cut::CertificateExpired);
        assert_eq!(Instant::now(), expiry);
        drop(in_flight);
        let started = Instant::now();
        assert_eq!(activity.until_cut(None).await, Cut::Idle);
        assert_eq!(started.elapsed(), Duration::from_secs(5), "idle counts from the end of the last request");
    }
}
