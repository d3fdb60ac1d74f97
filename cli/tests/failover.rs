//! Agents that know several registries (`TOOLMESH_REGISTRY_URL` with a comma-separated list):
//! each homes on one, and when that registry process is killed under steady call load they
//! move to the next without a failed call, keeping the topology they had while they register
//! there. Real `toolmesh registry` processes, real agents over mutual TLS.

mod common;

use common::{Certs, RegistryProcess};
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use toolmesh_core::agent::Agent;
use toolmesh_core::registry_client::RegistryClient;
use toolmesh_core::registry_endpoints::spread;
use toolmesh_core::tls::{Identity, TlsFiles};

const HEARTBEAT: Duration = Duration::from_millis(200);

async fn agent(certs: &Certs, name: &str, registries: &str, tools: serde_json::Value) -> Agent {
    common::adding_agent(certs, name, registries, HEARTBEAT, tools).await
}

/// Starts `name` with the registry list `list` until it homes on registry `home` (agents spread
/// by their random id: each start does with probability 1/len).
async fn agent_homed_at(certs: &Certs, name: &str, list: &str, tools: serde_json::Value, home: usize) -> Agent {
    let registries = list.split(',').count();
    for _ in 0..40 {
        let candidate = agent(certs, name, list, tools.clone()).await;
        if spread(candidate.agent_id(), registries) == home {
            return candidate;
        }
        candidate.shutdown().await;
    }
    panic!("{name} never homed on registry {home} in 40 starts");
}

fn operator(certs: &Certs, url: &str) -> RegistryClient {
    let files = TlsFiles { cert: certs.path("operator.pem"), key: certs.path("operator.key"), ca: certs.path("ca.pem") };
    RegistryClient::new(url, &Identity::load(&files).expect("operator identity")).expect("client")
}

async fn registered_at(operator: &RegistryClient, agent_ids: &[&str]) -> bool {
    let listed = operator.list_agents().await.map(|l| l.agents).unwrap_or_default();
    agent_ids.iter().all(|id| listed.iter().any(|a| a.agent_id == *id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_registry_agents_use_moves_them_to_the_next_without_a_failed_call() {
    let certs = Certs::init("calc,front");
    let interval = HEARTBEAT.as_millis().to_string();
    let extra = ["--heartbeat-interval-ms", interval.as_str(), "--health-port", "off"];
    let mut registries = [Some(RegistryProcess::start(&certs, &extra)), Some(RegistryProcess::start(&certs, &extra))];
    let urls: Vec<String> = registries.iter().flatten().map(|r| r.url.clone()).collect();
    let list = urls.join(",");

    let calc = agent(&certs, "calc", &list, json!([{"name": "add", "capability": "add"}])).await;
    let home = spread(calc.agent_id(), urls.len());
    // Agents spread over the registries by id. Independent registries (no shared store) each
    // know only their own agents, so the caller must home where the provider does.
    let front_tools = json!([{"name": "front", "capability": "front", "dependencies": ["add"]}]);
    let front = agent_homed_at(&certs, "front", &list, front_tools, home).await;
    let ids = [calc.agent_id(), front.agent_id()];
    assert!(registered_at(&operator(&certs, &urls[home]), &ids).await, "both registered at their home, {}", urls[home]);
    let started = Instant::now();
    while front.call("front", 0, json!({"a": 1, "b": 2}), None).await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(5), "the caller never saw the provider");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Steady load: one call every 2 ms until told to stop, every failure counted.
    let (calls, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let load = {
        let (front, calls, failed, mut stopped) = (front.clone(), calls.clone(), failed.clone(), stopped.clone());
        tokio::spawn(async move {
            let mut first_error = None;
            while !*stopped.borrow_and_update() {
                match front.call("front", 0, json!({"a": 2, "b": 3}), None).await {
                    Ok(v) if v == json!(5) => {}
                    other => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        first_error.get_or_insert(format!("{other:?}"));
                    }
                }
                calls.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            first_error
        })
    };
    tokio::time::sleep(HEARTBEAT).await;

    let killed_at = Instant::now();
    drop(registries[home].take()); // SIGKILL
    let other = operator(&certs, &urls[(home + 1) % urls.len()]);
    while !registered_at(&other, &ids).await {
        assert!(killed_at.elapsed() < Duration::from_secs(5), "the agents never moved to {}", other.url());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let moved_in = killed_at.elapsed();
    // Past the window the moved agents keep their old topology in: the new registry's own
    // topology alone serves the calls from then on.
    tokio::time::sleep(HEARTBEAT * 5).await;
    let _ = stop.send(true);
    let first_error = load.await.expect("load task");
    drop(stopped);
    let (calls, failed) = (calls.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("re-homed in {moved_in:?}; {calls} calls, {failed} failed");
    assert_eq!(failed, 0, "calls failed while the agents moved: first {first_error:?}");
    assert!(calls > 100, "the load ran: {calls} calls");
    assert!(moved_in <= HEARTBEAT, "re-homed within one heartbeat interval: took {moved_in:?}");
    front.shutdown().await;
    calc.shutdown().await;
}

/// A caller that moves to a registry which does not know its provider (yet) keeps calling the
/// provider it knew for one eviction window: the provider is moving too, and is alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_moves_first_keeps_its_providers_for_an_eviction_window() {
    let certs = Certs::init("calc,front");
    let interval = HEARTBEAT.as_millis().to_string();
    let extra = ["--heartbeat-interval-ms", interval.as_str(), "--health-port", "off"];
    let (first, second) = (RegistryProcess::start(&certs, &extra), RegistryProcess::start(&certs, &extra));
    // A registry keeps agents' old providers while it warms up after its start (3 intervals):
    // the move below must be to one that has warmed up, whose topology is the whole truth.
    let second_warm_at = tokio::time::Instant::now() + HEARTBEAT * 3 + HEARTBEAT / 2;
    // The provider knows only the first registry, so it cannot move: the caller gets to the
    // second registry first, and that one never lists the provider.
    let calc = agent(&certs, "calc", &first.url, json!([{"name": "add", "capability": "add"}])).await;
    let list = format!("{},{}", first.url, second.url);
    let front_tools = json!([{"name": "front", "capability": "front", "dependencies": ["add"]}]);
    let front = agent_homed_at(&certs, "front", &list, front_tools, 0).await;
    let started = Instant::now();
    while front.call("front", 0, json!({"a": 1, "b": 2}), None).await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(5), "the caller never saw the provider");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    tokio::time::sleep_until(second_warm_at).await;
    let killed_at = Instant::now();
    drop(first); // SIGKILL
    let second_operator = operator(&certs, &second.url);
    while !registered_at(&second_operator, &[front.agent_id()]).await {
        assert!(killed_at.elapsed() < Duration::from_secs(5), "the caller never moved");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Within the window (3 intervals from the move) every call reaches the provider it knew.
    let mut calls = 0;
    while killed_at.elapsed() < HEARTBEAT * 2 {
        let answer = front.call("front", 0, json!({"a": 2, "b": 3}), None).await;
        assert_eq!(answer.as_ref().ok(), Some(&json!(5)), "call {calls} after the move: {answer:?}");
        calls += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(calls > 10, "{calls} calls");
    // Past it, the new registry's word counts: it never listed the provider.
    let dropped = Instant::now();
    while front.call("front", 0, json!({"a": 2, "b": 3}), None).await.is_ok() {
        assert!(dropped.elapsed() < HEARTBEAT * 10, "the kept provider was never dropped");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    front.shutdown().await;
    calc.shutdown().await;
}
