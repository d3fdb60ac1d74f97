//! Row 6: one registry holding N simulated agents that register and heartbeat at the default
//! interval, through pooled mTLS clients (core's `RegistryClient`, each with its own client
//! certificate, each agent bound to one; one client per agent is what real agents cost): the
//! registry's CPU (from /proc/PID/stat) and RSS, the heartbeat latency, and the time from a new
//! provider starting to its dependents' first successful call.
//!
//! The same run measures replicas on one PostgreSQL (`--registry-url A,B,C --registry-pid
//! a,b,c --postgres-pid P`): each pooled client is given the whole URL list and homes on the
//! replica its name spreads to (core's `RegistryClient::home`, as agents do), the CPU is
//! reported per replica and for PostgreSQL's processes, and the new provider registers at the
//! first replica while its dependents are spread over all of them, so the figure includes a
//! change crossing replicas.
//!
//! The simulated mesh: services of `replicas` agents each; every agent provides its service's
//! capability and depends on the next service's, so a registration changes the topologies of
//! the `replicas` agents of the service before it, as in a real mesh of replicated services.

use crate::common::*;
use crate::transport::{add_handler, add_tool, caller_tool};
use futures_util::stream::{self, StreamExt};
use serde::Serialize;
use serde_json::json;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use toolmesh_ca::{CertificateAuthority, LeafRequest, Role, DEFAULT_TRUST_DOMAIN};
use toolmesh_core::agent::Agent;
use toolmesh_core::config::AgentConfig;
use toolmesh_core::registry_api::{DependencySpec, RegisterRequest, ToolInfo};
use toolmesh_core::registry_client::RegistryClient;
use toolmesh_core::tls::Identity;

#[derive(clap::Args)]
pub struct RegistryScaleArgs {
    /// One registry's URL, or the comma-separated URLs of replicas sharing one store.
    #[arg(long)]
    registry_url: String,
    /// The mesh CA (certificate and key): simulated agents get certificates from it.
    #[arg(long)]
    ca: PathBuf,
    #[arg(long)]
    ca_key: PathBuf,
    /// Where the issued certificates are written.
    #[arg(long)]
    work_dir: PathBuf,
    /// The registry's process id, or the replicas' (comma-separated, in --registry-url's order).
    #[arg(long, value_delimiter = ',')]
    registry_pid: Vec<u32>,
    /// PostgreSQL's postmaster: its CPU and its backends' are reported (replicas on PostgreSQL).
    #[arg(long)]
    postgres_pid: Option<u32>,
    #[arg(long, default_value_t = 1000)]
    agents: usize,
    /// Pooled connections (one client certificate each) the simulated agents share.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    #[arg(long, default_value_t = 10)]
    replicas: usize,
    #[arg(long, default_value_t = 5000)]
    interval_ms: u64,
    /// Registrations in flight at once during the ramp.
    #[arg(long, default_value_t = 64)]
    register_concurrency: usize,
    /// Measuring window for CPU and heartbeat latency, after one settling interval.
    #[arg(long, default_value_t = 15.0)]
    window: f64,
    /// New-provider trials, and real dependent agents per trial.
    #[arg(long, default_value_t = 3)]
    trials: usize,
    #[arg(long, default_value_t = 3)]
    dependents: usize,
    /// This process simulates the agents whose connection index is `shard` modulo `shards`: a
    /// row whose connections need more descriptors than one process may hold runs in several
    /// simulator processes (started together by the harness). Shard 0 measures and runs the
    /// new-provider trials; the others register, print their heartbeat figures after the window,
    /// and keep heartbeating until they are stopped.
    #[arg(long, default_value_t = 0)]
    shard: usize,
    #[arg(long, default_value_t = 1)]
    shards: usize,
}

#[derive(Serialize)]
struct Trial {
    provider_registered_ms: Option<f64>,
    dependents_callable_ms: Vec<Option<f64>>,
    /// The replica (index in --registry-url) each dependent used; the provider used replica 0.
    dependents_replica: Vec<usize>,
    all_callable_ms: Option<f64>,
}

/// The CPU seconds of a process tree (PostgreSQL: the postmaster and its backends), for
/// [`TreeCpu::cores`].
struct TreeCpu {
    root: u32,
    start: std::collections::HashMap<u32, f64>,
    at: std::time::Instant,
}

