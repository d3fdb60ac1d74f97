//! The tasks an agent runs for its callers (the MCP tasks extension, SEP-2663): each owned by the
//! verified identity that created it and visible to it alone, at most [`Limits::per_caller`] of
//! them per identity and [`Limits::total`] of them for every identity together (so that many
//! identities cannot hold more memory than one bound allows), each dropped [`Limits::ttl`] after
//! its last change.
//!
//! A task id is 128 random bits: knowing one is the only way to name a task, and another
//! identity that names it is answered as if it did not exist.

use crate::report::Reporter;
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

/// How many tasks one identity may hold, how many the agent holds for all of them, and how
/// long a task is kept after its last change.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub(super) per_caller: usize,
    pub(super) total: usize,
    pub(super) ttl: Duration,
}

/// The default of [`Limits::total`] (the agent option `max_tasks`).
pub const DEFAULT_MAX_TASKS: usize = 4096;

impl Default for Limits {
    /// Enough for a client with many jobs in flight; a finished task's result stays half an hour.
    fn default() -> Self {
        Limits { per_caller: 128, total: DEFAULT_MAX_TASKS, ttl: Duration::from_secs(30 * 60) }
    }
}

/// A task's `statusMessage` is cut to this many bytes: a handler's chatty report must not make
/// every poll, or the store, large.
const MAX_STATUS_MESSAGE: usize = 1024;

/// How often a client is asked to poll `tasks/get`.
pub(super) const POLL_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Status {
    Working,
    InputRequired,
    Completed,
    Failed,
    Cancelled,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Working => "working",
            Status::InputRequired => "input_required",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
        }
    }

    pub(super) fn is_terminal(self) -> bool {
        matches!(self, Status::Completed | Status::Failed | Status::Cancelled)
    }
}

/// What a task is doing; changed by its runner, `tasks/update` and `tasks/cancel`.
struct State {
    status: Status,
    last_updated: SystemTime,
    /// When the task is dropped (its last change plus the TTL).
    expires: Instant,
    /// Completed: the tool's result. Failed: the JSON-RPC error.
    outcome: Option<Value>,
    /// What the handler reported last (progress, a log message), why it failed or was cancelled.
    message: Option<String>,
    /// Input required: the requests not answered yet, by key.
    pending: Map<String, Value>,
    /// The answers received for this round, by key.
    answers: Map<String, Value>,
}

pub(super) struct Task {
    id: String,
    owner: Arc<str>,
    created: SystemTime,
    ttl: Duration,
    state: Mutex<State>,
    /// Cancels the handler of the running round.
    pub(super) reporter: Arc<Reporter>,
    /// Woken when the last pending input request is answered.
    pub(super) answered: Notify,
    /// Marked at every change of the task, for the listeners of its status.
    changed: watch::Sender<()>,
}

impl Task {
    pub(super) fn id(&self) -> &str {
        &self.id
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("task state lock")
    }

    fn touch(&self, state: &mut State) {
        state.last_updated = SystemTime::now();
        state.expires = Instant::now() + self.ttl;
        self.changed.send_replace(());
    }

    /// Changes whenever the task does (its status, its message, its input requests).
    pub(super) fn watch(&self) -> watch::Receiver<()> {
        self.changed.subscribe()
    }

    /// The handler reported `message` (progress, a log message): the task's `statusMessage`
    /// until the next one; ignored once the task is finished.
    pub(super) fn report(&self, message: &str) {
        let mut state = self.state();
        if state.status.is_terminal() {
            return;
        }
        state.message = Some(cut(message));
        self.touch(&mut state);
    }

