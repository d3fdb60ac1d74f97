//! The one thread that brings work from core into Python.
//!
//! Core's tokio workers must never run Python or wait for the GIL, so everything that has to
//! reach Python — tool invocations and the results of native operations — is sent here over a
//! channel. This thread takes the GIL once per batch of queued jobs and hands each asyncio loop
//! its share with a single `loop.call_soon_threadsafe(run_batch, calls)`.

use crate::bridge::{bridge, error_object};
use crate::context::Context;
use crate::responder::Responder;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use toolmesh_core::context::RequestContext;
use toolmesh_core::host::Completion;
use toolmesh_core::{runtime, Error};

/// Where invocations of one agent's tools go: its asyncio loop and its Python entry point.
pub(crate) struct InvokeTarget {
    pub event_loop: Py<PyAny>,
    /// `on_invoke(tool, arguments_json, context, responder)`, run on `event_loop`.
    pub on_invoke: Py<PyAny>,
    /// `on_catalog(request_json, context, responder)` for a resource read or a prompt, run on
    /// `event_loop`; `request_json` is core's `CatalogRequest`.
    pub on_catalog: Py<PyAny>,
}

/// Makes a Python object on the dispatch thread, with the GIL held.
pub(crate) type MakeObject = Box<dyn for<'py> FnOnce(Python<'py>) -> PyResult<Bound<'py, PyAny>> + Send>;

/// What a settled future receives.
pub(crate) enum Outcome {
    Json(String),
    /// An object only Python can hold (a started agent's `NativeAgent`): its maker brings the
    /// type, so that this module depends on no module that uses it.
    Object(MakeObject),
    Nothing,
}

pub(crate) enum Job {
    Invoke {
        target: Arc<InvokeTarget>,
        tool: String,
        arguments_json: String,
        context: Arc<RequestContext>,
        completion: Completion,
    },
    /// A resource read or prompt get: `subject` names it in error messages (`resource 'uri'`).
    Catalog {
        target: Arc<InvokeTarget>,
        request_json: String,
        subject: String,
        context: Arc<RequestContext>,
        completion: Completion,
    },
    /// The request a handler serves was cancelled: `callback()` runs on `event_loop` (it
    /// cancels the handler's task).
    Cancel {
        event_loop: Py<PyAny>,
        callback: Py<PyAny>,
    },
    /// A dependency call's callee reported: `callback(json)` runs on `event_loop`.
    Notify {
        event_loop: Arc<Py<PyAny>>,
        callback: Arc<Py<PyAny>>,
        json: String,
    },
    /// `future` is an asyncio future; its own loop is the one to settle it on.
    Settle {
        future: Py<PyAny>,
        outcome: Result<Outcome, Error>,
    },
}

struct Dispatcher {
    /// The process that spawned the thread: a forked child has no such thread and needs its own.
    pid: u32,
    sender: Sender<Job>,
    /// Held by the thread while it is attached to Python (see [`close_dispatch`]).
    delivering: Arc<Mutex<()>>,
}

static DISPATCHER: Mutex<Option<Dispatcher>> = Mutex::new(None);

/// Set at interpreter exit: from then on jobs are dropped. A finalizing interpreter ends any
/// thread that asks it for the GIL, and unwinding Rust frames that own Python objects then
/// crashes the process.
static CLOSED: AtomicBool = AtomicBool::new(false);

/// Queues a job for Python. Never blocks and never touches the GIL, so tokio workers may call it.
pub(crate) fn dispatch(job: Job) {
    let pid = std::process::id();
    let sender = {
        let mut slot = DISPATCHER.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match slot.as_ref().filter(|d| d.pid == pid) {
            Some(dispatcher) => dispatcher.sender.clone(),
            None => {
                let (sender, receiver) = mpsc::channel();
                let delivering = Arc::new(Mutex::new(()));
                let thread_delivering = delivering.clone();
                let spawned = std::thread::Builder::new()
                    .name("toolmesh-python-dispatch".to_owned())
                    .spawn(move || run(receiver, &thread_delivering));
                if spawned.is_err() {
                    // No thread, no Python: dropping the job drops its completion, and core
                    // answers the caller HANDLER_DROPPED instead of hanging.
                    return;
                }
                *slot = Some(Dispatcher { pid, sender: sender.clone(), delivering });
                sender
            }
        }
    };
    // A send fails only if the thread is gone; the dropped job answers as above.
    let _ = sender.send(job);
}

/// Stops delivering jobs to Python and waits for a delivery in progress (which may be waiting
/// for the GIL: it is released meanwhile). Registered with `atexit` by the Python package, so
/// it runs before the interpreter starts finalizing.
#[pyfunction]
pub(crate) fn close_dispatch(py: Python<'_>) {
    CLOSED.store(true, Ordering::SeqCst);
    let pid = std::process::id();
    let delivering = {
        let slot = DISPATCHER.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        slot.as_ref().filter(|d| d.pid == pid).map(|d| d.delivering.clone())
    };
    if let Some(delivering) = delivering {
        py.detach(|| drop(delivering.lock().unwrap_or_else(|poisoned| poisoned.into_inner())));
    }
}

