//! `toolmesh_agent`: a running agent — its tools served over mTLS, its registration, and the
//! dependency calls its handlers make (see `call`).

use crate::boundary::{
    c_string_lossy, catch_panic, ensure_blocking_allowed, guarded, handle_arg, out_arg, report, str_arg, write_out,
};
use crate::error::{toolmesh_error, Failure};
use crate::handler::{toolmesh_handler, CToolHandler, HostHandler, Released};
use crate::handles::config::{config_arg, toolmesh_config};
use crate::result::{toolmesh_result, TOOLMESH_INVALID_CONFIG, TOOLMESH_NULL_ARGUMENT, TOOLMESH_SHUTDOWN, TOOLMESH_TIMEOUT};
use std::ffi::{c_char, CString};
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use toolmesh_core::agent::{parse_catalog, parse_tools, Agent};
use toolmesh_core::host::Catalog;
use toolmesh_core::runtime;

/// How long `toolmesh_agent_free` waits for the agent's last task to let go of the handler: as
/// long as core lets in-flight requests finish at shutdown, plus a margin.
const HANDLER_RELEASE_TIMEOUT: Duration = Duration::from_secs(10);

/// A running agent.
///
/// Ownership: created by `toolmesh_agent_start`, freed by the caller with `toolmesh_agent_free`
/// (which stops it first if `toolmesh_agent_stop` was not called). It may be borrowed by several
/// threads at once, but not while it is being freed.
pub struct toolmesh_agent {
    pub(crate) agent: Agent,
    id: CString,
    endpoint: CString,
    handler_released: Arc<Released>,
    /// For `toolmesh_agent_wait_registered`'s errors.
    registry_url: Option<String>,
    stopped: AtomicBool,
}

/// Starts an agent: checks the configuration and the tools, loads the TLS identity, starts
/// serving, and registers with the registry in the background (a registry that is down does not
/// stop the agent from starting). Blocks until the agent serves or fails to start.
///
/// `tools_json` (borrowed) is a JSON array of tool definitions:
/// `[{"name": "add", "capability": "add", "version": "1.0.0", "tags": ["math"],
///   "description": "...", "input_schema": {...}, "dependencies": ["other-capability", ...],
///   "timeout_ms": 30000, "annotations": {"idempotentHint": true}}]`; only `name` and `capability`
///   are required. `annotations` are MCP's tool annotations (`title`, `readOnlyHint`,
///   `destructiveHint`, `idempotentHint`, `openWorldHint`), listed by `tools/list`: a call to a
///   read-only or idempotent tool is also retried on another provider when the connection breaks
///   after the provider received it. `output_schema` (MCP's `outputSchema`, a JSON Schema of an
///   object) is listed too, and every answer's structured content is checked against it;
///   `required_client_capabilities` (`["sampling"]`, `"elicitation"`, `"roots"`) makes core refuse
///   a modern MCP client that did not declare one (-32021) before the handler runs.
///   `task_support` (`"forbidden"`, the default, `"optional"` or `"required"`; MCP's
///   `execution.taskSupport`) lets a call from a client that negotiated the MCP tasks extension run
///   as a task, which core runs and the client polls; the handler is called as for any call.
///
/// `handler` is taken over in every case, also when the start fails: its `free_userdata` is
/// called, on a toolmesh host thread, once toolmesh no longer needs it (after a failed start, at
/// once, possibly before this returns), so the caller must not free `userdata` itself.
/// `handler.invoke` must not be NULL. On success `*agent_out` receives the agent.
///
/// Must be called from a thread of the host (or a handler), never from a toolmesh runtime
/// thread: it returns `TOOLMESH_WRONG_THREAD` there.
///
/// On Unix, if SIGPIPE still has its default action (terminating the process), the first start
/// sets it to ignored, as Rust, Python, Node and the JVM do at start-up: a peer that goes away
/// while toolmesh writes to it must not kill the host. A disposition the host chose (its own
/// handler, or SIG_IGN) is kept: it is read with `sigaction` and never replaced, even briefly.
/// The ignored disposition is process-wide and survives `exec`: programs the host starts
/// afterwards inherit SIGPIPE ignored, so a host whose children expect the default (e.g. shell
/// pipelines) resets it in the child (`posix_spawnattr_setsigdefault`, or `signal(SIGPIPE,
/// SIG_DFL)` between fork and exec), or sets its own disposition before the first start.
///
/// # Safety
/// `config` is NULL or a live configuration and `tools_json` NULL or a NUL-terminated string, both
/// borrowed for the call (the caller still owns and frees them; the agent keeps copies). `handler`
/// is passed by value and its `userdata` owned by toolmesh from this call on, in every case (see
/// above); it follows the contract of `toolmesh_handler`. `agent_out` is NULL (an error) or points
/// to storage for one pointer, borrowed for the call, that receives on success a new
/// `toolmesh_agent` owned by the caller, who frees it with `toolmesh_agent_free`. `error_out` is
/// NULL or points to storage for one pointer (borrowed for the call) that receives, on failure
/// only, a new `toolmesh_error` owned by the caller, who frees it with `toolmesh_error_free`.
#[no_mangle]
pub unsafe extern "C" fn toolmesh_agent_start(
    config: *const toolmesh_config,
    tools_json: *const c_char,
    handler: toolmesh_handler,
    agent_out: *mut *mut toolmesh_agent,
    error_out: *mut *mut toolmesh_error,
) -> toolmesh_result {
    // SAFETY: the caller guarantees this function's contract, which is `start`'s with no catalog.
    unsafe { start("toolmesh_agent_start", config, tools_json, None, handler, agent_out, error_out) }
}

