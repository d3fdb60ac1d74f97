//! The threads C code runs on. Tool handlers and call completions are C functions that may block
//! (on a lock, on I/O, on another call); run on a tokio worker they would stall every agent in
//! the process. So toolmesh hands them to these plain threads instead: a pool that grows while
//! every thread is busy (a handler blocked on a call into its own agent still gets a thread for
//! that call), up to `MAX_THREADS`, and shrinks again when threads sit idle.
//!
//! Everything C-side goes through here: `invoke`, call completions (also the SHUTDOWN answer of
//! an abandoned call) and `free_userdata`. The one exception is a process where the OS refuses
//! to start any thread at all (no host thread exists and creating one fails): the job then runs
//! on the caller's thread, which may be a runtime worker, because every job delivers an answer
//! someone waits for and a stalled worker beats an answer that never comes. toolmesh says so on
//! stderr when it happens.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// Past this many threads, jobs wait for a free one.
const MAX_THREADS: usize = 64;
/// How long a thread waits for work before it exits.
const IDLE_EXIT: Duration = Duration::from_secs(10);

type Job = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct State {
    jobs: VecDeque<Job>,
    threads: usize,
    idle: usize,
}

#[derive(Default)]
struct Pool {
    state: Mutex<State>,
    work: Condvar,
}

/// The pool of this process: a forked child starts a new one, its parent's threads not being
/// there (the runtime in core does the same).
static POOL: Mutex<Option<(u32, Arc<Pool>)>> = Mutex::new(None);

fn pool() -> Arc<Pool> {
    let pid = std::process::id();
    let mut slot = POOL.lock().unwrap_or_else(|p| p.into_inner());
    match slot.as_ref() {
        Some((owner, pool)) if *owner == pid => pool.clone(),
        _ => {
            let pool = Arc::<Pool>::default();
            // A parent's pool is forgotten, not dropped: its queue may hold jobs that are
            // halfway through on threads that do not exist here.
            if let Some(stale) = slot.replace((pid, pool.clone())) {
                std::mem::forget(stale);
            }
            pool
        }
    }
}

/// Runs `job` on a host thread, not on the caller's (unless no host thread can be started at
/// all; see the module's documentation). Never blocks.
pub(crate) fn spawn(job: impl FnOnce() + Send + 'static) {
    let pool = pool();
    let mut state = pool.lock();
    state.jobs.push_back(Box::new(job));
    if state.jobs.len() <= state.idle {
        drop(state);
        pool.work.notify_one();
        return;
    }
    if state.threads < MAX_THREADS {
        let worker = pool.clone();
        let started = std::thread::Builder::new().name("toolmesh-host".to_owned()).spawn(move || worker.serve());
        match started {
            Ok(_) => state.threads += 1,
            Err(error) if state.threads == 0 => {
                // No thread to run it on at all: running it here beats never running it, since
                // every job delivers an answer someone is waiting for.
                eprintln!("toolmesh: cannot start a host thread ({error}); running the job inline");
                let job = state.jobs.pop_back().expect("the job just queued");
                drop(state);
                run_job(job);
            }
            // The busy threads take the job when they are done.
            Err(_) => {}
        }
    }
}

impl Pool {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn serve(&self) {
        let mut state = self.lock();
        loop {
            if let Some(job) = state.jobs.pop_front() {
                drop(state);
                run_job(job);
                state = self.lock();
                continue;
            }
            state.idle += 1;
            let (next, waited) = self.work.wait_timeout(state, IDLE_EXIT).unwrap_or_else(|p| p.into_inner());
            state = next;
            state.idle -= 1;
            if waited.timed_out() && state.jobs.is_empty() {
                state.threads -= 1;
                return;
            }
        }
    }
}

/// A panic in one job (a bug in toolmesh: C cannot unwind into Rust) must not take a thread
/// that other jobs wait for. The panic hook has already printed it.
fn run_job(job: Job) {
    let _ = catch_unwind(AssertUnwindSafe(job));
}