impl TreeCpu {
    fn start(root: u32) -> Option<TreeCpu> {
        Some(TreeCpu { root, start: tree_cpu_seconds(root)?, at: std::time::Instant::now() })
    }

    /// Cores the tree used since `start`: what each live process used since (all of it for one
    /// started since), and what exited children left in the root's reaped-children counters
    /// (their whole life: a slight overcount for a backend that lived across the start).
    fn cores(&self) -> Option<f64> {
        Some(self.seconds()? / self.at.elapsed().as_secs_f64())
    }

    fn seconds(&self) -> Option<f64> {
        let now = tree_cpu_seconds(self.root)?;
        Some(now.iter().map(|(pid, cpu)| cpu - self.start.get(pid).copied().unwrap_or(0.0)).sum())
    }
}

/// utime + stime of `root`'s children, and of `root` with its reaped children's, by pid.
fn tree_cpu_seconds(root: u32) -> Option<std::collections::HashMap<u32, f64>> {
    let mut tree = std::collections::HashMap::new();
    let fields = stat_fields(root)?;
    tree.insert(root, fields[11..15].iter().sum::<f64>() / clock_ticks());
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        match stat_fields(pid) {
            Some(fields) if fields[1] == f64::from(root) => {
                tree.insert(pid, (fields[11] + fields[12]) / clock_ticks());
            }
            _ => {}
        }
    }
    Some(tree)
}

/// The numeric fields of `/proc/PID/stat` after the command name (index 1 is the parent's pid,
/// 11 and 12 utime and stime, 13 and 14 the reaped children's), the state counted as 0.
fn stat_fields(pid: u32) -> Option<Vec<f64>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<f64> = rest.split_whitespace().take(15).map(|f| f.parse().unwrap_or(0.0)).collect();
    (fields.len() == 15).then_some(fields)
}

fn issue(ca: &CertificateAuthority, dir: &std::path::Path, name: &str) -> Result<(PathBuf, PathBuf), AnyError> {
    let issued = ca.issue(&LeafRequest::new(name, Role::Agent, DEFAULT_TRUST_DOMAIN, 2))?;
    let (cert, key) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
    std::fs::write(&cert, &issued.cert_pem)?;
    std::fs::write(&key, &issued.key_pem)?;
    Ok((cert, key))
}

/// Agent `i` of service `i % services`, registered by connection `i % connections`, whose
/// certificate (`sim-conn-K`) its name must be: the registry takes the name from it.
fn sim_registration(i: usize, services: usize, connections: usize) -> RegisterRequest {
    let service = i % services;
    let next = (service + 1) % services;
    RegisterRequest {
        agent_id: format!("sim-{i:05}"),
        name: format!("sim-conn-{}", i % connections),
        // Never called: the simulated agents only register and heartbeat.
        endpoint: format!("https://127.0.0.1:9/mcp/{i}"),
        tools: vec![ToolInfo {
            name: "work".into(),
            capability: format!("svc-{service}"),
            version: "1.0.0".into(),
            tags: vec![],
            description: String::new(),
            input_schema: json!({"type": "object", "properties": {}}),
            dependencies: vec![DependencySpec::capability(format!("svc-{next}"))],
            timeout_ms: None,
            annotations: Default::default(),
            output_schema: None,
            required_client_capabilities: vec![],
            task_support: Default::default(),
        }],
    }
}

async fn real_agent(
    name: &str,
    registry: &str,
    ca: &std::path::Path,
    cert: &std::path::Path,
    key: &std::path::Path,
    tool: ToolInfo,
) -> Result<Agent, AnyError> {
    let mut config = AgentConfig::from_env(name)?;
    for (k, v) in [
        ("registry_url", registry.to_owned()),
        ("tls_cert", cert.display().to_string()),
        ("tls_key", key.display().to_string()),
        ("tls_ca", ca.display().to_string()),
        ("health_port", "off".to_owned()),
    ] {
        config.set(k, &v)?;
    }
    Ok(Agent::start(config, vec![tool], add_handler()).await?)
}

