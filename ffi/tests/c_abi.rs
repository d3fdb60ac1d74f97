//! The C ABI driven the way C drives it: raw pointers, C callbacks, real agents over mTLS.
//! (The C programs in tests/c run the same paths under AddressSanitizer and valgrind.)

use serde_json::{json, Value};
use std::ffi::{c_char, c_void, CStr, CString};
use std::path::PathBuf;
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};
use toolmesh::error::*;
use toolmesh::handler::toolmesh_handler;
use toolmesh::handles::agent::*;
use toolmesh::handles::config::*;
use toolmesh::handles::invocation::*;
use toolmesh::result::*;
use toolmesh_ca::{write_pair, CertificateAuthority, LeafRequest, Role, DEFAULT_TRUST_DOMAIN};

/// Every wait in these tests is bounded by this.
const WAIT: Duration = Duration::from_secs(10);

/// A directory with a mesh CA and certificates issued from it; removed at the end.
struct Certs {
    dir: PathBuf,
}

impl Certs {
    fn new(names: &[&str]) -> Certs {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let unique = format!("toolmesh-ffi-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst));
        let dir = std::env::temp_dir().join(unique);
        std::fs::create_dir_all(&dir).unwrap();
        let ca = CertificateAuthority::generate("ffi test CA", 2).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.cert_pem()).unwrap();
        for name in names {
            let issued = ca.issue(&LeafRequest::new(name, Role::Agent, DEFAULT_TRUST_DOMAIN, 2)).unwrap();
            write_pair(&dir, name, &issued, false).unwrap();
        }
        Certs { dir }
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).to_str().unwrap().to_owned()
    }

    /// A configuration for agent `name` with its identity, standalone (no registry).
    fn config(&self, name: &str) -> *mut toolmesh_config {
        let mut config = ptr::null_mut();
        let name_c = CString::new(name).unwrap();
        // SAFETY: valid strings and out-pointer.
        assert_eq!(unsafe { toolmesh_config_new(name_c.as_ptr(), &mut config, ptr::null_mut()) }, TOOLMESH_OK);
        for (key, file) in [("tls_cert", format!("{name}.pem")), ("tls_key", format!("{name}.key")), ("tls_ca", "ca.pem".into())]
        {
            set(config, key, &self.path(&file)).unwrap();
        }
        config
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn set(config: *mut toolmesh_config, key: &str, value: &str) -> Result<(), (toolmesh_result, String)> {
    let (key, value) = (CString::new(key).unwrap(), CString::new(value).unwrap());
    let mut error = ptr::null_mut();
    // SAFETY: a live config, valid strings and out-pointer.
    let code = unsafe { toolmesh_config_set(config, key.as_ptr(), value.as_ptr(), &mut error) };
    check(code, error)
}

/// `Ok` for `TOOLMESH_OK`; otherwise the code and the error's message (and frees the error).
fn check(code: toolmesh_result, error: *mut toolmesh_error) -> Result<(), (toolmesh_result, String)> {
    if code == TOOLMESH_OK {
        assert!(error.is_null(), "an error written on success");
        return Ok(());
    }
    // SAFETY: a failing call wrote a live error; it is freed once, here.
    unsafe {
        assert_eq!(toolmesh_error_code(error), code);
        let message = CStr::from_ptr(toolmesh_error_message(error)).to_str().unwrap().to_owned();
        toolmesh_error_free(error);
        Err((code, message))
    }
}

fn text(ptr: *const c_char) -> Option<String> {
    // SAFETY: toolmesh hands out NULL or NUL-terminated strings.
    (!ptr.is_null()).then(|| unsafe { CStr::from_ptr(ptr) }.to_str().unwrap().to_owned())
}

const TOOLS: &str = r#"[
  {"name": "add", "capability": "add",
   "input_schema": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]}},
  {"name": "sum3", "capability": "sum3", "dependencies": ["add"]},
  {"name": "blocking_sum3", "capability": "blocking_sum3", "dependencies": ["add"]},
  {"name": "slow", "capability": "slow"},
  {"name": "broken", "capability": "broken"},
  {"name": "gives_up", "capability": "gives_up"},
  {"name": "refuse", "capability": "refuse"},
  {"name": "refuse_via", "capability": "refuse_via", "dependencies": ["refuse"]},
  {"name": "watch_cancel", "capability": "watch_cancel"},
  {"name": "client", "capability": "client", "dependencies": ["add", "sum3", "blocking_sum3", "slow", "broken", "gives_up", "refuse", "refuse_via"]}
]"#;