    /// The task's members as `tools/call` (CreateTaskResult) and `tasks/get` (DetailedTask) show
    /// them; `tasks/get` adds the result, the error or the input requests (`detailed`).
    pub(super) fn to_json(&self, detailed: bool) -> Value {
        let state = self.state();
        let mut task = json!({
            "taskId": self.id,
            "status": state.status.as_str(),
            "createdAt": rfc3339(self.created),
            "lastUpdatedAt": rfc3339(state.last_updated),
            "ttlMs": u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX),
            "pollIntervalMs": POLL_INTERVAL.as_millis() as u64,
        });
        if let Some(message) = &state.message {
            task["statusMessage"] = json!(message);
        }
        if detailed {
            match state.status {
                Status::Completed => task["result"] = state.outcome.clone().unwrap_or(Value::Null),
                Status::Failed => task["error"] = state.outcome.clone().unwrap_or(Value::Null),
                Status::InputRequired => task["inputRequests"] = Value::Object(state.pending.clone()),
                Status::Working | Status::Cancelled => {}
            }
        }
        task
    }

    /// The handler asks the client for input: the task waits for every request's answer.
    pub(super) fn ask(&self, requests: Map<String, Value>) -> bool {
        let mut state = self.state();
        if state.status != Status::Working {
            return false;
        }
        state.status = Status::InputRequired;
        state.pending = requests;
        state.answers.clear();
        self.touch(&mut state);
        true
    }

    /// `tasks/update`: the answers to pending requests are kept (others are ignored); when none is
    /// pending any more, the runner is woken.
    pub(super) fn answer(&self, responses: Map<String, Value>) {
        let mut state = self.state();
        if state.status != Status::InputRequired {
            return;
        }
        for (key, response) in responses {
            if state.pending.remove(&key).is_some() {
                state.answers.insert(key, response);
            }
        }
        self.touch(&mut state);
        if state.pending.is_empty() {
            state.status = Status::Working;
            self.answered.notify_one();
        }
    }

    /// The answers of the round that just ended, for the handler's next round.
    pub(super) fn take_answers(&self) -> Map<String, Value> {
        std::mem::take(&mut self.state().answers)
    }

    /// The handler's last round ended: `Completed` with the result or `Failed` with the error
    /// (whose message becomes the status message). A task cancelled meanwhile stays cancelled;
    /// false then.
    pub(super) fn finish(&self, status: Status, outcome: Value) -> bool {
        let mut state = self.state();
        if state.status.is_terminal() {
            return false;
        }
        if status == Status::Failed {
            state.message = outcome.get("message").and_then(Value::as_str).map(cut);
        }
        state.status = status;
        state.outcome = Some(outcome);
        state.pending.clear();
        self.touch(&mut state);
        true
    }

    /// `tasks/cancel` (or expiry, `why` says which): a task not finished is cancelled, and so
    /// is its handler; a finished one is left as it is.
    pub(super) fn cancel(&self, why: &str) {
        {
            let mut state = self.state();
            if state.status.is_terminal() {
                return;
            }
            state.status = Status::Cancelled;
            state.message = Some(why.to_owned());
            state.pending.clear();
            self.touch(&mut state);
        }
        self.reporter.cancel();
    }

    pub(super) fn status(&self) -> Status {
        self.state().status
    }
}

/// `message`, cut at a character boundary to at most [`MAX_STATUS_MESSAGE`] bytes.
fn cut(message: &str) -> String {
    if message.len() <= MAX_STATUS_MESSAGE {
        return message.to_owned();
    }
    let mut end = MAX_STATUS_MESSAGE - '…'.len_utf8();
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &message[..end])
}

/// The tasks of one agent.
pub(super) struct TaskStore {
    limits: Limits,
    tasks: Mutex<Tasks>,
    random: SystemRandom,
}

/// The tasks by id, and how many each identity holds (an identity holding none has no entry:
/// the counts never outgrow the tasks).
#[derive(Default)]
struct Tasks {
    by_id: HashMap<String, Arc<Task>>,
    held: HashMap<Arc<str>, usize>,
}

impl TaskStore {
    pub(super) fn new(limits: Limits) -> TaskStore {
        TaskStore { limits, tasks: Mutex::default(), random: SystemRandom::new() }
    }

