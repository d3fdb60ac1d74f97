//! What a running handler reports to its caller — progress and log messages — and whether that
//! caller is still waiting. MCP's rules decide what reaches the wire, here and nowhere else:
//! progress only for a request that carried a progress token (echoed), log messages only at or
//! above the level the request opted into. A handler just reports; every binding calls these.

use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

/// The severity of a log message: RFC 5424's levels as MCP names them, least severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    Debug,
    Info,
    Notice,
    Warning,
    Error,
    Critical,
    Alert,
    Emergency,
}

impl LogLevel {
    pub const ALL: [LogLevel; 8] = [
        LogLevel::Debug,
        LogLevel::Info,
        LogLevel::Notice,
        LogLevel::Warning,
        LogLevel::Error,
        LogLevel::Critical,
        LogLevel::Alert,
        LogLevel::Emergency,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Notice => "notice",
            LogLevel::Warning => "warning",
            LogLevel::Error => "error",
            LogLevel::Critical => "critical",
            LogLevel::Alert => "alert",
            LogLevel::Emergency => "emergency",
        }
    }

    /// The level MCP names `name` (exactly, lowercase).
    pub fn parse(name: &str) -> Option<LogLevel> {
        LogLevel::ALL.into_iter().find(|l| l.as_str() == name)
    }

    /// The level a handler named, in any language: else `INVALID_ARGUMENTS` listing the names.
    pub fn named(name: &str) -> crate::Result<LogLevel> {
        LogLevel::parse(name).ok_or_else(|| {
            crate::Error::new(crate::ErrorKind::InvalidArguments, format!("log level {name:?} is not one of {}", LogLevel::names()))
        })
    }

    /// The names, for an error that lists them.
    pub fn names() -> String {
        LogLevel::ALL.map(LogLevel::as_str).join(", ")
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A notification a callee sent while it worked on a call, as a mesh caller receives it.
#[derive(Debug, Clone, PartialEq)]
pub enum Notification {
    /// `notifications/progress`.
    Progress { progress: f64, total: Option<f64>, message: Option<String> },
    /// `notifications/message`.
    Log { level: LogLevel, logger: Option<String>, data: Value },
}

impl Notification {
    /// The notification as the JSON a binding hands its language, the same in every one:
    /// `{"kind": "progress", "progress", "total"?, "message"?}` or
    /// `{"kind": "log", "level", "logger"?, "data"}`.
    pub fn to_json(&self) -> Value {
        let mut json = match self {
            Notification::Progress { progress, total, message } => {
                let mut json = serde_json::json!({"kind": "progress", "progress": progress});
                if let Some(total) = total {
                    json["total"] = (*total).into();
                }
                if let Some(message) = message {
                    json["message"] = message.as_str().into();
                }
                json
            }
            Notification::Log { level, data, .. } => serde_json::json!({"kind": "log", "level": level.as_str(), "data": data}),
        };
        if let Notification::Log { logger: Some(logger), .. } = self {
            json["logger"] = logger.as_str().into();
        }
        json
    }

    /// Reads a JSON-RPC notification; `None` for one that is neither progress nor a log message
    /// (or is malformed), which a caller ignores.
    pub fn from_message(message: &Value) -> Option<Notification> {
        let params = message.get("params")?;
        let text = |key: &str| params.get(key).and_then(Value::as_str).map(str::to_owned);
        match message.get("method")?.as_str()? {
            "notifications/progress" => Some(Notification::Progress {
                progress: params.get("progress")?.as_f64()?,
                total: params.get("total").and_then(Value::as_f64),
                message: text("message"),
            }),
            "notifications/message" => Some(Notification::Log {
                level: LogLevel::parse(params.get("level")?.as_str()?)?,
                logger: text("logger"),
                data: params.get("data").cloned().unwrap_or(Value::Null),
            }),
            _ => None,
        }
    }
}

/// Receives the notifications of the calls made with a context that carries it
/// ([`crate::context::RequestContext::on_notification`]), and says which ones those calls ask
/// their callee for.
#[derive(Clone)]
pub struct NotificationObserver {
    observe: Arc<dyn Fn(Notification) + Send + Sync>,
    progress: bool,
    log_level: Option<LogLevel>,
}

impl NotificationObserver {
    /// An observer of everything: progress and log messages from `debug` up.
    pub fn new(observe: impl Fn(Notification) + Send + Sync + 'static) -> Self {
        NotificationObserver { observe: Arc::new(observe), progress: true, log_level: Some(LogLevel::Debug) }
    }

    /// An observer of progress alone: calls made for it ask their callee for no log messages.
    pub fn progress(observe: impl Fn(Notification) + Send + Sync + 'static) -> Self {
        NotificationObserver { observe: Arc::new(observe), progress: true, log_level: None }
    }

    /// Relays what a dependency call's callee reports to `reporter`'s caller, asking the callee
    /// for no more than that caller lets through (progress only when it carried a token, log
    /// messages from its level up); `None` when it lets nothing through. Notifications are
    /// relayed as they arrive, so in order, each under the caller's own progress token.
    pub fn relaying(reporter: Arc<Reporter>) -> Option<Self> {
        let (progress, log_level) = (reporter.wants_progress(), reporter.log_level());
        if !progress && log_level.is_none() {
            return None;
        }
        let observe = move |notification: Notification| match notification {
            Notification::Progress { progress, total, message } => {
                reporter.progress(progress, total, message.as_deref());
            }
            Notification::Log { level, logger, data } => {
                reporter.log(level, &data, logger.as_deref());
            }
        };
        Some(NotificationObserver { observe: Arc::new(observe), progress, log_level })
    }

    /// The same observer, taking log messages at or above `level` only (`None`: none).
    pub fn with_log_level(mut self, level: Option<LogLevel>) -> Self {
        self.log_level = level;
        self
    }

    pub fn notify(&self, notification: Notification) {
        (self.observe)(notification)
    }

    /// Whether calls made for this observer ask for progress.
    pub fn wants_progress(&self) -> bool {
        self.progress
    }

    /// The least severe level calls made for this observer ask for, if any.
    pub fn log_level(&self) -> Option<LogLevel> {
        self.log_level
    }
}

impl fmt::Debug for NotificationObserver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NotificationObserver").field("progress", &self.progress).field("log_level", &self.log_level).finish()
    }
}