/// The dependencies of `client`, by index.
const ADD: usize = 0;
const SUM3: usize = 1;
const BLOCKING_SUM3: usize = 2;
const SLOW: usize = 3;
const BROKEN: usize = 4;
const GIVES_UP: usize = 5;
const REFUSE: usize = 6;
const REFUSE_VIA: usize = 7;

/// The handler's userdata: what the C side of a real program would keep.
struct Host {
    agent: OnceLock<usize>,
    /// Invocations of `slow` and `watch_cancel`, answered by the test.
    held: Mutex<Vec<usize>>,
    /// How often a `watch_cancel` invocation's cancel callback ran.
    cancels: AtomicUsize,
    freed: Arc<AtomicUsize>,
}

impl Host {
    fn agent(&self) -> *const toolmesh_agent {
        *self.agent.get().expect("the agent is set right after start") as *const toolmesh_agent
    }
}

unsafe extern "C" fn invoke(
    userdata: *mut c_void,
    tool: *const c_char,
    arguments: *const c_char,
    invocation: *mut toolmesh_invocation,
) {
    // SAFETY: userdata is the Host given at start; the strings are valid for this call.
    let (host, tool, args) = unsafe { (&*(userdata as *const Host), text(tool).unwrap(), text(arguments).unwrap()) };
    let args: Value = serde_json::from_str(&args).unwrap();
    let int = |k: &str| args[k].as_i64().unwrap_or(0);
    match tool.as_str() {
        "add" => complete(invocation, &json!(int("a") + int("b"))),
        "sum3" => {
            // Asynchronous: the completion callback answers the invocation.
            let pending = Box::new(Pending { invocation: invocation as usize, add: int("c") });
            let arguments = CString::new(json!({"a": int("a"), "b": int("b")}).to_string()).unwrap();
            // SAFETY: live agent and invocation; the callback owns `pending`.
            let code = unsafe {
                toolmesh::call::toolmesh_agent_call(
                    host.agent(),
                    invocation,
                    c"sum3".as_ptr(),
                    0,
                    arguments.as_ptr(),
                    Some(finish_sum3),
                    Box::into_raw(pending) as *mut c_void,
                    ptr::null_mut(),
                )
            };
            assert_eq!(code, TOOLMESH_OK);
        }
        "blocking_sum3" => {
            // Synchronous: this host thread blocks until the dependency answers, which needs a
            // second host thread for the in-process `add`.
            let arguments = json!({"a": int("a"), "b": int("b")}).to_string();
            let outcome = call_and_wait(host.agent(), invocation, "blocking_sum3", 0, &arguments);
            match outcome {
                (TOOLMESH_OK, sum) => complete(invocation, &json!(sum.parse::<i64>().unwrap() + int("c"))),
                (code, message) => fail_with_code(invocation, code, &message),
            }
        }
        "slow" => host.held.lock().unwrap().push(invocation as usize),
        "watch_cancel" => {
            let mut error = ptr::null_mut();
            // SAFETY: live invocation; the host outlives it.
            let code = unsafe { toolmesh_invocation_on_cancel(invocation, count_cancel, userdata, &mut error) };
            check(code, error).unwrap();
            host.held.lock().unwrap().push(invocation as usize);
        }
        "gives_up" => {
            // Freed unanswered, later and from another thread.
            let invocation = invocation as usize;
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                // SAFETY: an unanswered invocation, freed once.
                unsafe { toolmesh_invocation_free(invocation as *mut toolmesh_invocation) };
            });
        }
        "refuse" => {
            // The tool's own error; the arguments pick its code and data (JSON text).
            let app_code = CString::new(args["code"].as_str().unwrap_or("unknown_sku")).unwrap();
            let data = CString::new(args["data"].as_str().unwrap_or(r#"{"sku": "X"}"#)).unwrap();
            // SAFETY: an unanswered invocation, answered once; the strings outlive the call.
            let code = unsafe {
                toolmesh_invocation_fail_tool_error(
                    invocation,
                    app_code.as_ptr(),
                    c"no such sku: X".as_ptr(),
                    data.as_ptr(),
                    ptr::null_mut(),
                )
            };
            let expected = if args.get("code").is_some() {
                TOOLMESH_HANDLER_FAILED
            } else if args.get("data").is_some() {
                TOOLMESH_INVALID_JSON
            } else {
                TOOLMESH_OK
            };
            assert_eq!(code, expected);
        }
        "refuse_via" => {
            // SAFETY: live agent and invocation; the callback re-raises what `refuse` answered.
            let code = unsafe {
                toolmesh::call::toolmesh_agent_call(
                    host.agent(),
                    invocation,
                    c"refuse_via".as_ptr(),
                    0,
                    c"{}".as_ptr(),
                    Some(reraise),
                    invocation as *mut c_void,
                    ptr::null_mut(),
                )
            };
            assert_eq!(code, TOOLMESH_OK);
        }
        "broken" => {
            // SAFETY: an unanswered invocation, answered once.
            let code = unsafe { toolmesh_invocation_complete(invocation, c"{not json".as_ptr(), ptr::null_mut()) };
            assert_eq!(code, TOOLMESH_INVALID_JSON);
        }
        other => panic!("no tool {other}"),
    }
}