/// `toolmesh_agent_start` for an agent that also serves resources, resource templates and
/// prompts over MCP (`resources/list`, `resources/templates/list`, `resources/read`,
/// `prompts/list`, `prompts/get`); they are not registered with the registry. `catalog_json`
/// (borrowed) is one JSON document with MCP's member names:
/// `{"resources": [{"uri": "test://static-text", "name": "static-text", "mimeType":
///   "text/plain", "title"?, "description"?, "size"?, "annotations"?, "text"?: "...", "blob"?:
///   "<base64>"}], "resourceTemplates": [{"uriTemplate": "test://template/{id}/data", "name":
///   "...", "mimeType"?, ...}], "prompts": [{"name": "...", "title"?, "description"?,
///   "arguments": [{"name": "arg1", "description"?, "required": true}]}]}`; every member may be
/// left out, and an unknown member is refused (`TOOLMESH_INVALID_CONFIG`, naming the entry).
///
/// A resource declared with `text` or `blob` is answered by toolmesh itself; one declared
/// without, every template and every prompt is answered by `handler.invoke_catalog`, which must
/// then not be NULL (`TOOLMESH_NULL_ARGUMENT` naming the first such entry). Everything else —
/// ownership of `handler`, threads, SIGPIPE — is as for `toolmesh_agent_start`.
///
/// # Safety
/// As for `toolmesh_agent_start`; `catalog_json` is NULL (an error) or a NUL-terminated string,
/// borrowed for the call (the agent keeps a parsed copy).
#[no_mangle]
pub unsafe extern "C" fn toolmesh_agent_start_with_catalog(
    config: *const toolmesh_config,
    tools_json: *const c_char,
    catalog_json: *const c_char,
    handler: toolmesh_handler,
    agent_out: *mut *mut toolmesh_agent,
    error_out: *mut *mut toolmesh_error,
) -> toolmesh_result {
    // SAFETY: the caller guarantees this function's contract, which is `start`'s.
    unsafe { start("toolmesh_agent_start_with_catalog", config, tools_json, Some(catalog_json), handler, agent_out, error_out) }
}

/// Both start functions; `catalog_json` is `None` for `toolmesh_agent_start` (an empty catalog).
///
/// # Safety
/// The contract of `toolmesh_agent_start_with_catalog`.
unsafe fn start(
    function: &'static str,
    config: *const toolmesh_config,
    tools_json: *const c_char,
    catalog_json: Option<*const c_char>,
    handler: toolmesh_handler,
    agent_out: *mut *mut toolmesh_agent,
    error_out: *mut *mut toolmesh_error,
) -> toolmesh_result {
    // Owned from the first instruction, so every way out of here releases it exactly once.
    let handler = HostHandler::new(handler);
    let outcome = guarded(function, move || {
        toolmesh_core::logging::init_from_env();
        out_arg(agent_out, "agent_out")?;
        // SAFETY: NULL or live, as the caller guarantees.
        let config = unsafe { config_arg(config) }?.clone();
        // SAFETY: NULL or NUL-terminated, as the caller guarantees.
        let tools = parse_tools(unsafe { str_arg(tools_json, "tools_json") }?)?;
        let catalog = match catalog_json {
            // SAFETY: NULL or NUL-terminated, as the caller guarantees.
            Some(json) => parse_catalog(unsafe { str_arg(json, "catalog_json") }?)?,
            None => Catalog::default(),
        };
        if !handler.has_invoke() {
            return Err(Failure::null_argument("handler.invoke"));
        }
        if let Some(entry) = handler.unanswerable_entry(&catalog) {
            return Err(Failure::new(
                TOOLMESH_NULL_ARGUMENT,
                format!(
                    "the argument 'handler.invoke_catalog' is NULL, but the catalog's {entry} is answered by it; set it, or give \
                     the resource static 'text' or 'blob'"
                ),
            ));
        }
        ensure_blocking_allowed(function)?;
        crate::sigpipe::ignore_if_default();
        let handler_released = handler.released();
        let registry_url = config.registry_url.clone();
        let agent =
            runtime::runtime().block_on(Agent::start_with_catalog(config, tools, catalog, Arc::new(CToolHandler(handler))))?;
        let started = toolmesh_agent {
            id: c_string_lossy(agent.agent_id()),
            endpoint: c_string_lossy(agent.endpoint()),
            agent,
            handler_released,
            registry_url,
            stopped: AtomicBool::new(false),
        };
        // SAFETY: checked by `out_arg`, writable as the caller guarantees.
        unsafe { write_out(agent_out, started) };
        Ok(())
    });
    // SAFETY: `error_out` is NULL or writable, as the caller guarantees.
    unsafe { report(outcome, error_out) }
}

