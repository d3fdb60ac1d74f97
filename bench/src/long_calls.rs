//! Long calls (issue 14): progress notifications per second and cancel-to-stop time, through a
//! three-hop chain of agents against one hop straight to the last, measured alternately in one run.
//!
//! Four agents in this process, each on its own mTLS listener, found through the harness's
//! registry: `bench-h1` → `bench-h2` → `bench-h3`, the first two only calling their dependency
//! with their request's context (core relays and cancels); the client calls `bench-h3` (direct)
//! or `bench-h1` (three hops) with its `bench-a` identity.

use crate::common::AnyError;
use serde::Serialize;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use toolmesh_core::agent::Agent;
use toolmesh_core::config::AgentConfig;
use toolmesh_core::context::RequestContext;
use toolmesh_core::host::{Completion, FnHandler, HostError, ToolInvocation};
use toolmesh_core::mcp::McpClient;
use toolmesh_core::registry_api::ToolInfo;
use toolmesh_core::report::NotificationObserver;
use toolmesh_core::tls::{Identity, TlsFiles};

/// The last hop's tool; the others only call their dependency.
const LAST: &str = "bench-last";
/// How long any one awaited event may take before the run fails rather than hangs.
const BOUND: Duration = Duration::from_secs(30);

#[derive(clap::Args)]
pub struct LongCallsArgs {
    /// The directory of `toolmesh certs init` with bench-a, bench-h1, bench-h2 and bench-h3.
    #[arg(long)]
    certs: PathBuf,
    #[arg(long)]
    registry_url: String,
    /// Rounds; each measures the direct call and the chain, in alternating order.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Progress notifications the last hop sends per call.
    #[arg(long, default_value_t = 2000)]
    notifications: u64,
    /// Cancellations timed per round and path.
    #[arg(long, default_value_t = 10)]
    cancels: usize,
}

#[derive(Serialize)]
struct Round {
    round: usize,
    path: &'static str,
    hops: u32,
    /// Notifications the client received (all that were sent, or the run fails).
    notifications: u64,
    seconds: f64,
    per_second: f64,
    /// Caller cancels (drops its call) → the last hop's handler sees its request cancelled.
    cancel_ms: Vec<f64>,
}

#[derive(Serialize)]
struct Figures {
    notifications_per_call: u64,
    cancels_per_round: usize,
    runs: Vec<Round>,
}