/// The request-scoped sink of one inbound request: where its handler's progress and log
/// messages go (as serialized JSON-RPC notifications, to the response stream; or, for a call
/// an agent makes to a tool it serves itself, to the calling handler's observer), and the
/// request's cancellation, which fires when that stream closes before the answer, when the
/// caller sends `notifications/cancelled`, or at the request's deadline.
#[derive(Debug)]
pub struct Reporter {
    /// The request's `_meta.progressToken` (a string or an integer), as its JSON.
    progress_token: Option<Box<RawValue>>,
    /// The least severe level the request let through; `None`: no log messages.
    log_level: Option<LogLevel>,
    /// `None` when the request lets nothing through.
    out: Option<Sink>,
    /// When the caller stops waiting: the request counts as cancelled from then on.
    deadline: Option<Instant>,
    cancelled: AtomicBool,
    cancel: Notify,
    /// What a binding runs once the request is cancelled (cancels a task, aborts a signal).
    on_cancel: OnCancel,
}

/// The callbacks [`Reporter::on_cancel`] registered, and the timer that cancels the request at
/// its deadline, started with the first of them (a request no one watches needs no timer) on
/// the runtime that served the request (a binding registers from its own threads).
#[derive(Default)]
struct OnCancel {
    callbacks: std::sync::Mutex<Vec<Box<dyn FnOnce() + Send>>>,
    runtime: Option<tokio::runtime::Handle>,
    timer: std::sync::OnceLock<tokio::task::AbortHandle>,
}

impl fmt::Debug for OnCancel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OnCancel")
    }
}

impl Drop for OnCancel {
    fn drop(&mut self) {
        if let Some(timer) = self.timer.get() {
            timer.abort();
        }
    }
}

/// Where a reporter's notifications go.
#[derive(Debug)]
enum Sink {
    /// The response stream, as JSON-RPC messages.
    Stream(mpsc::UnboundedSender<Bytes>),
    /// The handler that made an in-process call, as they are.
    Observer(NotificationObserver),
}

impl Reporter {
    /// A sink for a request with this progress token and log level; the receiver (when either
    /// lets anything through) gets each notification as a JSON-RPC message.
    pub fn new(progress_token: Option<Box<RawValue>>, log_level: Option<LogLevel>) -> (Reporter, Option<mpsc::UnboundedReceiver<Bytes>>) {
        let (out, notifications) = match progress_token.is_some() || log_level.is_some() {
            true => {
                let (tx, rx) = mpsc::unbounded_channel();
                (Some(Sink::Stream(tx)), Some(rx))
            }
            false => (None, None),
        };
        let reporter = Reporter {
            progress_token,
            log_level,
            out,
            deadline: None,
            cancelled: AtomicBool::new(false),
            cancel: Notify::new(),
            on_cancel: OnCancel::default(),
        };
        (reporter, notifications)
    }