/// Runs `operation` on core's runtime and settles the asyncio `future` with its outcome.
/// The operation runs in its own task so that even a panic in core settles the future.
pub(crate) fn settle_when_done<F>(future: Py<PyAny>, operation: F)
where
    F: Future<Output = Result<Outcome, Error>> + Send + 'static,
{
    runtime::spawn_settled(operation, move |outcome| dispatch(Job::Settle { future, outcome }));
}

fn run(receiver: Receiver<Job>, delivering: &Mutex<()>) {
    while let Ok(first) = receiver.recv() {
        let mut batch = vec![first];
        batch.extend(receiver.try_iter());
        let _delivering = delivering.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if CLOSED.load(Ordering::SeqCst) {
            continue;
        }
        // `None`: the interpreter is shutting down; the jobs are dropped unanswered.
        let _ = Python::try_attach(|py| deliver(py, batch));
    }
}

fn deliver(py: Python<'_>, batch: Vec<Job>) {
    let run_batch = match bridge(py) {
        Ok(bridge) => bridge.run_batch.bind(py),
        Err(e) => return e.write_unraisable(py, None),
    };
    let mut per_loop: Vec<(Py<PyAny>, Bound<'_, PyList>)> = Vec::new();
    for job in batch {
        let (event_loop, call) = match job.into_call(py) {
            Ok(scheduled) => scheduled,
            Err(e) => {
                e.write_unraisable(py, None);
                continue;
            }
        };
        let calls = match per_loop.iter().position(|(l, _)| l.is(&event_loop)) {
            Some(i) => &per_loop[i].1,
            None => {
                per_loop.push((event_loop, PyList::empty(py)));
                &per_loop[per_loop.len() - 1].1
            }
        };
        if let Err(e) = calls.append(call) {
            e.write_unraisable(py, None);
        }
    }
    for (event_loop, calls) in per_loop {
        // Fails only when the loop is closed: its futures have no one awaiting them, and its
        // responders, dropped with `calls`, answer HANDLER_DROPPED.
        let _ = event_loop.call_method1(py, "call_soon_threadsafe", (run_batch, calls));
    }
}

impl Job {
    /// The loop to run on and the `(callback, args)` pair to run there.
    fn into_call(self, py: Python<'_>) -> PyResult<(Py<PyAny>, Bound<'_, PyTuple>)> {
        match self {
            Job::Invoke { target, tool, arguments_json, context, completion } => {
                let responder = Responder::new(completion, format!("tool '{tool}'"));
                let args = (tool, arguments_json, Context { inner: context }, responder).into_pyobject(py)?;
                let call = PyTuple::new(py, [target.on_invoke.bind(py).clone(), args.into_any()])?;
                Ok((target.event_loop.clone_ref(py), call))
            }
            Job::Catalog { target, request_json, subject, context, completion } => {
                let args = (request_json, Context { inner: context }, Responder::new(completion, subject)).into_pyobject(py)?;
                let call = PyTuple::new(py, [target.on_catalog.bind(py).clone(), args.into_any()])?;
                Ok((target.event_loop.clone_ref(py), call))
            }
            Job::Cancel { event_loop, callback } => {
                let call = PyTuple::new(py, [callback.into_bound(py), PyTuple::empty(py).into_any()])?;
                Ok((event_loop, call))
            }
            Job::Notify { event_loop, callback, json } => {
                let args = PyTuple::new(py, [json.into_pyobject(py)?.into_any()])?;
                let call = PyTuple::new(py, [callback.clone_ref(py).into_bound(py), args.into_any()])?;
                Ok((event_loop.clone_ref(py), call))
            }
            Job::Settle { future, outcome } => {
                let future = future.into_bound(py);
                let event_loop = future.call_method0("get_loop")?.unbind();
                let (value, exception) = match outcome {
                    Ok(Outcome::Json(json)) => (json.into_pyobject(py)?.into_any(), py.None().into_bound(py)),
                    Ok(Outcome::Object(make)) => (make(py)?, py.None().into_bound(py)),
                    Ok(Outcome::Nothing) => (py.None().into_bound(py), py.None().into_bound(py)),
                    Err(error) => (py.None().into_bound(py), error_object(py, &error)?),
                };
                let args = PyTuple::new(py, [future, value, exception])?;
                let call = PyTuple::new(py, [bridge(py)?.settle_future.bind(py).clone(), args.into_any()])?;
                Ok((event_loop, call))
            }
        }
    }
}
