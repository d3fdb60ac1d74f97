//! The tasks an agent runs for its callers (the MCP tasks extension, SEP-2663): each owned by the
//! verified identity that created it and visible to it alone, at most [`Limits::per_caller`] of
//! them per identity, each dropped [`Limits::ttl`] after its last change.
//!
//! A task id is 128 random bits: knowing one is the only way to name a task, and another
//! identity that names it is answered as if it did not exist.

use crate::report::Reporter;
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};
use tokio::sync::Notify;
use tokio::time::Instant;

/// How many tasks one identity may hold, and how long a task is kept after its last change.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub(super) per_caller: usize,
    pub(super) ttl: Duration,
}

impl Default for Limits {
    /// Enough for a client with many jobs in flight; a finished task's result stays half an hour.
    fn default() -> Self {
        Limits { per_caller: 128, ttl: Duration::from_secs(30 * 60) }
    }
}

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

    /// The handler's last round ended: `Completed` with the result or `Failed` with the error. A
    /// task cancelled meanwhile stays cancelled.
    pub(super) fn finish(&self, status: Status, outcome: Value) {
        let mut state = self.state();
        if state.status.is_terminal() {
            return;
        }
        state.status = status;
        state.outcome = Some(outcome);
        state.pending.clear();
        self.touch(&mut state);
    }

    /// `tasks/cancel`: a task not finished is cancelled, and so is its handler; a finished one is
    /// left as it is.
    pub(super) fn cancel(&self) {
        {
            let mut state = self.state();
            if state.status.is_terminal() {
                return;
            }
            state.status = Status::Cancelled;
            state.pending.clear();
            self.touch(&mut state);
        }
        self.reporter.cancel();
    }

    fn status(&self) -> Status {
        self.state().status
    }
}

/// The tasks of one agent.
pub(super) struct TaskStore {
    limits: Limits,
    tasks: Mutex<HashMap<String, Arc<Task>>>,
    random: SystemRandom,
}

impl TaskStore {
    pub(super) fn new(limits: Limits) -> TaskStore {
        TaskStore { limits, tasks: Mutex::default(), random: SystemRandom::new() }
    }

    /// A new working task of `owner`, whose handler `reporter` cancels; `Err` says why not (the
    /// identity holds as many tasks as it may).
    pub(super) fn create(&self, owner: &str, reporter: Arc<Reporter>) -> Result<Arc<Task>, String> {
        let mut tasks = self.tasks.lock().expect("task store lock");
        sweep(&mut tasks);
        let held = tasks.values().filter(|t| &*t.owner == owner).count();
        if held >= self.limits.per_caller {
            return Err(format!(
                "{owner} holds {held} tasks, as many as one caller may (finished ones are kept {} s after their last change); \
                 wait for them to expire, then call again",
                self.limits.ttl.as_secs()
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
                pending: Map::new(),
                answers: Map::new(),
            }),
            reporter,
            answered: Notify::new(),
        });
        tasks.insert(id, task.clone());
        Ok(task)
    }

    /// The task `id` if `owner` created it and it has not expired; `None` alike for an unknown
    /// id and for another identity's task.
    pub(super) fn get(&self, owner: &str, id: &str) -> Option<Arc<Task>> {
        let mut tasks = self.tasks.lock().expect("task store lock");
        sweep(&mut tasks);
        tasks.get(id).filter(|t| &*t.owner == owner).cloned()
    }
}

/// Drops the expired tasks; one still running is cancelled first.
fn sweep(tasks: &mut HashMap<String, Arc<Task>>) {
    let now = Instant::now();
    tasks.retain(|_, task| {
        if task.state().expires > now {
            return true;
        }
        if !task.status().is_terminal() {
            task.cancel();
        }
        false
    });
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
        let store = TaskStore::new(Limits { per_caller: 8, ttl: Duration::from_secs(60) });
        let running = reporter();
        let task = store.create("spiffe://m/a", running.clone()).unwrap();
        assert_eq!(task.id().len(), 32);
        assert!(store.get("spiffe://m/a", task.id()).is_some());
        assert!(store.get("spiffe://m/b", task.id()).is_none(), "another identity is told it does not exist");
        assert!(store.get("spiffe://m/a", "0123").is_none());

        tokio::time::advance(Duration::from_secs(45)).await;
        task.finish(Status::Completed, json!({"content": []}));
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
        let store = TaskStore::new(Limits { per_caller: 2, ttl: Duration::from_secs(60) });
        let ids: Vec<String> = (0..2).map(|_| store.create("spiffe://m/a", reporter()).unwrap().id().to_owned()).collect();
        assert_ne!(ids[0], ids[1]);
        let refused = store.create("spiffe://m/a", reporter()).err().unwrap();
        assert!(refused.starts_with("spiffe://m/a holds 2 tasks, as many as one caller may"), "{refused}");
        // A finished task still counts until it expires: its result is still to be read.
        store.get("spiffe://m/a", &ids[0]).unwrap().finish(Status::Completed, json!({}));
        assert!(store.create("spiffe://m/a", reporter()).is_err());
        assert!(store.create("spiffe://m/b", reporter()).is_ok(), "another identity has a share of its own");
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

        task.cancel();
        assert!(running.is_cancelled());
        task.finish(Status::Completed, json!({}));
        let shown = task.to_json(true);
        assert_eq!(shown["status"], "cancelled", "a late answer does not undo a cancel");
        assert!(shown.get("result").is_none());
    }
}
