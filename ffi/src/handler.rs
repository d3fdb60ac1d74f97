//! The host's tool handler: a C callback table that core's `ToolHandler` calls through, on
//! host threads (see `host_threads`).

use crate::handles::invocation::toolmesh_invocation;
use std::ffi::{c_char, c_void};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use toolmesh_core::host::{Catalog, CatalogInvocation, CatalogRequest, Completion, ToolHandler, ToolInvocation};

/// Runs a local tool. Called on a toolmesh host thread (never a runtime thread, so it may block,
/// though a thread blocked here is a thread the pool has to replace); several invocations may
/// run at once on different threads. `userdata` is the handler's, borrowed for the call: toolmesh
/// owns it until it hands it to `free_userdata`, so `invoke` must not free it. `tool` and
/// `arguments_json` (a JSON object) are borrowed for the call: copy what must outlive it.
/// `invocation` is owned by the handler until it answers it exactly once, from any thread and
/// at any later time, with `toolmesh_invocation_complete`, `_fail` or `_fail_with_code`
/// (answering frees it), or frees it unanswered with `toolmesh_invocation_free`. C++
/// exceptions must not escape.
pub type toolmesh_invoke_fn = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        tool: *const c_char,
        arguments_json: *const c_char,
        invocation: *mut toolmesh_invocation,
    ),
>;

/// Reads a resource or gets a prompt the agent declared in its catalog (see
/// `toolmesh_agent_start_with_catalog`), with the same threading and ownership rules as `invoke`.
/// `request_json` (borrowed for the call) says what is asked, in one of two shapes:
/// `{"kind": "readResource", "uri": "...", "name": "<the declared name>", "template":
/// "<uriTemplate, when a template matched>", "variables": {"id": "..."}}` or
/// `{"kind": "getPrompt", "name": "...", "arguments": {"arg1": "..."}}` (arguments already
/// checked: strings, the required ones present). Answer with `toolmesh_invocation_complete` and
/// JSON in MCP's shape — `{"contents": [{"uri", "mimeType"?, "text" | "blob"}]}` (at least one
/// item; `blob` standard base64) for a read, `{"description"?, "messages": [{"role": "user" |
/// "assistant", "content": <content item>}]}` for a prompt — which toolmesh checks (an invalid
/// answer reaches the caller as `TOOLMESH_HANDLER_RESULT` naming the item), or with
/// `toolmesh_invocation_fail` and the others. A prompt may instead ask the client for input first
/// (MCP 2026-07-28), with `{"resultType": "input_required", "inputRequests": {...},
/// "requestState": ...}` as for a tool; the client's next get brings the answers
/// (`toolmesh_invocation_input`).
pub type toolmesh_catalog_fn =
    Option<unsafe extern "C" fn(userdata: *mut c_void, request_json: *const c_char, invocation: *mut toolmesh_invocation)>;

/// Releases the handler's `userdata`, which this callback receives ownership of. Called exactly
/// once, on a toolmesh host thread, after the last `invoke` has returned.
pub type toolmesh_free_userdata_fn = Option<unsafe extern "C" fn(userdata: *mut c_void)>;

/// How toolmesh runs an agent's tools (and reads its resources and gets its prompts): a callback
/// table passed by value to `toolmesh_agent_start` or `toolmesh_agent_start_with_catalog`, which
/// takes ownership of `userdata` (see there).
#[repr(C)]
pub struct toolmesh_handler {
    /// Passed to every function of the table; used from several threads at once. Owned by
    /// toolmesh from the start call on, until it hands it to `free_userdata`.
    pub userdata: *mut c_void,
    /// Required.
    pub invoke: toolmesh_invoke_fn,
    /// Optional (NULL: nothing to release).
    pub free_userdata: toolmesh_free_userdata_fn,
    /// Required when the agent's catalog declares a resource without static content, a
    /// resource template or a prompt (see `toolmesh_agent_start_with_catalog`); otherwise
    /// optional. Last, so that a table written with designated initializers before it existed
    /// leaves it NULL.
    pub invoke_catalog: toolmesh_catalog_fn,
}

/// The handler table while toolmesh owns it: released (free_userdata) when the last reference
/// goes, which `toolmesh_agent_free` waits for through `released`.
pub(crate) struct HostHandler {
    table: toolmesh_handler,
    released: Arc<Released>,
}

// SAFETY: the contract of `toolmesh_handler` is that `userdata` and its functions may be used
// from any thread, concurrently; the table itself is never modified.
unsafe impl Send for HostHandler {}
// SAFETY: as above.
unsafe impl Sync for HostHandler {}

impl HostHandler {
    /// Takes ownership of `table.userdata`.
    pub fn new(table: toolmesh_handler) -> Arc<HostHandler> {
        Arc::new(HostHandler { table, released: Arc::default() })
    }

    pub fn has_invoke(&self) -> bool {
        self.table.invoke.is_some()
    }

    /// The catalog entry that only `invoke_catalog` can answer, when the table has none.
    pub fn unanswerable_entry(&self, catalog: &Catalog) -> Option<String> {
        if self.table.invoke_catalog.is_some() {
            return None;
        }
        let resources =
            catalog.resources.iter().filter(|r| r.text.is_none() && r.blob.is_none()).map(|r| format!("resource '{}'", r.uri));
        let templates = catalog.resource_templates.iter().map(|t| format!("resource template '{}'", t.uri_template));
        let prompts = catalog.prompts.iter().map(|p| format!("prompt '{}'", p.name));
        resources.chain(templates).chain(prompts).next()
    }

