//! `toolmesh call` on a long call (issue 14): a registry process and a chain a → b → c of real
//! agents on mTLS listeners, called by the real `toolmesh` binary. c's progress, relayed by b and
//! a, reaches the command's stderr as plain lines while stdout keeps the result alone (on a
//! terminal, as a bar redrawn in place and cleared before the result); SIGINT to
//! the command cancels c's request through both hops and exits 130. `toolmesh call --task`
//! starts a task at one of two providers, and `toolmesh task get|wait|cancel` reach that one;
//! once it is gone, they say the task ended with it.

mod common;

use common::{run, toolmesh, wait_until, Certs, RegistryProcess};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use toolmesh_core::agent::Agent;
use toolmesh_core::context::RequestContext;
use toolmesh_core::host::{Completion, FnHandler, HostError, ToolInvocation};
use toolmesh_core::mcp::McpClient;
use toolmesh_core::registry_api::ToolInfo;
use toolmesh_core::tls::{Identity, TlsFiles};

/// What the issue allows a cancellation per hop.
const PER_HOP: Duration = Duration::from_millis(100);

/// The chain's handlers: `c` reports 1..=3 of 3, then answers `{"from": "c"}` or, with
/// `{"hang": true}`, waits for its request's cancellation and reports the instant it saw it.
/// `b` calls `c` and `a` calls `b`, each with nothing but its request's context.
struct Chain {
    agents: Vec<Agent>,
    cancelled: mpsc::UnboundedReceiver<Instant>,
    running: Arc<AtomicUsize>,
}

async fn chain(certs: &Certs, registry_url: &str) -> Chain {
    let (report, cancelled) = mpsc::unbounded_channel();
    let running = Arc::new(AtomicUsize::new(0));
    let mut agents = Vec::new();
    for (name, dependency) in [("c", None), ("b", Some("c")), ("a", Some("b"))] {
        let mut config = certs.agent_config(name, registry_url);
        config.set("health_port", "off").expect("agent option");
        let dependencies: Vec<&str> = dependency.into_iter().collect();
        let tools: Vec<ToolInfo> =
            serde_json::from_value(json!([{"name": name, "capability": name, "dependencies": dependencies}])).expect("tools");
        let me: Arc<OnceLock<Agent>> = Arc::default();
        let handler = {
            let (me, report, running) = (me.clone(), report.clone(), running.clone());
            FnHandler(move |call: ToolInvocation, done: Completion| {
                let (me, report, running) = (me.clone(), report.clone(), running.clone());
                running.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let context = call.context.clone();
                    if call.tool == "c" {
                        for step in 1..=3 {
                            context.progress(f64::from(step), Some(3.0), Some(&format!("c step {step}")));
                        }
                        if call.arguments["hang"] == json!(true) {
                            let waited = tokio::time::timeout(Duration::from_secs(20), context.cancelled()).await;
                            if waited.is_ok() {
                                let _ = report.send(Instant::now());
                            }
                            done.err("cancelled");
                        } else {
                            done.ok(json!({"from": "c"}));
                        }
                    } else {
                        let agent = me.get().expect("the agent is set once started");
                        match agent.call(&call.tool, 0, call.arguments.clone(), Some(context)).await {
                            Ok(value) => done.ok(value),
                            Err(e) => done.complete(Err(HostError { message: e.message().to_owned(), mesh_error: Some(e) })),
                        }
                    }
                    running.fetch_sub(1, Ordering::SeqCst);
                });
            })
        };
        let agent = Agent::start(config, tools, Arc::new(handler)).await.expect("start agent");
        let _ = me.set(agent.clone());
        assert!(agent.wait_registered(Duration::from_secs(10)).await, "{name} did not register");
        agents.push(agent);
    }
    // Until a's dependency (and b's) resolved: the chain answers a plain call.
    let operator =
        Identity::load(&TlsFiles { cert: certs.path("operator.pem"), key: certs.path("operator.key"), ca: certs.path("ca.pem") })
            .expect("operator identity");
    let client = McpClient::new(&operator).expect("client");
    let a = agents.last().expect("a").endpoint().to_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Err(e) = client.call_tool(&a, "a", &json!({}), &RequestContext::default()).await {
        assert!(Instant::now() < deadline, "the chain never answered: {}", e.error);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Chain { agents, cancelled, running }
}