pub async fn registry_scale(args: RegistryScaleArgs) -> Result<(), AnyError> {
    std::fs::create_dir_all(&args.work_dir)?;
    let ca = CertificateAuthority::load(&args.ca, &args.ca_key)?;
    let ca_pem = std::fs::read_to_string(&args.ca)?;
    let shards = args.shards.max(1);
    let urls: Vec<&str> = args.registry_url.split(',').map(str::trim).collect();
    if args.registry_pid.len() != urls.len() {
        return Err(format!("--registry-pid names {} processes for {} registry URLs", args.registry_pid.len(), urls.len()).into());
    }
    // The replica each pooled client homed on (index in `urls`).
    let mut homes = Vec::new();
    let mut clients = Vec::new();
    for k in 0..args.connections.max(1) {
        if k % shards != args.shard {
            clients.push(None);
            continue;
        }
        let issued = ca.issue(&LeafRequest::new(&format!("sim-conn-{k}"), Role::Agent, DEFAULT_TRUST_DOMAIN, 2))?;
        let identity = Identity::from_pem(&issued.cert_pem, &issued.key_pem, &ca_pem)?;
        let client = RegistryClient::new(&args.registry_url, &identity)?;
        client.home(&format!("sim-conn-{k}"));
        homes.push(urls.iter().position(|u| client.url().trim_end_matches('/') == u.trim_end_matches('/')).unwrap_or(0));
        clients.push(Some(client));
    }
    let n = args.agents;
    let services = (n / args.replicas.max(1)).max(1);
    let registrations: Vec<RegisterRequest> = (0..n).map(|i| sim_registration(i, services, clients.len())).collect();
    let versions: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    let me = std::process::id();

    // Ramp: everyone registers.
    let ramp_cpu: Vec<Option<CpuWindow>> = args.registry_pid.iter().map(|&pid| CpuWindow::start(pid)).collect();
    let ramp_start = Instant::now();
    let failures = AtomicU64::new(0);
    // The agents this process simulates: those whose connection belongs to its shard.
    let mine: Vec<usize> = (0..n).filter(|i| clients[i % clients.len()].is_some()).collect();
    stream::iter(mine.iter().copied())
        .for_each_concurrent(args.register_concurrency, |i| {
            let client = clients[i % clients.len()].as_ref().expect("a client of this shard");
            let (registration, versions, failures) = (&registrations[i], &versions, &failures);
            async move {
                for _attempt in 0..3 {
                    match client.register(registration).await {
                        Ok(answer) => {
                            versions[i].store(answer.topology.version, Ordering::Relaxed);
                            return;
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                }
                failures.fetch_add(1, Ordering::Relaxed);
            }
        })
        .await;
    let ramp_seconds = ramp_start.elapsed().as_secs_f64();
    // The replicas' CPU added up (one registry: its own).
    let ramp_cores = ramp_cpu.iter().map(|w| w.as_ref().and_then(CpuWindow::cores)).sum::<Option<f64>>();
    let rss_after_ramp = rss_mib(args.registry_pid[0]);
    eprintln!(
        "registry-scale n={n}: registered in {ramp_seconds:.2} s ({} failed), registry {ramp_cores:?} cores",
        failures.load(Ordering::Relaxed)
    );

    // Steady state: each agent heartbeats every interval, phases spread evenly.
    let interval = Duration::from_millis(args.interval_ms);
    let samples: Arc<Mutex<Vec<(Instant, u32)>>> = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(AtomicU64::new(0));
    let reregistered = Arc::new(AtomicU64::new(0));
    let beats_start = Instant::now();
    let mut tasks = Vec::new();
    for &i in &mine {
        let client = clients[i % clients.len()].clone().expect("a client of this shard");
        let (samples, errors, reregistered, versions) = (samples.clone(), errors.clone(), reregistered.clone(), versions.clone());
        let registration = registrations[i].clone();
        let first = beats_start + interval.mul_f64(i as f64 / n as f64);
        tasks.push(tokio::spawn(async move {
            let mut ticks = tokio::time::interval_at(first, interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let began = Instant::now();
                match client.beat(&registration.agent_id, versions[i].load(Ordering::Relaxed)).await {
                    Ok(Some(answer)) => {
                        samples.lock().expect("samples").push((began, began.elapsed().as_micros() as u32));
                        if let Some(topology) = answer.topology {
                            versions[i].store(topology.version, Ordering::Relaxed);
                        }
                    }
                    Ok(None) => {
                        reregistered.fetch_add(1, Ordering::Relaxed);
                        if let Ok(answer) = client.register(&registration).await {
                            versions[i].store(answer.topology.version, Ordering::Relaxed);
                        }
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    // One interval to settle (every agent has beaten once), then the window.
    tokio::time::sleep(interval).await;
    let window_start = Instant::now();
    let registry_cpu: Vec<Option<CpuWindow>> = args.registry_pid.iter().map(|&pid| CpuWindow::start(pid)).collect();
    let postgres_cpu = args.postgres_pid.and_then(TreeCpu::start);
    let own_cpu = CpuWindow::start(me);
    let errors_before = errors.load(Ordering::Relaxed);
    let load_before = loadavg();
    tokio::time::sleep(Duration::from_secs_f64(args.window)).await;
    let replica_cores: Vec<Option<f64>> = registry_cpu.iter().map(|w| w.as_ref().and_then(CpuWindow::cores)).collect();
    // The busiest replica's: the target is per replica.
    let registry_cores = replica_cores.iter().copied().try_fold(0.0f64, |max, c| c.map(|c| max.max(c)));
    let postgres_cores = postgres_cpu.and_then(|w| w.cores());
    let sim_cores = own_cpu.and_then(|w| w.cores());
    let window_end = Instant::now();
    let mut latencies: Vec<u64> = samples
        .lock()
        .expect("samples")
        .iter()
        .filter(|(at, _)| *at >= window_start && *at < window_end)
        .map(|(_, us)| u64::from(*us))
        .collect();
    latencies.sort_unstable();
    let beats = latencies.len();
    let window_errors = errors.load(Ordering::Relaxed) - errors_before;
    let heartbeat = summarize(0, latencies, window_errors, None, (window_end - window_start).as_secs_f64());
    let rss_steady = rss_mib(args.registry_pid[0]);
    let replica_rss: Vec<Option<f64>> = args.registry_pid.iter().map(|&pid| rss_mib(pid)).collect();
    let mut agents_per_replica = vec![0usize; urls.len()];
    for &i in &mine {
        agents_per_replica[homes[i % clients.len()]] += 1;
    }
    if args.shard != 0 {
        // Another shard's figures, for the harness to merge; then heartbeat until stopped.
        print_json(&json!({"shard": args.shard, "agents": mine.len(), "register_failures": failures.load(Ordering::Relaxed),
                           "heartbeats_per_second": beats as f64 / args.window, "heartbeat": heartbeat, "simulator_cores": sim_cores}));
        std::future::pending::<()>().await;
    }
    eprintln!(
        "registry-scale n={n}: {beats} heartbeats in {:.1} s, p50 {:.2} ms, p99 {:.2} ms, registries {replica_cores:?} cores (agents {agents_per_replica:?}), PostgreSQL {postgres_cores:?} cores, simulator {sim_cores:?} cores, RSS {rss_steady:?} MiB",
        args.window, heartbeat.p50_ms, heartbeat.p99_ms
    );

    // New providers, while the heartbeats go on.
    let certs = args.work_dir.clone();
    let mut dependent_certs = Vec::new();
    for j in 0..args.dependents {
        dependent_certs.push(issue(&ca, &certs, &format!("dependent-{j}"))?);
    }
    let provider_cert = issue(&ca, &certs, "fresh-provider")?;
    let mut trials = Vec::new();
    for t in 0..args.trials {
        let capability = format!("fresh-{t}-{}", std::process::id());
        let mut dependents = Vec::new();
        // With replicas, the provider registers at the first and the dependents at each in turn
        // starting with the second: the change must cross replicas to reach most of them.
        let dependents_replica: Vec<usize> = (0..dependent_certs.len()).map(|j| (j + 1) % urls.len()).collect();
        for (j, (cert, key)) in dependent_certs.iter().enumerate() {
            let agent = real_agent(
                &format!("dependent-{j}"),
                urls[dependents_replica[j]],
                &args.ca,
                cert,
                key,
                caller_tool("use", "use-fresh", &capability),
            )
            .await?;
            dependents.push(agent);
        }
        for d in &dependents {
            if !d.wait_registered(Duration::from_secs(20)).await {
                return Err("a dependent agent did not register within 20 s".into());
            }
        }
        let t0 = Instant::now();
        let provider = real_agent("fresh-provider", urls[0], &args.ca, &provider_cert.0, &provider_cert.1, add_tool(&capability)).await?;
        let provider_registered = {
            let provider = provider.clone();
            tokio::spawn(async move { provider.wait_registered(Duration::from_secs(10)).await.then(|| t0.elapsed()) })
        };
        let callable = futures_util::future::join_all(dependents.iter().map(|d| async move {
            let deadline = t0 + Duration::from_secs(10);
            while Instant::now() < deadline {
                if d.call("use", 0, json!({"a": 1, "b": 2}), None).await.is_ok() {
                    return Some(t0.elapsed().as_secs_f64() * 1000.0);
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            None
        }))
        .await;
        let provider_registered_ms = provider_registered.await.ok().flatten().map(|d| d.as_secs_f64() * 1000.0);
        let all = callable.iter().try_fold(0.0f64, |m, c| c.map(|c| m.max(c)));
        eprintln!("registry-scale n={n}: trial {t}: provider registered {provider_registered_ms:?} ms, all dependents callable {all:?} ms");
        trials.push(Trial { provider_registered_ms, dependents_callable_ms: callable, dependents_replica, all_callable_ms: all });
        let stopping: Vec<Agent> = dependents.into_iter().chain([provider]).collect();
        futures_util::future::join_all(stopping.iter().map(Agent::shutdown)).await;
    }
    for task in &tasks {
        task.abort();
    }
    print_json(&json!({
        "agents": n,
        "services": services,
        "connections": clients.len(),
        "shards": shards,
        "shard_agents": mine.len(),
        "interval_ms": args.interval_ms,
        "register_failures": failures.load(Ordering::Relaxed),
        "ramp_seconds": ramp_seconds,
        "ramp_registry_cores": ramp_cores,
        "registry_rss_mib_after_ramp": rss_after_ramp,
        "registry_rss_mib_steady": rss_steady,
        "window_seconds": args.window,
        "registry_cores": registry_cores,
        "replicas": urls.len(),
        "replica_cores": replica_cores,
        "replica_rss_mib": replica_rss,
        "agents_per_replica": agents_per_replica,
        "postgres_cores": postgres_cores,
        "simulator_cores": sim_cores,
        "heartbeats_per_second": beats as f64 / args.window,
        "heartbeat": heartbeat,
        "reregistered": reregistered.load(Ordering::Relaxed),
        "loadavg_before_window": load_before,
        "trials": trials,
    }));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{stat_fields, TreeCpu};
    use crate::common::clock_ticks;
    use std::time::{Duration, Instant};

    /// A child's CPU counts towards its parent's tree while it lives (here, exited but not yet
    /// reaped), and once reaped through the parent's reaped-children counters.
    #[test]
    fn a_process_tree_counts_its_children_live_and_reaped() {
        let tree = TreeCpu::start(std::process::id()).expect("this process's tree");
        let mut child =
            std::process::Command::new("sh").args(["-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done"]).spawn().expect("sh");
        // Exited, not reaped: its final CPU time is still in its own /proc entry.
        let deadline = Instant::now() + Duration::from_secs(60);
        let stat = format!("/proc/{}/stat", child.id());
        while !std::fs::read_to_string(&stat).is_ok_and(|s| s.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z'))) {
            assert!(Instant::now() < deadline, "the child did not finish within 60 s");
            std::thread::sleep(Duration::from_millis(5));
        }
        let fields = stat_fields(child.id()).expect("the exited child's stat");
        let child_seconds = (fields[11] + fields[12]) / clock_ticks();
        assert!(child_seconds >= 0.05, "the child worked: {child_seconds} s");
        let live = tree.seconds().expect("seconds");
        child.wait().expect("reap the child");
        let reaped = tree.seconds().expect("seconds");
        assert!(live >= child_seconds, "the exited child is counted: {live} < {child_seconds}");
        assert!(reaped >= child_seconds, "the reaped child stays counted: {reaped} < {child_seconds}");
    }
}