pub async fn long_calls(args: LongCallsArgs) -> Result<(), AnyError> {
    let (cancelled, mut cancelled_at) = mpsc::unbounded_channel();
    let h3 = start(&args, "bench-h3", LAST, None, cancelled.clone()).await?;
    let h2 = start(&args, "bench-h2", "bench-hop2", Some(LAST), cancelled.clone()).await?;
    let h1 = start(&args, "bench-h1", "bench-hop1", Some("bench-hop2"), cancelled).await?;
    let identity = Identity::load(&files(&args, "bench-a"))?;
    let client = McpClient::new(&identity)?;
    let paths = [("direct", 1u32, h3.endpoint().to_owned(), LAST), ("three_hops", 3, h1.endpoint().to_owned(), "bench-hop1")];
    // Until every hop resolved its dependency from the registry.
    let ready = Instant::now();
    while let Err(e) = client.call_tool(&paths[1].2, paths[1].3, &json!({"n": 1}), &RequestContext::default()).await {
        if ready.elapsed() > BOUND {
            return Err(format!("the chain never answered: {}", e.error).into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut runs = Vec::new();
    for round in 0..args.rounds {
        let order: Vec<usize> = if round % 2 == 0 { vec![0, 1] } else { vec![1, 0] };
        for index in order {
            let (path, hops, endpoint, tool) = &paths[index];
            let (notifications, seconds) = progress_run(&client, endpoint, tool, args.notifications).await?;
            let mut cancel_ms = Vec::with_capacity(args.cancels);
            for _ in 0..args.cancels {
                cancel_ms.push(cancel_run(&client, endpoint, tool, &mut cancelled_at).await?);
            }
            runs.push(Round { round, path, hops: *hops, notifications, seconds, per_second: notifications as f64 / seconds, cancel_ms });
        }
    }
    println!("{}", serde_json::to_string(&Figures { notifications_per_call: args.notifications, cancels_per_round: args.cancels, runs })?);
    for agent in [h1, h2, h3] {
        agent.shutdown().await;
    }
    Ok(())
}

/// One call whose last hop sends `n` progress notifications, then answers: how many arrived
/// and how long the call took (they arrive in order, before the answer).
async fn progress_run(client: &McpClient, endpoint: &str, tool: &str, n: u64) -> Result<(u64, f64), AnyError> {
    let received = Arc::new(AtomicU64::new(0));
    let observer = NotificationObserver::progress({
        let received = received.clone();
        move |_| {
            received.fetch_add(1, Ordering::Relaxed);
        }
    });
    let context = RequestContext { on_notification: Some(observer), ..RequestContext::default() };
    let started = Instant::now();
    let arguments = json!({"n": n});
    let call = client.call_tool(endpoint, tool, &arguments, &context);
    tokio::time::timeout(BOUND, call).await.map_err(|_| "a progress call took too long")?.map_err(|e| e.error.to_string())?;
    let seconds = started.elapsed().as_secs_f64();
    let received = received.load(Ordering::Relaxed);
    if received != n {
        return Err(format!("{tool} at {endpoint}: {received} of {n} progress notifications arrived").into());
    }
    Ok((received, seconds))
}

/// One call whose last hop reports once, then waits: once that report arrived the call is
/// dropped (its stream closes); milliseconds until the last hop saw its request cancelled.
async fn cancel_run(
    client: &McpClient,
    endpoint: &str,
    tool: &str,
    cancelled_at: &mut mpsc::UnboundedReceiver<Instant>,
) -> Result<f64, AnyError> {
    let (first, mut reported) = mpsc::unbounded_channel();
    let observer = NotificationObserver::progress(move |_| {
        let _ = first.send(());
    });
    let context = RequestContext { on_notification: Some(observer), ..RequestContext::default() };
    let arguments = json!({"hang": true});
    let mut call = Box::pin(client.call_tool(endpoint, tool, &arguments, &context));
    tokio::select! {
        outcome = &mut call => return Err(format!("a hanging call answered: {outcome:?}").into()),
        _ = reported.recv() => {}
        () = tokio::time::sleep(BOUND) => return Err("the last hop never reported".into()),
    }
    let dropped = Instant::now();
    drop(call);
    let seen = tokio::time::timeout(BOUND, cancelled_at.recv())
        .await
        .map_err(|_| "the last hop never saw its request cancelled")?
        .ok_or("the last hop is gone")?;
    Ok(seen.saturating_duration_since(dropped).as_secs_f64() * 1000.0)
}

fn files(args: &LongCallsArgs, name: &str) -> TlsFiles {
    TlsFiles { cert: args.certs.join(format!("{name}.pem")), key: args.certs.join(format!("{name}.key")), ca: args.certs.join("ca.pem") }
}

/// Starts agent `name` serving `capability`: with a `dependency`, a hop that calls it with its
/// request's context; without, the last hop (`{"n": N}`: N progress reports, then an answer;
/// `{"hang": true}`: one report, then waits for its cancellation and sends when it saw it).
async fn start(
    args: &LongCallsArgs,
    name: &str,
    capability: &str,
    dependency: Option<&str>,
    cancelled: mpsc::UnboundedSender<Instant>,
) -> Result<Agent, AnyError> {
    let mut config = AgentConfig::from_env(name)?;
    let tls = files(args, name);
    for (key, value) in [
        ("tls_cert", tls.cert.display().to_string()),
        ("tls_key", tls.key.display().to_string()),
        ("tls_ca", tls.ca.display().to_string()),
        ("registry_url", args.registry_url.clone()),
        ("health_port", "off".to_owned()),
    ] {
        config.set(key, &value)?;
    }
    let dependencies: Vec<&str> = dependency.into_iter().collect();
    let tool: ToolInfo = serde_json::from_value(json!({"name": capability, "capability": capability, "dependencies": dependencies}))?;
    let me: Arc<OnceLock<Agent>> = Arc::default();
    let handler = {
        let me = me.clone();
        FnHandler(move |call: ToolInvocation, done: Completion| {
            let (me, cancelled) = (me.clone(), cancelled.clone());
            tokio::spawn(async move {
                let context = call.context.clone();
                if call.tool != LAST {
                    let agent = me.get().expect("the agent is set once started");
                    return match agent.call(&call.tool, 0, call.arguments.clone(), Some(context)).await {
                        Ok(value) => done.ok(value),
                        Err(e) => done.complete(Err(HostError { message: e.message().to_owned(), mesh_error: Some(e) })),
                    };
                }
                if call.arguments["hang"] == json!(true) {
                    context.progress(0.0, Some(1.0), None);
                    if tokio::time::timeout(BOUND, context.cancelled()).await.is_ok() {
                        let _ = cancelled.send(Instant::now());
                    }
                    return done.err("cancelled");
                }
                let n = call.arguments["n"].as_u64().unwrap_or(0);
                for step in 1..=n {
                    context.progress(step as f64, Some(n as f64), None);
                }
                done.ok(Value::from(n));
            });
        })
    };
    let agent = Agent::start(config, vec![tool], Arc::new(handler)).await?;
    let _ = me.set(agent.clone());
    if !agent.wait_registered(BOUND).await {
        return Err(format!("{name} did not register with {}", args.registry_url).into());
    }
    Ok(agent)
}