    /// The sink of a call an agent makes to a tool it serves itself: what the callee reports
    /// goes to `observer` (the calling handler's own, or the relay to its caller), if any.
    pub fn observed(observer: Option<NotificationObserver>) -> Reporter {
        Reporter {
            progress_token: None,
            log_level: observer.as_ref().and_then(NotificationObserver::log_level),
            out: observer.map(Sink::Observer),
            deadline: None,
            cancelled: AtomicBool::new(false),
            cancel: Notify::new(),
            on_cancel: OnCancel::default(),
        }
    }

    /// The request counts as cancelled once `deadline` passes: its caller no longer waits.
    pub fn with_deadline(mut self, deadline: Option<Instant>) -> Reporter {
        self.deadline = deadline;
        self.on_cancel.runtime = deadline.and_then(|_| tokio::runtime::Handle::try_current().ok());
        self
    }

    /// Reports progress: sent only when the request carried a progress token and is not
    /// cancelled; a non-finite `progress` is not sent (JSON has no NaN), nor is a non-finite
    /// `total` (it is left out). Returns whether it was sent.
    pub fn progress(&self, progress: f64, total: Option<f64>, message: Option<&str>) -> bool {
        #[derive(Serialize)]
        struct Params<'a> {
            #[serde(rename = "progressToken")]
            token: &'a RawValue,
            progress: f64,
            #[serde(skip_serializing_if = "Option::is_none")]
            total: Option<f64>,
            #[serde(skip_serializing_if = "Option::is_none")]
            message: Option<&'a str>,
        }
        if !self.wants_progress() || !progress.is_finite() || self.is_cancelled() {
            return false;
        }
        let total = total.filter(|t| t.is_finite());
        match (&self.out, self.progress_token.as_deref()) {
            (Some(Sink::Observer(observer)), _) => {
                observer.notify(Notification::Progress { progress, total, message: message.map(str::to_owned) });
                true
            }
            (Some(Sink::Stream(out)), Some(token)) => send(out, "notifications/progress", &Params { token, progress, total, message }),
            _ => false,
        }
    }

    /// Logs `data` (any JSON) at `level`: sent only at or above the request's level, and when
    /// the request is not cancelled. Returns whether it was sent.
    pub fn log(&self, level: LogLevel, data: &Value, logger: Option<&str>) -> bool {
        #[derive(Serialize)]
        struct Params<'a> {
            level: &'static str,
            #[serde(skip_serializing_if = "Option::is_none")]
            logger: Option<&'a str>,
            data: &'a Value,
        }
        if self.log_level.is_none_or(|least| level < least) || self.is_cancelled() {
            return false;
        }
        match &self.out {
            Some(Sink::Observer(observer)) => {
                observer.notify(Notification::Log { level, logger: logger.map(str::to_owned), data: data.clone() });
                true
            }
            Some(Sink::Stream(out)) => send(out, "notifications/message", &Params { level: level.as_str(), logger, data }),
            None => false,
        }
    }

    /// Sends `message`, one JSON-RPC message of the server's own (a request to the client), on
    /// the response stream, in order with the notifications. False when the request has no
    /// stream (an in-process call) or is cancelled: nothing is sent then.
    pub fn send_to_client(&self, message: Bytes) -> bool {
        match &self.out {
            Some(Sink::Stream(out)) if !self.is_cancelled() => out.send(message).is_ok(),
            _ => false,
        }
    }

    /// Whether the request lets progress through: it carried a progress token (in process: the
    /// calling handler's observer asks for progress).
    pub fn wants_progress(&self) -> bool {
        match &self.out {
            Some(Sink::Observer(observer)) => observer.wants_progress(),
            _ => self.progress_token.is_some(),
        }
    }

    /// The least severe level that reaches the caller, if any does.
    pub fn log_level(&self) -> Option<LogLevel> {
        self.log_level
    }

    /// The caller went away: later reports are dropped, and [`Reporter::cancelled`] returns.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
        self.cancel.notify_waiters();
        let callbacks = std::mem::take(&mut *self.on_cancel.callbacks.lock().expect("on-cancel lock"));
        for callback in callbacks {
            callback();
        }
    }

    /// Runs `callback` once when the request is cancelled (at once if it is already), on the
    /// thread that cancels it: it must not block. At most once; never after the reporter is
    /// dropped. A request with a deadline is cancelled at it, from a timer started here.
    pub fn on_cancel(self: &Arc<Self>, callback: impl FnOnce() + Send + 'static) {
        {
            let mut callbacks = self.on_cancel.callbacks.lock().expect("on-cancel lock");
            // Checked under the lock that `cancel` takes after setting the flag: a callback is
            // either run by `cancel` or sees the flag here, never neither.
            if !self.is_cancelled() {
                callbacks.push(Box::new(callback));
                drop(callbacks);
                self.start_deadline_timer();
                return;
            }
        }
        callback();
    }

    fn start_deadline_timer(self: &Arc<Self>) {
        let (Some(deadline), Some(runtime)) = (self.deadline, &self.on_cancel.runtime) else { return };
        if self.on_cancel.timer.get().is_some() {
            return;
        }
        let reporter = Arc::downgrade(self);
        let timer = runtime.spawn(async move {
            tokio::time::sleep_until(deadline).await;
            if let Some(reporter) = reporter.upgrade() {
                reporter.cancel();
            }
        });
        if let Err(timer) = self.on_cancel.timer.set(timer.abort_handle()) {
            timer.abort();
        }
    }

    /// Whether the request's caller cancelled it (closed its stream, sent
    /// `notifications/cancelled`) before its deadline, if any, passed.
    pub fn cancelled_by_caller(&self) -> bool {
        self.cancelled.load(Ordering::Acquire) && self.deadline.is_none_or(|d| Instant::now() < d)
    }

    /// Whether the request was cancelled, or its deadline passed.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire) || self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// Returns once the request is cancelled (at its deadline at the latest).
    pub async fn cancelled(&self) {
        match self.deadline {
            Some(deadline) => tokio::select! {
                () = self.signalled() => {}
                () = tokio::time::sleep_until(deadline) => {}
            },
            None => self.signalled().await,
        }
    }

    /// Returns once [`Reporter::cancel`] was called.
    async fn signalled(&self) {
        loop {
            let notified = self.cancel.notified();
            tokio::pin!(notified);
            // Registered before the check, so a cancel between the two is not missed.
            notified.as_mut().enable();
            if self.cancelled.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }
}