extern "C" fn count_cancel(userdata: *mut c_void) {
    // SAFETY: the Host given at start, which outlives its invocations.
    unsafe { &*(userdata as *const Host) }.cancels.fetch_add(1, Ordering::SeqCst);
}

struct Pending {
    invocation: usize,
    add: i64,
}

/// Answers the invocation (the userdata) with the error its dependency call got, intact.
unsafe extern "C" fn reraise(userdata: *mut c_void, code: toolmesh_result, _text: *const c_char, error: *const toolmesh_error) {
    assert_ne!(code, TOOLMESH_OK);
    // SAFETY: an unanswered invocation, answered once; `error` is borrowed for this callback.
    assert_eq!(
        unsafe { toolmesh_invocation_fail_with_error(userdata as *mut toolmesh_invocation, error, ptr::null_mut()) },
        TOOLMESH_OK
    );
}

unsafe extern "C" fn finish_sum3(
    userdata: *mut c_void,
    code: toolmesh_result,
    text_ptr: *const c_char,
    _: *const toolmesh_error,
) {
    // SAFETY: `userdata` is the Pending boxed by `invoke`, delivered once.
    let pending = unsafe { Box::from_raw(userdata as *mut Pending) };
    let invocation = pending.invocation as *mut toolmesh_invocation;
    match (code, text(text_ptr).unwrap()) {
        (TOOLMESH_OK, sum) => complete(invocation, &json!(sum.parse::<i64>().unwrap() + pending.add)),
        (code, message) => fail_with_code(invocation, code, &message),
    }
}

unsafe extern "C" fn free_host(userdata: *mut c_void) {
    // SAFETY: the Host boxed at start, released once by toolmesh.
    let host = unsafe { Box::from_raw(userdata as *mut Host) };
    host.freed.fetch_add(1, Ordering::SeqCst);
}

fn complete(invocation: *mut toolmesh_invocation, value: &Value) {
    let json = CString::new(value.to_string()).unwrap();
    // SAFETY: an unanswered invocation, answered once.
    assert_eq!(unsafe { toolmesh_invocation_complete(invocation, json.as_ptr(), ptr::null_mut()) }, TOOLMESH_OK);
}

fn fail_with_code(invocation: *mut toolmesh_invocation, code: toolmesh_result, message: &str) {
    let message = CString::new(message).unwrap();
    // SAFETY: an unanswered invocation, answered once.
    assert_eq!(unsafe { toolmesh_invocation_fail_with_code(invocation, code, message.as_ptr(), ptr::null_mut()) }, TOOLMESH_OK);
}

/// What the completion callbacks of the calls a test made received, in order.
#[derive(Default)]
struct Outcomes {
    received: Mutex<Vec<(toolmesh_result, String)>>,
    changed: Condvar,
}

impl Outcomes {
    /// Waits until `count` outcomes arrived; all of them.
    fn wait_for(&self, count: usize) -> Vec<(toolmesh_result, String)> {
        let received = self.received.lock().unwrap();
        let (received, _) = self.changed.wait_timeout_while(received, WAIT, |r| r.len() < count).unwrap();
        assert!(received.len() >= count, "{} of {count} completions arrived: {received:?}", received.len());
        received.clone()
    }
}