    pub fn released(&self) -> Arc<Released> {
        self.released.clone()
    }
}

impl Drop for HostHandler {
    /// The last reference may go on any thread, a runtime worker included (the agent's server
    /// task, a finished invocation): `free_userdata` is C code, so it runs on a host thread.
    fn drop(&mut self) {
        let free = self.table.free_userdata.map(|free_userdata| (free_userdata, UserData(self.table.userdata)));
        let released = self.released.clone();
        crate::host_threads::spawn(move || {
            if let Some((free_userdata, userdata)) = free {
                // SAFETY: the table's contract: free_userdata takes the userdata it was given
                // with, and this is the one time it is called (the last reference was dropped).
                unsafe { free_userdata(userdata.0) };
            }
            released.signal();
        });
    }
}

/// The handler's `userdata` on its way to `free_userdata` on a host thread.
struct UserData(*mut c_void);

// SAFETY: the contract of `toolmesh_handler`: userdata may be used from any thread, and
// `free_userdata` is called with it on a host thread.
unsafe impl Send for UserData {}

/// Core's `ToolHandler` for a C agent: each invocation goes to a host thread.
pub(crate) struct CToolHandler(pub Arc<HostHandler>);

impl ToolHandler for CToolHandler {
    fn invoke(&self, invocation: ToolInvocation, completion: Completion) {
        let handler = self.0.clone();
        // Tool names are ASCII without NUL (core validates them); serialized JSON escapes NUL.
        let tool = crate::boundary::c_string_lossy(invocation.tool.as_str());
        let arguments = crate::boundary::c_string_lossy(invocation.arguments.to_string());
        // Boxed now and handed to C only when the job runs: a job that never ran would drop
        // it, and with it the completion, so the caller would still get an answer.
        let subject = format!("tool '{}'", invocation.tool);
        let answer = Box::new(toolmesh_invocation::new(subject, invocation.context, completion));
        crate::host_threads::spawn(move || {
            let Some(invoke) = handler.table.invoke else { return };
            // SAFETY: the table's contract: invoke takes its userdata, strings borrowed for the
            // call, and an invocation it now owns (freed by the answer it gives).
            unsafe { invoke(handler.table.userdata, tool.as_ptr(), arguments.as_ptr(), Box::into_raw(answer)) };
        });
    }

    fn invoke_catalog(&self, invocation: CatalogInvocation, completion: Completion) {
        let subject = match &invocation.request {
            CatalogRequest::ReadResource { uri, .. } => format!("resource '{uri}'"),
            CatalogRequest::GetPrompt { name, .. } => format!("prompt '{name}'"),
        };
        let Some(invoke_catalog) = self.0.table.invoke_catalog else {
            // Unreachable through `toolmesh_agent_start_with_catalog`, which refuses a catalog
            // that needs the callback when the table has none; answered all the same.
            return completion.err(format!("this agent's handler has no invoke_catalog to answer {subject}"));
        };
        let handler = self.0.clone();
        // Serialized JSON escapes NUL; the request is core's own type, so serializing it cannot fail.
        let request = crate::boundary::c_string_lossy(serde_json::to_string(&invocation.request).unwrap_or_default());
        // Boxed now, as for `invoke`: a job that never ran still answers (dropped).
        let answer = Box::new(toolmesh_invocation::new(subject, invocation.context, completion));
        crate::host_threads::spawn(move || {
            // SAFETY: the table's contract: invoke_catalog takes its userdata, a string borrowed
            // for the call, and an invocation it now owns (freed by the answer it gives).
            unsafe { invoke_catalog(handler.table.userdata, request.as_ptr(), Box::into_raw(answer)) };
        });
    }
}

/// A one-way signal: set once, awaited with a bound.
#[derive(Default)]
pub(crate) struct Released {
    done: Mutex<bool>,
    changed: Condvar,
}

impl Released {
    fn signal(&self) {
        *self.done.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.changed.notify_all();
    }

    /// True once signalled; false if `timeout` passed first.
    pub fn wait(&self, timeout: Duration) -> bool {
        let done = self.done.lock().unwrap_or_else(|p| p.into_inner());
        let (done, _) = self.changed.wait_timeout_while(done, timeout, |done| !*done).unwrap_or_else(|p| p.into_inner());
        *done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static FREED_ON: Mutex<Vec<String>> = Mutex::new(Vec::new());

    unsafe extern "C" fn free_userdata(userdata: *mut c_void) {
        assert_eq!(userdata as usize, 7);
        FREED_ON.lock().unwrap().push(std::thread::current().name().unwrap_or("").to_owned());
    }

    /// The last reference dropped on the test's thread (standing for a runtime worker): the
    /// userdata is released once, on a host thread, and `released` follows.
    #[test]
    fn the_userdata_is_released_once_on_a_host_thread() {
        let table = toolmesh_handler {
            userdata: 7 as *mut c_void,
            invoke: None,
            free_userdata: Some(free_userdata),
            invoke_catalog: None,
        };
        let handler = HostHandler::new(table);
        let released = handler.released();
        drop(handler);
        assert!(released.wait(Duration::from_secs(10)), "never released");
        assert_eq!(*FREED_ON.lock().unwrap(), ["toolmesh-host"]);
    }
}