/// Cancels a request when dropped while armed: its answer was abandoned (the client closed the
/// connection while the handler ran; the in-process call's future was dropped).
pub struct CancelUnlessAnswered(Option<Arc<Reporter>>);

impl CancelUnlessAnswered {
    pub fn new(reporter: Arc<Reporter>) -> Self {
        CancelUnlessAnswered(Some(reporter))
    }

    /// The answer was given (or will be, by whoever holds the reporter now): nothing to cancel.
    pub fn answered(mut self) {
        self.0 = None;
    }
}

impl Drop for CancelUnlessAnswered {
    fn drop(&mut self) {
        if let Some(reporter) = self.0.take() {
            reporter.cancel();
        }
    }
}

/// Sends one JSON-RPC notification to the response stream; false once the stream is gone.
fn send(out: &mpsc::UnboundedSender<Bytes>, method: &str, params: &impl Serialize) -> bool {
    #[derive(Serialize)]
    struct Message<'a, P> {
        jsonrpc: &'static str,
        method: &'a str,
        params: &'a P,
    }
    let json = serde_json::to_vec(&Message { jsonrpc: "2.0", method, params }).expect("a notification always serializes");
    out.send(Bytes::from(json)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn token(json: &str) -> Option<Box<RawValue>> {
        Some(RawValue::from_string(json.to_owned()).unwrap())
    }

    fn received(rx: &mut mpsc::UnboundedReceiver<Bytes>) -> Vec<Value> {
        std::iter::from_fn(|| rx.try_recv().ok()).map(|b| serde_json::from_slice(&b).unwrap()).collect()
    }

    #[test]
    fn progress_needs_a_token_and_echoes_it() {
        let (reporter, rx) = Reporter::new(None, None);
        assert!(rx.is_none());
        assert!(!reporter.progress(1.0, None, None));
        let (reporter, rx) = Reporter::new(token(r#""t-1""#), None);
        let mut rx = rx.unwrap();
        assert!(reporter.progress(1.0, Some(4.0), Some("one of four")));
        assert!(reporter.progress(2.0, Some(f64::NAN), None));
        assert!(!reporter.progress(f64::NAN, None, None));
        assert!(!reporter.log(LogLevel::Emergency, &json!("x"), None), "no level opted into: no log message");
        assert_eq!(
            received(&mut rx),
            [
                json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": "t-1", "progress": 1.0, "total": 4.0, "message": "one of four"}}),
                json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": "t-1", "progress": 2.0}}),
            ]
        );
    }

    #[test]
    fn log_messages_pass_at_or_above_the_level() {
        let (reporter, rx) = Reporter::new(None, Some(LogLevel::Warning));
        let mut rx = rx.unwrap();
        assert!(!reporter.log(LogLevel::Info, &json!("quiet"), None));
        assert!(reporter.log(LogLevel::Warning, &json!({"disk": 91}), Some("store")));
        assert!(reporter.log(LogLevel::Emergency, &json!("loud"), None));
        assert!(!reporter.progress(1.0, None, None), "no token: no progress");
        assert_eq!(
            received(&mut rx),
            [
                json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "warning", "logger": "store", "data": {"disk": 91}}}),
                json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "emergency", "data": "loud"}}),
            ]
        );
    }

    #[tokio::test]
    async fn a_cancelled_request_reports_nothing_more_and_wakes_its_waiters() {
        let (reporter, rx) = Reporter::new(token("7"), Some(LogLevel::Debug));
        let mut rx = rx.unwrap();
        let reporter = Arc::new(reporter);
        let waiter = tokio::spawn({
            let reporter = reporter.clone();
            async move { reporter.cancelled().await }
        });
        reporter.cancel();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await.expect("woken").unwrap();
        assert!(!reporter.progress(1.0, None, None) && !reporter.log(LogLevel::Error, &json!("late"), None));
        assert!(received(&mut rx).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn cancel_callbacks_run_once_when_cancelled_or_at_the_deadline() {
        let counter = || {
            let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let bump = {
                let count = count.clone();
                move || {
                    count.fetch_add(1, Ordering::SeqCst);
                }
            };
            (count, bump)
        };
        let reporter = Arc::new(Reporter::new(None, None).0);
        let (count, bump) = counter();
        reporter.on_cancel(bump.clone());
        assert_eq!(count.load(Ordering::SeqCst), 0);
        reporter.cancel();
        reporter.cancel();
        assert_eq!(count.load(Ordering::SeqCst), 1, "once, however often it is cancelled");
        reporter.on_cancel(bump);
        assert_eq!(count.load(Ordering::SeqCst), 2, "registered after the cancellation: run at once");

        let deadline = Instant::now() + std::time::Duration::from_millis(300);
        let reporter = Arc::new(Reporter::new(None, None).0.with_deadline(Some(deadline)));
        let (count, bump) = counter();
        reporter.on_cancel(bump);
        tokio::time::sleep(std::time::Duration::from_millis(299)).await;
        assert!(!reporter.is_cancelled() && count.load(Ordering::SeqCst) == 0);
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        assert!(reporter.is_cancelled());
        assert_eq!(count.load(Ordering::SeqCst), 1, "the deadline cancels");
    }

    #[test]
    fn a_mesh_caller_reads_progress_and_log_messages() {
        let progress = json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": 1, "progress": 3, "total": 10, "message": "m"}});
        assert_eq!(
            Notification::from_message(&progress),
            Some(Notification::Progress { progress: 3.0, total: Some(10.0), message: Some("m".into()) })
        );
        let log = json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "error", "data": [1]}});
        assert_eq!(Notification::from_message(&log), Some(Notification::Log { level: LogLevel::Error, logger: None, data: json!([1]) }));
        assert_eq!(Notification::from_message(&json!({"method": "notifications/message", "params": {"level": "loud"}})), None);
        assert_eq!(Notification::from_message(&json!({"method": "notifications/cancelled", "params": {}})), None);
        assert_eq!(
            Notification::Progress { progress: 3.0, total: Some(10.0), message: Some("m".into()) }.to_json(),
            json!({"kind": "progress", "progress": 3.0, "total": 10.0, "message": "m"})
        );
        assert_eq!(
            Notification::Log { level: LogLevel::Error, logger: Some("l".into()), data: json!([1]) }.to_json(),
            json!({"kind": "log", "level": "error", "logger": "l", "data": [1]})
        );
    }
}