/// The agent's id in the mesh (its name plus a random suffix). Borrowed from the agent: valid
/// until `toolmesh_agent_free`. NULL when `agent` is NULL.
///
/// # Safety
/// `agent` is NULL or a live agent, borrowed for the call.
#[no_mangle]
pub unsafe extern "C" fn toolmesh_agent_id(agent: *const toolmesh_agent) -> *const c_char {
    // SAFETY: NULL or live, as the caller guarantees.
    catch_panic(ptr::null(), || unsafe { agent.as_ref() }.map_or(ptr::null(), |a| a.id.as_ptr()))
}

/// The agent's MCP endpoint, `https://HOST:PORT/mcp`. Borrowed from the agent: valid until
/// `toolmesh_agent_free`. NULL when `agent` is NULL.
///
/// # Safety
/// `agent` is NULL or a live agent, borrowed for the call.
#[no_mangle]
pub unsafe extern "C" fn toolmesh_agent_endpoint(agent: *const toolmesh_agent) -> *const c_char {
    // SAFETY: NULL or live, as the caller guarantees.
    catch_panic(ptr::null(), || unsafe { agent.as_ref() }.map_or(ptr::null(), |a| a.endpoint.as_ptr()))
}

/// Waits up to `timeout_ms` for the registry to accept the agent. Returns `TOOLMESH_OK` once it
/// is registered, or an error, also written to `*error_out`: `TOOLMESH_TIMEOUT` when the registry
/// has not accepted it in time (it keeps trying in the background), `TOOLMESH_INVALID_CONFIG`
/// when the agent has no registry (option `registry_url` unset) and so never registers,
/// `TOOLMESH_SHUTDOWN` once the agent is stopped, `TOOLMESH_NULL_ARGUMENT` for a NULL agent and
/// `TOOLMESH_WRONG_THREAD` on a toolmesh runtime thread (where it cannot block).
///
/// # Safety
/// `agent` is NULL or a live agent, borrowed for the call. `error_out` is NULL or points to storage
/// for one pointer (borrowed for the call) that receives, on failure only, a new `toolmesh_error`
/// owned by the caller, who frees it with `toolmesh_error_free`.
#[no_mangle]
pub unsafe extern "C" fn toolmesh_agent_wait_registered(
    agent: *const toolmesh_agent,
    timeout_ms: u32,
    error_out: *mut *mut toolmesh_error,
) -> toolmesh_result {
    let outcome = guarded("toolmesh_agent_wait_registered", || {
        // SAFETY: NULL or live, as the caller guarantees.
        let agent = unsafe { handle_arg(agent, "agent") }?;
        ensure_blocking_allowed("toolmesh_agent_wait_registered")?;
        let stopped = || Failure::new(TOOLMESH_SHUTDOWN, "the agent is stopped; it no longer registers with the registry");
        if agent.stopped.load(Ordering::Acquire) {
            return Err(stopped());
        }
        let Some(registry) = &agent.registry_url else {
            return Err(Failure::new(
                TOOLMESH_INVALID_CONFIG,
                "the agent has no registry, so it never registers; set the option registry_url (or TOOLMESH_REGISTRY_URL)",
            ));
        };
        if runtime::runtime().block_on(agent.agent.wait_registered(Duration::from_millis(timeout_ms.into()))) {
            return Ok(());
        }
        if agent.stopped.load(Ordering::Acquire) {
            return Err(stopped());
        }
        Err(Failure::new(
            TOOLMESH_TIMEOUT,
            format!(
                "the registry at {registry} did not accept agent '{}' within {timeout_ms} ms; check that it runs and trusts the \
                 agent's certificate (the agent keeps trying)",
                agent.id.to_string_lossy()
            ),
        ))
    });
    // SAFETY: `error_out` is NULL or writable, as the caller guarantees.
    unsafe { report(outcome, error_out) }
}