/// Records the code and the text; for a tool error, `app_code: text data`.
unsafe extern "C" fn record_outcome(
    userdata: *mut c_void,
    code: toolmesh_result,
    text_ptr: *const c_char,
    error: *const toolmesh_error,
) {
    // SAFETY: the tests pass an `Outcomes` that outlives their calls.
    let outcomes = unsafe { &*(userdata as *const Outcomes) };
    let mut said = text(text_ptr).unwrap();
    // SAFETY: `error` is NULL or borrowed for this callback; its strings are NULL or NUL-terminated.
    if let Some(app_code) = text(unsafe { toolmesh_error_app_code(error) }) {
        // SAFETY: as above.
        let data = text(unsafe { toolmesh_error_data_json(error) }).unwrap_or_default();
        said = format!("{app_code}: {said} {data}");
    }
    outcomes.received.lock().unwrap().push((code, said));
    outcomes.changed.notify_all();
}

fn start_call(
    agent: *const toolmesh_agent,
    invocation: *const toolmesh_invocation,
    tool: &str,
    dependency: usize,
    arguments: &str,
    outcomes: &Outcomes,
) {
    let (tool, arguments) = (CString::new(tool).unwrap(), CString::new(arguments).unwrap());
    let userdata = outcomes as *const Outcomes as *mut c_void;
    let mut error = ptr::null_mut();
    // SAFETY: live agent, valid strings; `outcomes` outlives the call.
    let code = unsafe {
        toolmesh::call::toolmesh_agent_call(
            agent,
            invocation,
            tool.as_ptr(),
            dependency,
            arguments.as_ptr(),
            Some(record_outcome),
            userdata,
            &mut error,
        )
    };
    check(code, error).unwrap();
}

fn call_and_wait(
    agent: *const toolmesh_agent,
    invocation: *const toolmesh_invocation,
    tool: &str,
    dependency: usize,
    arguments: &str,
) -> (toolmesh_result, String) {
    let outcomes = Outcomes::default();
    start_call(agent, invocation, tool, dependency, arguments, &outcomes);
    let mut received = outcomes.wait_for(1);
    // A second completion would arrive right after the first; give it the chance to.
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(outcomes.received.lock().unwrap().len(), 1, "delivered more than once");
    received.remove(0)
}

/// A started agent with the test handler, and the counter of its handler releases.
fn start(certs: &Certs, name: &str) -> (*mut toolmesh_agent, Arc<AtomicUsize>, *const Host) {
    let config = certs.config(name);
    let freed = Arc::new(AtomicUsize::new(0));
    let host = Box::into_raw(Box::new(Host {
        agent: OnceLock::new(),
        held: Mutex::default(),
        cancels: AtomicUsize::new(0),
        freed: freed.clone(),
    }));
    let handler = toolmesh_handler {
        userdata: host as *mut c_void,
        invoke: Some(invoke),
        free_userdata: Some(free_host),
        invoke_catalog: None,
    };
    let tools = CString::new(TOOLS).unwrap();
    let mut agent = ptr::null_mut();
    let mut error = ptr::null_mut();
    // SAFETY: live config, valid strings and out-pointers; the handler contract holds.
    let code = unsafe { toolmesh_agent_start(config, tools.as_ptr(), handler, &mut agent, &mut error) };
    check(code, error).unwrap();
    // SAFETY: freed once; the agent only borrowed it.
    unsafe { toolmesh_config_free(config) };
    // SAFETY: toolmesh owns `host` until it calls free_host, which is after the agent is freed.
    unsafe { &*host }.agent.set(agent as usize).unwrap();
    (agent, freed, host)
}