    /// A new working task of `owner`, whose handler `reporter` cancels; `Err` says why not (the
    /// identity holds as many tasks as it may, or the agent holds as many as it keeps).
    pub(super) fn create(&self, owner: &str, reporter: Arc<Reporter>) -> Result<Arc<Task>, String> {
        let mut tasks = self.tasks.lock().expect("task store lock");
        tasks.sweep();
        let kept = self.limits.ttl.as_secs();
        let held = tasks.held.get(owner).copied().unwrap_or(0);
        if held >= self.limits.per_caller {
            return Err(format!(
                "{owner} holds {held} tasks, as many as one caller may (finished ones are kept {kept} s after their last change); \
                 wait for them to expire, then call again"
            ));
        }
        if tasks.by_id.len() >= self.limits.total {
            return Err(format!(
                "this agent holds {} tasks for its callers, as many as it keeps (max_tasks = {}; finished ones are kept {kept} s \
                 after their last change); call again later, or raise the agent's max_tasks",
                tasks.by_id.len(),
                self.limits.total
            ));
        }
        let mut bytes = [0u8; 16];
        self.random.fill(&mut bytes).expect("the system random source works");
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let now = SystemTime::now();
        let task = Arc::new(Task {
            id: id.clone(),
            owner: Arc::from(owner),
            created: now,
            ttl: self.limits.ttl,
            state: Mutex::new(State {
                status: Status::Working,
                last_updated: now,
                expires: Instant::now() + self.limits.ttl,
                outcome: None,
                message: None,
                pending: Map::new(),
                answers: Map::new(),
            }),
            reporter,
            answered: Notify::new(),
            changed: watch::Sender::new(()),
        });
        *tasks.held.entry(task.owner.clone()).or_default() += 1;
        tasks.by_id.insert(id, task.clone());
        Ok(task)
    }

    /// The task `id` if `owner` created it and it has not expired; `None` alike for an unknown
    /// id and for another identity's task.
    pub(super) fn get(&self, owner: &str, id: &str) -> Option<Arc<Task>> {
        let mut tasks = self.tasks.lock().expect("task store lock");
        tasks.sweep();
        tasks.by_id.get(id).filter(|t| &*t.owner == owner).cloned()
    }
}

impl Tasks {
    /// Drops the expired tasks; one still running is cancelled first.
    fn sweep(&mut self) {
        let now = Instant::now();
        let held = &mut self.held;
        self.by_id.retain(|_, task| {
            if task.state().expires > now {
                return true;
            }
            if !task.status().is_terminal() {
                task.cancel("cancelled: the task expired (no change within its ttlMs) before it finished");
            }
            if let Some(count) = held.get_mut(&task.owner) {
                *count -= 1;
                if *count == 0 {
                    held.remove(&task.owner);
                }
            }
            false
        });
    }
}