fn progress_lines() -> Vec<String> {
    (1..=3).map(|step| format!("progress {step}/3: c step {step}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_prints_relayed_progress_on_stderr_and_the_result_alone_on_stdout() {
    let certs = Certs::init("a,b,c");
    let registry = RegistryProcess::start(&certs, &[]);
    let chain = chain(&certs, &registry.url).await;

    let mut command = toolmesh(&["call", "a", "{}"]);
    command.args(certs.tls_args("operator")).env("TOOLMESH_REGISTRY_URL", &registry.url);
    let done = tokio::task::spawn_blocking(move || run(command)).await.expect("run toolmesh").success();
    assert_eq!(serde_json::from_str::<Value>(&done.stdout).expect("stdout is the result"), json!({"from": "c"}));
    let progress: Vec<&str> = done.stderr.lines().filter(|l| l.starts_with("progress ")).collect();
    assert_eq!(progress, progress_lines(), "c's progress, relayed by b and a, in order:\n{}", done.stderr);
    assert!(!done.stderr.contains('\u{1b}'), "no terminal control on a pipe: {:?}", done.stderr);

    for agent in chain.agents {
        agent.shutdown().await;
    }
}

/// On a terminal (a pseudo-terminal from util-linux's `script`), the progress is one line
/// redrawn in place as a bar, cleared before the result prints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_draws_a_live_bar_on_a_terminal_and_clears_it_before_the_result() {
    let certs = Certs::init("a,b,c");
    let registry = RegistryProcess::start(&certs, &[]);
    let chain = chain(&certs, &registry.url).await;

    let quote = |word: &str| format!("'{}'", word.replace('\'', r"'\''"));
    let mut words = vec![env!("CARGO_BIN_EXE_toolmesh").to_owned(), "call".into(), "a".into(), "{}".into()];
    words.extend(certs.tls_args("operator"));
    words.extend(["--registry".to_owned(), registry.url.clone()]);
    let line = words.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" ");
    let mut command = Command::new("script");
    command.args(["-q", "-e", "-c", &line, "/dev/null"]).env("COLUMNS", "60");
    let done = tokio::task::spawn_blocking(move || run(command)).await.expect("run script").success();
    let screen = done.stdout;
    let redraw = "\r\u{1b}[2K";
    let bars: Vec<&str> = screen.split(redraw).skip(1).collect();
    assert!(bars.len() >= 2, "at least one bar drawn, then cleared: {screen:?}");
    assert!(bars.iter().any(|b| b.starts_with(&format!("[{}] 3/3 c step 3", "#".repeat(20)))), "the full bar: {screen:?}");
    assert!(!screen.contains("progress 1/3:"), "no plain lines on a terminal: {screen:?}");
    // The last redraw clears the line, and the result comes after it.
    let after = bars.last().unwrap().trim();
    assert_eq!(serde_json::from_str::<Value>(after).unwrap_or_else(|e| panic!("{e}: {after:?}")), json!({"from": "c"}));

    for agent in chain.agents {
        agent.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_cancels_the_whole_chain_and_exits_130() {
    let certs = Certs::init("a,b,c");
    let registry = RegistryProcess::start(&certs, &[]);
    let mut chain = chain(&certs, &registry.url).await;

    let mut command = toolmesh(&["call", "a", r#"{"hang": true}"#]);
    command.args(certs.tls_args("operator")).env("TOOLMESH_REGISTRY_URL", &registry.url);
    let mut child = command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn toolmesh");
    let (line_sent, mut lines) = mpsc::unbounded_channel();
    let stderr = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = line_sent.send(line);
        }
    });
    // The command is waiting on c once c's three reports reached it.
    let mut seen = Vec::new();
    while seen.len() < 3 {
        match tokio::time::timeout(Duration::from_secs(10), lines.recv()).await {
            Ok(Some(line)) if line.starts_with("progress ") => seen.push(line),
            Ok(Some(_)) => continue,
            Ok(None) => panic!("toolmesh call ended before c's progress: {seen:?}"),
            Err(_) => panic!("waited 10 s for c's progress; got {seen:?}"),
        }
    }
    assert_eq!(seen, progress_lines());
    assert!(chain.cancelled.try_recv().is_err(), "nothing was cancelled before Ctrl-C");

    let pid = child.id().to_string();
    let interrupted = Instant::now();
    assert!(Command::new("kill").args(["-INT", &pid]).status().expect("run kill").success(), "kill -INT {pid}");
    let cancelled_at = tokio::time::timeout(Duration::from_secs(10), chain.cancelled.recv())
        .await
        .expect("c never saw its request cancelled after Ctrl-C")
        .expect("c's report");
    let took = cancelled_at.duration_since(interrupted);
    println!("Ctrl-C to toolmesh call -> a -> b -> c cancelled in {took:?}");
    assert!(took < 3 * PER_HOP, "three hops took {took:?}");

    let exited = tokio::time::timeout(Duration::from_secs(10), tokio::task::spawn_blocking(move || child.wait_with_output()))
        .await
        .expect("toolmesh call did not exit after Ctrl-C")
        .expect("join")
        .expect("wait for toolmesh");
    let mut rest = Vec::new();
    // The process is gone, so its stderr is closed and the reader ends after the last line.
    while let Ok(Some(line)) = tokio::time::timeout(Duration::from_secs(5), lines.recv()).await {
        rest.push(line);
    }
    assert_eq!(exited.status.code(), Some(130), "stderr after the progress: {rest:?}");
    assert!(exited.stdout.is_empty(), "no result on stdout: {:?}", String::from_utf8_lossy(&exited.stdout));
    let error = rest.iter().find(|l| l.starts_with("toolmesh: error [")).unwrap_or_else(|| panic!("no error line: {rest:?}"));
    assert!(error.starts_with("toolmesh: error [4006 CANCELLED]: interrupted (Ctrl-C): the call to a was cancelled"), "{error}");
    wait_until("every handler of the chain returned", Duration::from_secs(5), || chain.running.load(Ordering::SeqCst) == 0).await;

    for agent in chain.agents {
        agent.shutdown().await;
    }
}

/// Two providers of capability `job` (a tool that may run as a task): a call with `"label"`
/// waits until the test releases that label, or until cancelled (reported on `cancelled`);
/// `"fast"` answers at once.
struct Jobs {
    agents: Vec<Agent>,
    released: tokio::sync::watch::Sender<Vec<String>>,
    cancelled: mpsc::UnboundedReceiver<String>,
}

async fn jobs(certs: &Certs, registry_url: &str) -> Jobs {
    let (released, _) = tokio::sync::watch::channel(Vec::<String>::new());
    let (report, cancelled) = mpsc::unbounded_channel();
    let mut agents = Vec::new();
    for name in ["w1", "w2"] {
        let mut config = certs.agent_config(name, registry_url);
        config.set("health_port", "off").expect("agent option");
        let tools: Vec<ToolInfo> =
            serde_json::from_value(json!([{"name": "job", "capability": "job", "task_support": "optional"}])).expect("tools");
        let (released, report) = (released.clone(), report.clone());
        let handler = FnHandler(move |call: ToolInvocation, done: Completion| {
            let (mut released, report) = (released.subscribe(), report.clone());
            tokio::spawn(async move {
                let label = call.arguments["label"].as_str().unwrap_or_default().to_owned();
                if label == "fast" {
                    return done.ok(json!({"label": label}));
                }
                tokio::select! {
                    _ = released.wait_for(|released| released.contains(&label)) => done.ok(json!({"label": label})),
                    () = call.context.cancelled() => {
                        let _ = report.send(label);
                    }
                }
            });
        });
        let agent = Agent::start(config, tools, Arc::new(handler)).await.expect("start agent");
        assert!(agent.wait_registered(Duration::from_secs(10)).await, "{name} did not register");
        agents.push(agent);
    }
    Jobs { agents, released, cancelled }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_started_by_call_is_followed_waited_for_and_cancelled_at_its_agent_until_that_agent_is_gone() {
    let certs = Certs::init("w1,w2");
    let registry = RegistryProcess::start(&certs, &[]);
    let mut jobs = jobs(&certs, &registry.url).await;
    let command = |args: &[&str]| {
        let mut command = toolmesh(args);
        command.args(certs.tls_args("operator")).env("TOOLMESH_REGISTRY_URL", &registry.url);
        command
    };
    let toolmesh_json = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let done = run(command(&args)).success();
        (serde_json::from_str::<Value>(&done.stdout).unwrap_or_else(|e| panic!("{e}: {}", done.stdout)), done.stderr)
    };
    let start = |label: &str| {
        let (task, stderr) = toolmesh_json(vec!["call".into(), "job".into(), json!({"label": label}).to_string(), "--task".into()]);
        assert_eq!(task["status"], "working", "{task}");
        let (agent, task_id) = (task["agent"].as_str().unwrap().to_owned(), task["taskId"].as_str().unwrap().to_owned());
        assert!(stderr.contains(&format!("toolmesh task wait {agent} {task_id}")), "{stderr}");
        (agent, task_id)
    };
    let task = |verb: &str, (agent, task_id): &(String, String)| vec!["task".into(), verb.to_owned(), agent.clone(), task_id.clone()];

    // A tool that answers at once: no task, the result.
    let (fast, _) = toolmesh_json(vec!["call".into(), "job".into(), r#"{"label": "fast"}"#.into(), "--task".into()]);
    assert_eq!((&fast["status"], &fast["result"]), (&json!("completed"), &json!({"label": "fast"})), "{fast}");

    // Every task command reaches the agent that holds the task, though another provides `job` too
    // (that other one does not know the task, and would refuse it).
    let first = start("t1");
    for _ in 0..3 {
        assert_eq!(toolmesh_json(task("get", &first)).0["status"], "working");
    }
    jobs.released.send_modify(|released| released.push("t1".into()));
    assert_eq!(toolmesh_json(task("wait", &first)).0, json!({"label": "t1"}));
    assert_eq!(toolmesh_json(task("get", &first)).0["status"], "completed");

    let second = start("t2");
    assert_eq!(toolmesh_json(task("cancel", &second)).0["status"], "cancelled");
    let told = tokio::time::timeout(Duration::from_secs(10), jobs.cancelled.recv()).await.expect("the handler saw its cancellation");
    assert_eq!(told.as_deref(), Some("t2"));
    let args = task("wait", &second);
    run(command(&args.iter().map(String::as_str).collect::<Vec<_>>())).failure(1, "CANCELLED", "was cancelled before it ended");

    // The holder stops: its task ended with it, and the commands say so rather than ask the other provider.
    let third = start("t3");
    let holder = jobs.agents.iter().position(|a| a.agent_id() == third.0).expect("the task's agent is one of the two");
    jobs.agents.remove(holder).shutdown().await;
    for verb in ["get", "wait", "cancel"] {
        let args = task(verb, &third);
        run(command(&args.iter().map(String::as_str).collect::<Vec<_>>())).failure(
            1,
            "UNKNOWN_AGENT",
            &format!("task {} ended with it (a task lives only in the agent that created it)", third.1),
        );
    }
    for agent in jobs.agents {
        agent.shutdown().await;
    }
}