/// Polls `condition` until it holds, for at most `WAIT`.
fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn chained_calls_through_a_c_handler() {
    let certs = Certs::new(&["calc"]);
    let (agent, freed, _) = start(&certs, "calc");
    // SAFETY: a live agent; the strings are borrowed from it while it lives.
    let (endpoint, id) = unsafe { (text(toolmesh_agent_endpoint(agent)).unwrap(), text(toolmesh_agent_id(agent)).unwrap()) };
    assert!(endpoint.starts_with("https://127.0.0.1:") && endpoint.ends_with("/mcp"), "{endpoint}");
    assert!(id.starts_with("calc-"), "{id}");
    // Without a registry, dependencies resolve to the agent's own tools, called in process.
    assert_eq!(call_and_wait(agent, ptr::null(), "client", ADD, r#"{"a": 2, "b": 3}"#), (TOOLMESH_OK, "5".into()));
    // A handler answering from its call's completion callback, and one blocking its host thread
    // on a call whose `add` needs a second host thread.
    assert_eq!(call_and_wait(agent, ptr::null(), "client", SUM3, r#"{"a": 1, "b": 2, "c": 3}"#), (TOOLMESH_OK, "6".into()));
    assert_eq!(
        call_and_wait(agent, ptr::null(), "client", BLOCKING_SUM3, r#"{"a": 1, "b": 2, "c": 4}"#),
        (TOOLMESH_OK, "7".into())
    );
    // Core's errors and messages, unchanged.
    assert_eq!(
        call_and_wait(agent, ptr::null(), "client", ADD, r#"{"a": 2}"#),
        (TOOLMESH_INVALID_ARGUMENTS, "tool 'add': missing required argument(s): b".into())
    );
    assert_eq!(
        call_and_wait(agent, ptr::null(), "client", 9, "{}"),
        (TOOLMESH_UNKNOWN_DEPENDENCY, "tool 'client' declares 8 dependencies; there is no dependency #9".into())
    );
    // A handler that gives up (the core's HANDLER_DROPPED): its caller learns so at once,
    // exactly once, as a tool failure, as for every handler error.
    assert_eq!(
        call_and_wait(agent, ptr::null(), "client", GIVES_UP, "{}"),
        (TOOLMESH_TOOL_FAILED, "tool 'gives_up' ended without an answer".into())
    );
    // A tool error: its code, message and data reach the caller, also through a handler that
    // re-raises the error its own call got; a refused code or data that is not JSON is a failure.
    let refused = (TOOLMESH_TOOL_ERROR, r#"unknown_sku: no such sku: X {"sku":"X"}"#.to_owned());
    assert_eq!(call_and_wait(agent, ptr::null(), "client", REFUSE, "{}"), refused);
    assert_eq!(call_and_wait(agent, ptr::null(), "client", REFUSE_VIA, "{}"), refused);
    let (code, message) = call_and_wait(agent, ptr::null(), "client", REFUSE, r#"{"code": "no spaces"}"#);
    assert_eq!(code, TOOLMESH_TOOL_FAILED);
    assert!(
        message.starts_with(
            "tool 'refuse' failed: it raised a tool error whose code is refused: the error code \"no spaces\" is not valid"
        ),
        "{message}"
    );
    assert_eq!(
        call_and_wait(agent, ptr::null(), "client", REFUSE, r#"{"data": "{nope"}"#),
        (TOOLMESH_TOOL_FAILED, "tool 'refuse' failed: it raised a tool error (\"unknown_sku\") whose data is not JSON; the agent serving it logs why".into())
    );
    let (code, message) = call_and_wait(agent, ptr::null(), "client", BROKEN, "{}");
    assert_eq!(code, TOOLMESH_TOOL_FAILED);
    assert_eq!(message, "tool 'broken' returned a value that is not JSON; the agent serving it logs why");
    // SAFETY: freed once, not used after.
    unsafe { toolmesh_agent_free(agent) };
    assert_eq!(freed.load(Ordering::SeqCst), 1, "free_userdata runs once, before toolmesh_agent_free returns");
}

#[test]
fn a_c_handler_sees_its_request_cancelled_by_flag_and_by_callback() {
    let certs = Certs::new(&["watcher", "caller"]);
    let (agent, _, host) = start(&certs, "watcher");
    // SAFETY: a live agent; the endpoint is borrowed from it while it lives.
    let endpoint = unsafe { text(toolmesh_agent_endpoint(agent)).unwrap() };
    // SAFETY: the host lives until the agent is freed, at the end.
    let host = unsafe { &*host };
    // A caller whose deadline passes while the C handler holds the invocation.
    let files = toolmesh_core::tls::TlsFiles {
        cert: certs.path("caller.pem").into(),
        key: certs.path("caller.key").into(),
        ca: certs.path("ca.pem").into(),
    };
    let identity = toolmesh_core::tls::Identity::load(&files).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let call = std::thread::spawn(move || {
        runtime.block_on(async {
            let client = toolmesh_core::mcp::McpClient::new(&identity).unwrap();
            let deadline = tokio::time::Instant::now() + Duration::from_millis(300);
            let context = toolmesh_core::context::RequestContext { deadline: Some(deadline), ..Default::default() };
            client.call_tool(&endpoint, "watch_cancel", &json!({}), &context).await.map_err(|e| e.error.kind())
        })
    });
    eventually("the watch_cancel call reached its handler", || !host.held.lock().unwrap().is_empty());
    let invocation = host.held.lock().unwrap()[0] as *mut toolmesh_invocation;
    // SAFETY: a live, unanswered invocation.
    assert!(!unsafe { toolmesh_invocation_cancelled(invocation) }, "not before the deadline");
    eventually("the cancel callback ran at the deadline", || host.cancels.load(Ordering::SeqCst) == 1);
    // SAFETY: as above.
    assert!(unsafe { toolmesh_invocation_cancelled(invocation) });
    host.held.lock().unwrap().clear();
    // SAFETY: answered once; the callback never runs after.
    unsafe { toolmesh_invocation_free(invocation) };
    let outcome = call.join().unwrap();
    assert!(outcome.is_err(), "{outcome:?}");
    assert_eq!(host.cancels.load(Ordering::SeqCst), 1, "once");
    // SAFETY: freed once, not used after.
    unsafe { toolmesh_agent_free(agent) };
}

#[test]
fn a_call_in_flight_when_the_agent_stops_completes_exactly_once() {
    let certs = Certs::new(&["stopper"]);
    let (agent, freed, host) = start(&certs, "stopper");
    let outcomes = Outcomes::default();
    start_call(agent, ptr::null(), "client", SLOW, "{}", &outcomes);
    // SAFETY: the host lives until free_userdata, which cannot run before the agent is freed.
    let held = || unsafe { &*host }.held.lock().unwrap().pop();
    let deadline = Instant::now() + WAIT;
    let invocation = loop {
        if let Some(invocation) = held() {
            break invocation;
        }
        assert!(Instant::now() < deadline, "the slow tool was never invoked");
        std::thread::sleep(Duration::from_millis(10));
    };
    // The tool answers while the agent is being stopped and freed.
    let answer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        complete(invocation as *mut toolmesh_invocation, &json!("late"));
    });
    let stopping = Instant::now();
    // SAFETY: a live agent, freed once.
    unsafe { toolmesh_agent_free(agent) };
    assert!(stopping.elapsed() < WAIT, "free waited for the full release timeout");
    answer.join().unwrap();
    assert_eq!(outcomes.wait_for(1), [(TOOLMESH_OK, "\"late\"".to_owned())]);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(outcomes.received.lock().unwrap().len(), 1, "delivered more than once");
    assert_eq!(freed.load(Ordering::SeqCst), 1);
}

#[test]
fn a_call_on_a_stopped_agent_completes_with_shutdown() {
    let certs = Certs::new(&["stopped"]);
    let (agent, _, _) = start(&certs, "stopped");
    let mut error = ptr::null_mut();
    // SAFETY: a live agent; stopping twice is allowed.
    unsafe {
        check(toolmesh_agent_stop(agent, &mut error), error).unwrap();
        check(toolmesh_agent_stop(agent, &mut error), error).unwrap();
    }
    assert_eq!(
        call_and_wait(agent, ptr::null(), "client", ADD, r#"{"a": 1, "b": 1}"#),
        (TOOLMESH_SHUTDOWN, "the agent is shutting down; no new calls are made".into())
    );
    // SAFETY: freed once.
    unsafe { toolmesh_agent_free(agent) };
}

#[test]
fn waiting_for_registration_says_why_it_did_not_happen() {
    let certs = Certs::new(&["waiter"]);
    let (standalone, _, _) = start(&certs, "waiter");
    let wait = |agent: *const toolmesh_agent, timeout_ms: u32| {
        let mut error = ptr::null_mut();
        // SAFETY: a live agent and a valid out-pointer.
        let code = unsafe { toolmesh_agent_wait_registered(agent, timeout_ms, &mut error) };
        check(code, error)
    };
    let (code, message) = wait(standalone, 10).unwrap_err();
    assert_eq!(code, TOOLMESH_INVALID_CONFIG);
    assert!(message.starts_with("the agent has no registry, so it never registers; set the option registry_url"), "{message}");
    // On a runtime thread it would block a worker: refused, not deadlocked.
    let on_runtime = toolmesh_core::runtime::runtime().block_on(async { wait(standalone, 10) });
    assert_eq!(on_runtime.unwrap_err().0, TOOLMESH_WRONG_THREAD);
    let mut error = ptr::null_mut();
    // SAFETY: a live agent.
    unsafe { check(toolmesh_agent_stop(standalone, &mut error), error).unwrap() };
    assert_eq!(wait(standalone, 10).unwrap_err().0, TOOLMESH_SHUTDOWN);
    // SAFETY: freed once.
    unsafe { toolmesh_agent_free(standalone) };

    // A registry nobody listens at: the agent starts, and keeps trying in the background.
    let config = certs.config("waiter");
    set(config, "registry_url", "https://127.0.0.1:1").unwrap();
    let host = Box::into_raw(Box::new(Host {
        agent: OnceLock::new(),
        held: Mutex::default(),
        cancels: AtomicUsize::new(0),
        freed: Arc::default(),
    }));
    let handler = toolmesh_handler {
        userdata: host as *mut c_void,
        invoke: Some(invoke),
        free_userdata: Some(free_host),
        invoke_catalog: None,
    };
    let mut agent = ptr::null_mut();
    let mut error = ptr::null_mut();
    // SAFETY: live config, valid strings and out-pointers; the handler contract holds.
    unsafe { check(toolmesh_agent_start(config, c"[]".as_ptr(), handler, &mut agent, &mut error), error).unwrap() };
    // SAFETY: freed once.
    unsafe { toolmesh_config_free(config) };
    let (code, message) = wait(agent, 200).unwrap_err();
    assert_eq!(code, TOOLMESH_TIMEOUT);
    assert!(message.starts_with("the registry at https://127.0.0.1:1 did not accept agent 'waiter-"), "{message}");
    assert!(
        message.ends_with("within 200 ms; check that it runs and trusts the agent's certificate (the agent keeps trying)"),
        "{message}"
    );
    // SAFETY: freed once.
    unsafe { toolmesh_agent_free(agent) };
}

#[test]
fn a_failed_start_reports_core_errors_and_still_releases_the_handler() {
    let certs = Certs::new(&["good"]);
    let freed = Arc::new(AtomicUsize::new(0));
    let attempt = |config: *const toolmesh_config, tools: &CStr, invoke_fn: toolmesh::handler::toolmesh_invoke_fn| {
        let host =
            Box::new(Host { agent: OnceLock::new(), held: Mutex::default(), cancels: AtomicUsize::new(0), freed: freed.clone() });
        let handler = toolmesh_handler {
            userdata: Box::into_raw(host) as *mut c_void,
            invoke: invoke_fn,
            free_userdata: Some(free_host),
            invoke_catalog: None,
        };
        let mut agent = ptr::null_mut();
        let mut error = ptr::null_mut();
        // SAFETY: valid arguments; the handler is taken over in every case.
        let code = unsafe { toolmesh_agent_start(config, tools.as_ptr(), handler, &mut agent, &mut error) };
        assert!(agent.is_null(), "an output written on failure");
        check(code, error).unwrap_err()
    };
    let config = certs.config("good");
    set(config, "tls_cert", &certs.path("missing.pem")).unwrap();
    let (code, message) = attempt(config, c"[]", Some(invoke));
    assert_eq!(code, TOOLMESH_CERTIFICATE_FILE);
    assert!(message.contains("missing.pem"), "{message}");
    set(config, "tls_cert", &certs.path("good.pem")).unwrap();
    let (code, message) = attempt(config, c"[{\"capability\": \"x\"}]", Some(invoke));
    assert_eq!(code, TOOLMESH_INVALID_CONFIG);
    assert!(message.starts_with("the tool definitions are not valid: missing field `name`"), "{message}");
    assert_eq!(attempt(config, c"[]", None), (TOOLMESH_NULL_ARGUMENT, "the argument 'handler.invoke' is NULL".to_owned()));
    assert_eq!(attempt(ptr::null(), c"[]", Some(invoke)), (TOOLMESH_NULL_ARGUMENT, "the argument 'config' is NULL".to_owned()));
    eventually("every handler to be released", || freed.load(Ordering::SeqCst) == 4);
    // SAFETY: freed once.
    unsafe { toolmesh_config_free(config) };
}

#[test]
fn configuration_errors_are_the_cores() {
    let mut config = ptr::null_mut();
    let mut error = ptr::null_mut();
    // SAFETY: valid strings and out-pointers.
    let code = unsafe { toolmesh_config_new(c" ".as_ptr(), &mut config, &mut error) };
    assert_eq!(check(code, error), Err((TOOLMESH_INVALID_CONFIG, "an agent needs a non-empty name".to_owned())));
    assert!(config.is_null());
    // SAFETY: as above; the name is not UTF-8.
    let code = unsafe { toolmesh_config_new(c"\xff".as_ptr(), &mut config, &mut error) };
    assert_eq!(check(code, error).unwrap_err().0, TOOLMESH_INVALID_UTF8);
    // SAFETY: as above.
    let code = unsafe { toolmesh_config_new(c"calc".as_ptr(), &mut config, ptr::null_mut()) };
    assert_eq!(code, TOOLMESH_OK);
    assert_eq!(
        set(config, "port", "http"),
        Err((TOOLMESH_INVALID_CONFIG, "port 'http' is not a number from 0 to 65535 (0 picks a free port)".into()))
    );
    assert_eq!(set(config, "registry_url", "http://127.0.0.1:1").unwrap_err().0, TOOLMESH_REGISTRY_URL_NOT_HTTPS);
    assert!(set(config, "bogus", "1").unwrap_err().1.starts_with("unknown option 'bogus'"));
    // SAFETY: freed once.
    unsafe { toolmesh_config_free(config) };
}

#[test]
fn null_arguments_fail_cleanly_and_freeing_null_does_nothing() {
    let mut error = ptr::null_mut();
    let mut config = ptr::null_mut();
    let mut agent = ptr::null_mut();
    let handler = toolmesh_handler { userdata: ptr::null_mut(), invoke: Some(invoke), free_userdata: None, invoke_catalog: None };
    // SAFETY: every pointer is NULL or valid; NULL is what is being tested.
    unsafe {
        assert_eq!(
            check(toolmesh_config_new(ptr::null(), &mut config, &mut error), error).unwrap_err().1,
            "the argument 'name' is NULL"
        );
        assert_eq!(toolmesh_config_new(c"x".as_ptr(), ptr::null_mut(), ptr::null_mut()), TOOLMESH_NULL_ARGUMENT);
        assert_eq!(
            toolmesh_config_set(ptr::null_mut(), c"port".as_ptr(), c"1".as_ptr(), ptr::null_mut()),
            TOOLMESH_NULL_ARGUMENT
        );
        assert_eq!(
            toolmesh_agent_start(ptr::null(), c"[]".as_ptr(), handler, &mut agent, ptr::null_mut()),
            TOOLMESH_NULL_ARGUMENT
        );
        assert_eq!(toolmesh_agent_stop(ptr::null(), ptr::null_mut()), TOOLMESH_NULL_ARGUMENT);
        assert_eq!(toolmesh_agent_wait_registered(ptr::null(), 10, ptr::null_mut()), TOOLMESH_NULL_ARGUMENT);
        assert!(toolmesh_agent_id(ptr::null()).is_null());
        assert!(toolmesh_agent_endpoint(ptr::null()).is_null());
        let code = toolmesh::call::toolmesh_agent_call(
            ptr::null(),
            ptr::null(),
            c"t".as_ptr(),
            0,
            c"{}".as_ptr(),
            Some(record_outcome),
            ptr::null_mut(),
            ptr::null_mut(),
        );
        assert_eq!(code, TOOLMESH_NULL_ARGUMENT);
        assert!(toolmesh_invocation_header(ptr::null(), c"x".as_ptr()).is_null());
        assert!(toolmesh_invocation_trace_id(ptr::null()).is_null());
        assert_eq!(toolmesh_invocation_complete(ptr::null_mut(), c"1".as_ptr(), ptr::null_mut()), TOOLMESH_NULL_ARGUMENT);
        assert_eq!(toolmesh_invocation_fail(ptr::null_mut(), c"m".as_ptr(), ptr::null_mut()), TOOLMESH_NULL_ARGUMENT);
        assert_eq!(toolmesh_invocation_complete_result(ptr::null_mut(), c"{}".as_ptr(), ptr::null_mut()), TOOLMESH_NULL_ARGUMENT);
        assert_eq!(
            toolmesh_invocation_progress(ptr::null(), 1.0, f64::NAN, ptr::null(), ptr::null_mut()),
            TOOLMESH_NULL_ARGUMENT
        );
        assert_eq!(
            toolmesh_invocation_log(ptr::null(), c"info".as_ptr(), ptr::null(), c"1".as_ptr(), ptr::null_mut()),
            TOOLMESH_NULL_ARGUMENT
        );
        assert_eq!(
            toolmesh_invocation_fail_with_code(ptr::null_mut(), 5002, c"m".as_ptr(), ptr::null_mut()),
            TOOLMESH_NULL_ARGUMENT
        );
        assert_eq!(toolmesh_error_code(ptr::null()), TOOLMESH_NULL_ARGUMENT);
        assert_eq!(CStr::from_ptr(toolmesh_error_message(ptr::null())), c"");
        toolmesh_error_free(ptr::null_mut());
        toolmesh_config_free(ptr::null_mut());
        toolmesh_agent_free(ptr::null_mut());
        toolmesh_invocation_free(ptr::null_mut());
    }
    assert!(config.is_null() && agent.is_null());
}