fn rfc3339(t: SystemTime) -> String {
    time::OffsetDateTime::from(t).format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reporter() -> Arc<Reporter> {
        Arc::new(Reporter::new(None, None).0)
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_is_seen_by_its_owner_only_and_dropped_a_ttl_after_its_last_change() {
        let store = TaskStore::new(Limits { per_caller: 8, total: 64, ttl: Duration::from_secs(60) });
        let running = reporter();
        let task = store.create("spiffe://m/a", running.clone()).unwrap();
        assert_eq!(task.id().len(), 32);
        assert!(store.get("spiffe://m/a", task.id()).is_some());
        assert!(store.get("spiffe://m/b", task.id()).is_none(), "another identity is told it does not exist");
        assert!(store.get("spiffe://m/a", "0123").is_none());

        tokio::time::advance(Duration::from_secs(45)).await;
        assert!(task.finish(Status::Completed, json!({"content": []})));
        tokio::time::advance(Duration::from_secs(45)).await;
        assert!(store.get("spiffe://m/a", task.id()).is_some(), "kept a TTL after it finished, not after it was created");
        tokio::time::advance(Duration::from_secs(16)).await;
        assert!(store.get("spiffe://m/a", task.id()).is_none());
        assert!(!running.is_cancelled(), "a finished task's expiry cancels nothing");

        let stalled = reporter();
        let waiting = store.create("spiffe://m/a", stalled.clone()).unwrap();
        assert!(waiting.ask(Map::from_iter([("name".to_owned(), json!({"method": "elicitation/create"}))])));
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(store.get("spiffe://m/a", waiting.id()).is_none());
        assert!(stalled.is_cancelled(), "an expired task still running is cancelled");
    }

    #[tokio::test]
    async fn each_identity_holds_at_most_its_share_of_tasks() {
        let store = TaskStore::new(Limits { per_caller: 2, total: 64, ttl: Duration::from_secs(60) });
        let ids: Vec<String> = (0..2).map(|_| store.create("spiffe://m/a", reporter()).unwrap().id().to_owned()).collect();
        assert_ne!(ids[0], ids[1]);
        let refused = store.create("spiffe://m/a", reporter()).err().unwrap();
        assert!(refused.starts_with("spiffe://m/a holds 2 tasks, as many as one caller may"), "{refused}");
        // A finished task still counts until it expires: its result is still to be read.
        assert!(store.get("spiffe://m/a", &ids[0]).unwrap().finish(Status::Completed, json!({})));
        assert!(store.create("spiffe://m/a", reporter()).is_err());
        assert!(store.create("spiffe://m/b", reporter()).is_ok(), "another identity has a share of its own");
    }

    #[tokio::test(start_paused = true)]
    async fn every_identity_together_holds_at_most_the_agents_bound_and_expiry_frees_it() {
        let store = TaskStore::new(Limits { per_caller: 2, total: 3, ttl: Duration::from_secs(60) });
        for owner in ["spiffe://m/a", "spiffe://m/b", "spiffe://m/c"] {
            store.create(owner, reporter()).unwrap();
        }
        let refused = store.create("spiffe://m/d", reporter()).err().unwrap();
        assert!(refused.starts_with("this agent holds 3 tasks for its callers, as many as it keeps (max_tasks = 3;"), "{refused}");
        assert!(store.create("spiffe://m/a", reporter()).is_err(), "an identity under its own share is refused too");
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(store.create("spiffe://m/d", reporter()).is_ok(), "expired tasks free their place");
        let tasks = store.tasks.lock().unwrap();
        assert_eq!(tasks.held.len(), 1, "the counts of identities that hold nothing are dropped");
    }

    #[tokio::test]
    async fn reports_and_failures_are_the_status_message_and_every_change_is_signalled() {
        let store = TaskStore::new(Limits::default());
        let task = store.create("spiffe://m/a", reporter()).unwrap();
        let mut changes = task.watch();
        task.report("page 3 of 10");
        assert!(changes.has_changed().unwrap());
        changes.mark_unchanged();
        assert_eq!(task.to_json(false)["statusMessage"], "page 3 of 10");
        task.report(&"é".repeat(2000));
        let cut = task.to_json(false)["statusMessage"].as_str().unwrap().to_owned();
        assert!(cut.len() <= MAX_STATUS_MESSAGE && cut.ends_with('…'), "{}", cut.len());
        assert!(task.finish(Status::Failed, json!({"code": -32603, "message": "the handler ended without an answer"})));
        assert!(changes.has_changed().unwrap());
        assert_eq!(task.to_json(true)["statusMessage"], "the handler ended without an answer");
        changes.mark_unchanged();
        task.report("too late");
        assert!(!changes.has_changed().unwrap(), "a finished task does not change");
        assert_eq!(task.to_json(true)["statusMessage"], "the handler ended without an answer");
    }

    #[tokio::test]
    async fn input_is_awaited_until_every_request_is_answered_and_a_cancel_is_final() {
        let store = TaskStore::new(Limits::default());
        let running = reporter();
        let task = store.create("spiffe://m/a", running.clone()).unwrap();
        let requests: Map<String, Value> = [("a", json!({"method": "elicitation/create"})), ("b", json!({"method": "roots/list"}))]
            .map(|(k, v)| (k.to_owned(), v))
            .into_iter()
            .collect();
        assert!(task.ask(requests));
        task.answer(Map::from_iter([("a".to_owned(), json!({"action": "accept"})), ("zzz".to_owned(), json!({}))]));
        let shown = task.to_json(true);
        assert_eq!(shown["status"], "input_required");
        assert_eq!(shown["inputRequests"], json!({"b": {"method": "roots/list"}}), "only what is still pending");
        task.answer(Map::from_iter([("b".to_owned(), json!({"roots": []}))]));
        tokio::time::timeout(Duration::from_secs(5), task.answered.notified()).await.expect("the runner is woken");
        assert_eq!(
            task.take_answers(),
            Map::from_iter([("a".to_owned(), json!({"action": "accept"})), ("b".to_owned(), json!({"roots": []}))])
        );
        assert_eq!(task.to_json(true)["status"], "working");

        task.cancel("cancelled by its caller");
        assert!(running.is_cancelled());
        assert!(!task.finish(Status::Completed, json!({})));
        let shown = task.to_json(true);
        assert_eq!(shown["status"], "cancelled", "a late answer does not undo a cancel");
        assert!(shown.get("result").is_none());
    }
}
