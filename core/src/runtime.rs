//! The process's one tokio runtime, shared by every agent and binding. A forked child gets a
//! fresh runtime: the parent's worker threads do not exist in the child.

use std::sync::{Arc, Mutex};

struct Owned {
    pid: u32,
    runtime: Arc<tokio::runtime::Runtime>,
}

static RUNTIME: Mutex<Option<Owned>> = Mutex::new(None);

/// The shared runtime, created on first use (and again in a forked child).
pub fn runtime() -> Arc<tokio::runtime::Runtime> {
    let pid = std::process::id();
    let mut slot = RUNTIME.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(owned) = slot.as_ref().filter(|o| o.pid == pid) {
        return owned.runtime.clone();
    }
    if let Some(stale) = slot.take() {
        // Inherited from the parent across fork(): its threads are gone; never run or drop it.
        std::mem::forget(stale);
    }
    let runtime = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(std::thread::available_parallelism().map(|n| n.get().min(4)).unwrap_or(2))
            .thread_name("toolmesh-worker")
            .enable_all()
            .build()
            .expect("cannot start the toolmesh runtime"),
    );
    *slot = Some(Owned { pid, runtime: runtime.clone() });
    runtime
}

/// Why `function`, which blocks on the shared runtime, must not run on this thread: on a thread of
/// a tokio runtime (a toolmesh worker, where a host's callback may run) blocking would deadlock,
/// and tokio refuses it with a panic. `None` where blocking is allowed. Every binding refuses with
/// this message (the C ABI with `TOOLMESH_WRONG_THREAD`, Java with an `IllegalStateException`).
pub fn blocking_refused(function: &str) -> Option<String> {
    tokio::runtime::Handle::try_current()
        .is_ok()
        .then(|| format!("{function} blocks and cannot be called on a toolmesh runtime thread; call it from a thread of your own"))
}

/// A handle to the shared runtime, for spawning from host threads.
pub fn handle() -> tokio::runtime::Handle {
    runtime().handle().clone()
}

/// Runs `operation` on the shared runtime in a task of its own and hands its outcome to
/// `deliver` — an `INTERNAL` error if it panicked — so a host's future, promise or callback is
/// always settled, exactly once.
pub fn spawn_settled<T, F, D>(operation: F, deliver: D)
where
    T: Send + 'static,
    F: std::future::Future<Output = crate::Result<T>> + Send + 'static,
    D: FnOnce(crate::Result<T>) + Send + 'static,
{
    let runtime = runtime();
    let task = runtime.spawn(operation);
    runtime.spawn(async move {
        let outcome = task
            .await
            .unwrap_or_else(|failure| Err(crate::Error::new(crate::ErrorKind::Internal, format!("a toolmesh task failed: {failure}"))));
        deliver(outcome);
    });
}