/// Announces that the resource at `uri` changed: the MCP clients subscribed to it (a legacy
/// session's `resources/subscribe`, a modern `subscriptions/listen`) get
/// `notifications/resources/updated`. Writes to `*reached_out` (when not NULL) how many
/// subscription streams it went out on. Errors, also written to `*error_out`:
/// `TOOLMESH_INVALID_CONFIG` for a URI that is none of the agent's resources (declared, or
/// matched by a template), `TOOLMESH_NULL_ARGUMENT` for a NULL agent or uri. Does not block.
///
/// # Safety
/// `agent` is NULL or a live agent and `uri` NULL or a NUL-terminated string, both borrowed for
/// the call. `reached_out` is NULL or points to storage for one `uint32_t`. `error_out` is as for
/// `toolmesh_agent_stop`.
#[no_mangle]
pub unsafe extern "C" fn toolmesh_agent_notify_resource_updated(
    agent: *const toolmesh_agent,
    uri: *const c_char,
    reached_out: *mut u32,
    error_out: *mut *mut toolmesh_error,
) -> toolmesh_result {
    let outcome = guarded("toolmesh_agent_notify_resource_updated", || {
        // SAFETY: NULL or live, as the caller guarantees.
        let agent = unsafe { handle_arg(agent, "agent") }?;
        // SAFETY: NULL or NUL-terminated, as the caller guarantees.
        let uri = unsafe { str_arg(uri, "uri") }?;
        let reached = agent.agent.notify_resource_updated(uri)?;
        if !reached_out.is_null() {
            // SAFETY: not NULL, and writable as the caller guarantees.
            unsafe { reached_out.write(u32::try_from(reached).unwrap_or(u32::MAX)) };
        }
        Ok(())
    });
    // SAFETY: `error_out` is NULL or writable, as the caller guarantees.
    unsafe { report(outcome, error_out) }
}

/// Stops the agent: deregisters, keeps serving briefly so callers learn of it, then lets
/// in-flight calls finish (for at most a few seconds). Blocks until then. New dependency calls
/// fail with `TOOLMESH_SHUTDOWN`. Calling it again does nothing; the agent must still be freed.
/// Not on a toolmesh runtime thread (`TOOLMESH_WRONG_THREAD`).
///
/// # Safety
/// `agent` is NULL or a live agent, borrowed for the call (still the caller's to free). `error_out`
/// is NULL or points to storage for one pointer (borrowed for the call) that receives, on failure
/// only, a new `toolmesh_error` owned by the caller, who frees it with `toolmesh_error_free`.
#[no_mangle]
pub unsafe extern "C" fn toolmesh_agent_stop(
    agent: *const toolmesh_agent,
    error_out: *mut *mut toolmesh_error,
) -> toolmesh_result {
    let outcome = guarded("toolmesh_agent_stop", || {
        // SAFETY: NULL or live, as the caller guarantees.
        let agent = unsafe { handle_arg(agent, "agent") }?;
        ensure_blocking_allowed("toolmesh_agent_stop")?;
        agent.stopped.store(true, Ordering::Release);
        runtime::runtime().block_on(agent.agent.shutdown());
        Ok(())
    });
    // SAFETY: `error_out` is NULL or writable, as the caller guarantees.
    unsafe { report(outcome, error_out) }
}

/// Stops the agent if it still runs (see `toolmesh_agent_stop`) and frees it. Returns once the
/// agent has let go of its handler (its `free_userdata` has run), or after 10 seconds if an
/// invocation is still unanswered or a dependency call still running; `free_userdata` then
/// runs when they end. Dependency calls in flight still deliver their completion. Freeing NULL
/// does nothing.
///
/// # Safety
/// `agent` is NULL or an agent from `toolmesh_agent_start`, not freed before; it is owned by
/// this call and must not be used afterwards.
#[no_mangle]
pub unsafe extern "C" fn toolmesh_agent_free(agent: *mut toolmesh_agent) {
    catch_panic((), || {
        if agent.is_null() {
            return;
        }
        // SAFETY: created by `Box::into_raw` in `toolmesh_agent_start`, freed once.
        let agent = unsafe { Box::from_raw(agent) };
        if ensure_blocking_allowed("toolmesh_agent_free").is_err() {
            // Dropped without waiting: core stops the server and registration when the last
            // reference goes.
            return;
        }
        runtime::runtime().block_on(agent.agent.shutdown());
        let released = agent.handler_released.clone();
        drop(agent);
        released.wait(HANDLER_RELEASE_TIMEOUT);
    })
}
