//! Registry replicas sharing registrations on PostgreSQL: a change accepted at one replica
//! reaches agents long-polling another within a second, eviction happens once per mesh, and
//! losing a replica or the database under steady call load fails no call. Real `toolmesh
//! registry` processes on a real PostgreSQL the test starts (see `common/postgres.rs`), agents
//! over mutual TLS (the registry protocol itself, and in-process core agents for calls).

mod common;

use common::postgres::Postgres;
use common::{Certs, RegistryProcess};
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use toolmesh_core::agent::Agent;
use toolmesh_core::registry_api::{RegisterRequest, Topology};
use toolmesh_core::registry_client::{HeartbeatOutcome, RegistryClient};
use toolmesh_core::registry_endpoints::spread;
use toolmesh_core::tls::{Identity, TlsFiles};

const HEARTBEAT: Duration = Duration::from_millis(200);
/// How soon a change at one replica must reach an agent long-polling another.
const PROPAGATION: Duration = Duration::from_secs(1);

fn replica(certs: &Certs, postgres: &Postgres) -> RegistryProcess {
    let interval = HEARTBEAT.as_millis().to_string();
    RegistryProcess::start(certs, &["--store", &postgres.url(), "--health-port", "off", "--heartbeat-interval-ms", &interval])
}

/// `identity`'s client of the registry at `url`.
fn client(certs: &Certs, url: &str, identity: &str) -> RegistryClient {
    let files =
        TlsFiles { cert: certs.path(&format!("{identity}.pem")), key: certs.path(&format!("{identity}.key")), ca: certs.path("ca.pem") };
    RegistryClient::new(url, &Identity::load(&files).expect("identity")).expect("client")
}

fn registration(agent_id: &str, name: &str, tools: serde_json::Value) -> RegisterRequest {
    let tools = serde_json::from_value(tools).expect("tools");
    RegisterRequest { agent_id: agent_id.into(), name: name.into(), endpoint: "https://127.0.0.1:9/mcp".into(), tools }
}

fn provider(agent_id: &str) -> RegisterRequest {
    registration(agent_id, "calc", json!([{"name": "add", "capability": "add"}]))
}

fn dependent(agent_id: &str) -> RegisterRequest {
    registration(agent_id, "front", json!([{"name": "front", "capability": "front", "dependencies": ["add"]}]))
}

fn providers(topology: &Topology) -> Vec<String> {
    topology.dependencies.iter().flat_map(|d| d.providers.iter().map(|p| p.agent_id.clone())).collect()
}

/// Long-polls `agent_id`'s topology at `watcher` from `topology` until `wanted` holds; answers
/// it and how long that took from `since`. Fails past [`PROPAGATION`].
async fn wait_topology(
    watcher: &RegistryClient,
    agent_id: &str,
    topology: &mut Topology,
    since: Instant,
    what: &str,
    wanted: impl Fn(&[String]) -> bool,
) -> Duration {
    while !wanted(&providers(topology)) {
        let left = PROPAGATION.saturating_sub(since.elapsed());
        assert!(!left.is_zero(), "{what}: not seen at the other replica within {PROPAGATION:?}; providers {:?}", providers(topology));
        if let Some(next) = watcher.watch(agent_id, topology.version, left).await.expect("long poll") {
            *topology = next;
        }
    }
    since.elapsed()
}

/// Heartbeats `agent_id` at `registry` every interval until dropped.
fn beat_forever(registry: RegistryClient, agent_id: &str) -> tokio::task::JoinHandle<()> {
    let agent_id = agent_id.to_owned();
    tokio::spawn(async move {
        loop {
            let beat = registry.heartbeat(&agent_id, 0).await.expect("a heartbeat");
            assert!(matches!(beat, HeartbeatOutcome::Alive(_)), "the replica forgot {agent_id}");
            tokio::time::sleep(HEARTBEAT).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_at_one_replica_reaches_agents_long_polling_another_within_a_second_and_eviction_happens_once() {
    let postgres = Postgres::start();
    let certs = Certs::init("calc,front");
    let (a, b) = (replica(&certs, &postgres), replica(&certs, &postgres));
    let (calc, front) = (client(&certs, &a.url, "calc"), client(&certs, &b.url, "front"));
    let mut topology = front.register(&dependent("front-1")).await.expect("register front at B").topology;
    let front_beats = beat_forever(client(&certs, &b.url, "front"), "front-1");
    assert!(providers(&topology).is_empty());

    let registering = Instant::now();
    calc.register(&provider("calc-1")).await.expect("register calc at A");
    let took = wait_topology(&front, "front-1", &mut topology, registering, "a registration", |p| p == ["calc-1"]).await;
    eprintln!("registration at A → dependent long-polling B: {took:?}");

    let deregistering = Instant::now();
    calc.deregister("calc-1").await.expect("deregister calc at A");
    let took = wait_topology(&front, "front-1", &mut topology, deregistering, "a deregistration", <[String]>::is_empty).await;
    eprintln!("deregistration at A → dependent long-polling B: {took:?}");

    // A provider that beats at A, then at B (another replica), then stops: evicted once, by the
    // replica holding the lead, and its dependent at B learns it.
    let registered = calc.register(&provider("calc-2")).await.expect("register calc again");
    wait_topology(&front, "front-1", &mut topology, Instant::now(), "a second registration", |p| p == ["calc-2"]).await;
    let calc_at_b = client(&certs, &b.url, "calc");
    for (i, beat_at) in [&calc, &calc_at_b, &calc, &calc_at_b].into_iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(HEARTBEAT).await;
        }
        let beat = beat_at.heartbeat("calc-2", registered.topology.version).await.expect("heartbeat");
        assert!(matches!(beat, HeartbeatOutcome::Alive(_)), "both replicas know calc-2");
    }
    let silent_since = Instant::now();
    // The eviction window (3 intervals), the batching delay (half one) and a sweep period.
    let window = HEARTBEAT * 3 + HEARTBEAT / 2;
    let evicted = loop {
        let left = (window + PROPAGATION).saturating_sub(silent_since.elapsed());
        assert!(!left.is_zero(), "calc-2 was never evicted; providers {:?}", providers(&topology));
        if let Some(next) = front.watch("front-1", topology.version, left).await.expect("long poll") {
            topology = next;
        }
        if providers(&topology).is_empty() {
            break silent_since.elapsed();
        }
    };
    assert!(evicted >= HEARTBEAT * 3, "not evicted before the window: {evicted:?}");
    eprintln!("a provider silent at every replica was evicted after {evicted:?} (window {window:?})");
    front_beats.abort();

    let logs: Vec<String> = [a, b].into_iter().map(|replica| replica.terminate().1).collect();
    let evictions: usize = logs.iter().map(|log| log.matches("agent evicted: heartbeats stopped").count()).sum();
    assert_eq!(evictions, 1, "one eviction for the mesh, not one per replica:\n{}", logs.join("\n----\n"));
    let removed_elsewhere: usize = logs.iter().map(|log| log.matches("agent removed at another replica").count()).sum();
    assert!(removed_elsewhere >= 1, "the other replica took the eviction as news");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_starts_late_takes_every_stored_registration() {
    let postgres = Postgres::start();
    let certs = Certs::init("calc,front");
    let a = replica(&certs, &postgres);
    client(&certs, &a.url, "calc").register(&provider("calc-1")).await.expect("register calc at A");
    let front_at_a = client(&certs, &a.url, "front");
    front_at_a.register(&dependent("front-1")).await.expect("register front at A");
    // Stored behind the answer: wait for the row rather than a fixed time.
    let stored = Instant::now();
    while postgres.psql("SELECT count(*) FROM toolmesh_agents") != "2" {
        assert!(stored.elapsed() < PROPAGATION, "the registrations were not stored within {PROPAGATION:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    let b = replica(&certs, &postgres);
    // The agent moves to B without registering again: B knows it, and its providers.
    let front_at_b = client(&certs, &b.url, "front");
    match front_at_b.heartbeat("front-1", 0).await.expect("heartbeat at B") {
        HeartbeatOutcome::Alive(Some(topology)) => assert_eq!(providers(&topology), ["calc-1"]),
        other => panic!("B did not take the stored registration: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_replica_that_evicts_dies_another_takes_the_lead_and_evicts_once() {
    let postgres = Postgres::start();
    let certs = Certs::init("calc,front");
    // The first replica takes the lead at its start (nobody holds it yet).
    let first = replica(&certs, &postgres);
    let b = replica(&certs, &postgres);
    let front = client(&certs, &b.url, "front");
    let mut topology = front.register(&dependent("front-1")).await.expect("register front at B").topology;
    let front_beats = beat_forever(client(&certs, &b.url, "front"), "front-1");
    drop(first); // SIGKILL: its session ends, and PostgreSQL releases its lock with it
    let calc = client(&certs, &b.url, "calc");
    let registered = calc.register(&provider("calc-1")).await.expect("register calc at B");
    wait_topology(&front, "front-1", &mut topology, Instant::now(), "a registration", |p| p == ["calc-1"]).await;
    calc.heartbeat("calc-1", registered.topology.version).await.expect("heartbeat");
    let silent_since = Instant::now();
    // B takes the lead at its next period, then waits one eviction window before evicting
    // (every replica's batch of heartbeats reaches the store within it).
    let deadline = HEARTBEAT * 10;
    while !providers(&topology).is_empty() {
        let left = deadline.saturating_sub(silent_since.elapsed());
        assert!(!left.is_zero(), "calc-1 was never evicted after the leader died; providers {:?}", providers(&topology));
        if let Some(next) = front.watch("front-1", topology.version, left).await.expect("long poll") {
            topology = next;
        }
    }
    eprintln!("after the leader died, a provider silent since was evicted in {:?}", silent_since.elapsed());
    front_beats.abort();
    let (_, logs) = b.terminate();
    assert!(logs.contains("this replica evicts silent agents for the mesh"), "B took the lead:\n{logs}");
    assert_eq!(logs.matches("agent evicted: heartbeats stopped").count(), 1, "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_reach_postgresql_in_one_statement_per_replica_and_period_not_one_write_each() {
    let postgres = Postgres::start();
    let certs = Certs::init("calc,front");
    let (a, b) = (replica(&certs, &postgres), replica(&certs, &postgres));
    let beaters = [(client(&certs, &a.url, "calc"), provider("calc-1")), (client(&certs, &b.url, "front"), dependent("front-1"))];
    for (registry, registration) in &beaters {
        registry.register(registration).await.expect("register");
    }
    // Count every UPDATE statement on the table from here on (a statement-level trigger).
    postgres.psql(
        "CREATE TABLE updates (at timestamptz NOT NULL DEFAULT now());
         CREATE FUNCTION count_update() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO updates DEFAULT VALUES; RETURN NULL; END $$;
         CREATE TRIGGER count_updates AFTER UPDATE ON toolmesh_agents FOR EACH STATEMENT EXECUTE FUNCTION count_update();",
    );
    let started = Instant::now();
    const BEATS: usize = 150;
    let beating = beaters.map(|(registry, registration)| {
        tokio::spawn(async move {
            for _ in 0..BEATS {
                let beat = registry.heartbeat(&registration.agent_id, 0).await.expect("heartbeat");
                assert!(matches!(beat, HeartbeatOutcome::Alive(_)));
            }
        })
    });
    for beater in beating {
        beater.await.expect("heartbeats");
    }
    let beaten_for = started.elapsed();
    // The last batch goes out within a period (half an interval).
    tokio::time::sleep(HEARTBEAT).await;
    let statements: usize = postgres.psql("SELECT count(*) FROM updates").parse().expect("a count");
    let periods = (started.elapsed().as_millis() / (HEARTBEAT / 2).as_millis()) as usize + 1;
    eprintln!("{} heartbeats over {beaten_for:?} at two replicas: {statements} UPDATE statements ({periods} periods)", 2 * BEATS);
    assert!(statements >= 1, "the heartbeats reached the store");
    assert!(statements <= 2 * periods, "at most one UPDATE per replica and period: {statements} for {periods} periods");
    assert!(statements * 10 < 2 * BEATS, "far fewer writes than heartbeats: {statements}");
}

// ---- Faults under steady call load, with in-process agents knowing every replica ----

async fn agent(certs: &Certs, name: &str, registries: &str, tools: serde_json::Value) -> Agent {
    common::adding_agent(certs, name, registries, HEARTBEAT, tools).await
}

/// Calls `front` (which calls its `add` provider) every 2 ms until stopped; answers the calls
/// made, those failed and the first failure.
struct Load {
    calls: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Option<String>>,
}

impl Load {
    fn start(front: &Agent) -> Load {
        let (calls, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = {
            let (front, calls, failed) = (front.clone(), calls.clone(), failed.clone());
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
        Load { calls, failed, stop, task }
    }

    async fn finish(self) -> (usize, usize, Option<String>) {
        let _ = self.stop.send(true);
        let first_error = self.task.await.expect("load task");
        (self.calls.load(Ordering::Relaxed), self.failed.load(Ordering::Relaxed), first_error)
    }
}

/// Starts `calc` (provides add) and `front` (depends on add), both knowing every registry of
/// `list`, and waits until `front` reaches `calc`.
async fn calc_and_front(certs: &Certs, list: &str) -> (Agent, Agent) {
    let calc = agent(certs, "calc", list, json!([{"name": "add", "capability": "add"}])).await;
    let front = agent(certs, "front", list, json!([{"name": "front", "capability": "front", "dependencies": ["add"]}])).await;
    let started = Instant::now();
    while front.call("front", 0, json!({"a": 1, "b": 2}), None).await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(5), "the caller never saw the provider");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (calc, front)
}

/// The agent ids `url` lists as healthy.
async fn healthy_at(certs: &Certs, url: &str) -> Vec<String> {
    let listed = client(certs, url, "operator").list_agents().await.map(|l| l.agents).unwrap_or_default();
    listed.into_iter().filter(|a| a.status == "healthy").map(|a| a.agent_id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_one_of_three_replicas_under_load_fails_no_call_and_changes_still_propagate() {
    let postgres = Postgres::start();
    let certs = Certs::init("calc,front,other");
    let mut replicas: Vec<Option<RegistryProcess>> = (0..3).map(|_| Some(replica(&certs, &postgres))).collect();
    let urls: Vec<String> = replicas.iter().flatten().map(|r| r.url.clone()).collect();
    let (calc, front) = calc_and_front(&certs, &urls.join(",")).await;
    let load = Load::start(&front);
    tokio::time::sleep(HEARTBEAT).await;

    // Kill the replica the provider homes on.
    let home = spread(calc.agent_id(), urls.len());
    let killed_at = Instant::now();
    drop(replicas[home].take()); // SIGKILL
    let survivors: Vec<&String> = urls.iter().enumerate().filter(|(i, _)| *i != home).map(|(_, u)| u).collect();
    // Re-homed: a survivor (which knew calc already, from the store) receives its heartbeat,
    // without a registration; a heartbeat `last_seen_ms` ago that is younger than the kill came
    // after it.
    let calc_id = calc.agent_id().to_owned();
    let moved = 'moved: loop {
        for url in &survivors {
            let listed = client(&certs, url, "operator").list_agents().await.expect("list").agents;
            let there = listed.iter().find(|a| a.agent_id == calc_id).expect("every survivor knows calc");
            let since_kill = killed_at.elapsed();
            if u128::from(there.last_seen_ms) < since_kill.as_millis() {
                break 'moved since_kill - Duration::from_millis(there.last_seen_ms);
            }
        }
        assert!(killed_at.elapsed() < HEARTBEAT * 5, "calc never beat at a survivor after the kill");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    eprintln!("after the kill, calc beat at a survivor after {moved:?}");
    // It moves at its next heartbeat, due within an interval of the kill; the margin is that
    // heartbeat's refused connection and its handshake with the survivor on a busy machine.
    assert!(moved <= HEARTBEAT + HEARTBEAT / 4, "re-homed within one heartbeat interval: took {moved:?}");

    // A change at one survivor still reaches an agent long-polling the other within a second.
    let watcher = client(&certs, survivors[1], "other");
    let mut topology = watcher
        .register(&registration("other-1", "other", json!([{"name": "o", "capability": "o", "dependencies": ["mul"]}])))
        .await
        .expect("register")
        .topology;
    let beats = beat_forever(client(&certs, survivors[1], "other"), "other-1");
    let registering = Instant::now();
    client(&certs, survivors[0], "calc")
        .register(&registration("mul-1", "calc", json!([{"name": "mul", "capability": "mul"}])))
        .await
        .expect("register at a survivor");
    let took = wait_topology(&watcher, "other-1", &mut topology, registering, "a registration after the kill", |p| p == ["mul-1"]).await;
    eprintln!("after the kill: registration at one survivor → dependent long-polling the other: {took:?}");
    beats.abort();

    // The load goes on for ten intervals past the kill (the survivors' views settle meanwhile).
    tokio::time::sleep_until((killed_at + HEARTBEAT * 10).into()).await;
    let (calls, failed, first_error) = load.finish().await;
    eprintln!("killing one of three replicas: {calls} calls, {failed} failed");
    assert_eq!(failed, 0, "calls failed while a replica died: first {first_error:?}");
    assert!(calls > 100, "the load ran: {calls} calls");
    for url in &survivors {
        let healthy = healthy_at(&certs, url).await;
        assert!(healthy.contains(&calc.agent_id().to_owned()) && healthy.contains(&front.agent_id().to_owned()), "{url}: {healthy:?}");
    }
    front.shutdown().await;
    calc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_postgresql_for_ten_seconds_under_load_fails_no_call_and_replicas_converge_when_it_returns() {
    let mut postgres = Postgres::start();
    let certs = Certs::init("calc,front,other");
    let (a, b) = (replica(&certs, &postgres), replica(&certs, &postgres));
    let list = format!("{},{}", a.url, b.url);
    let (calc, front) = calc_and_front(&certs, &list).await;
    let load = Load::start(&front);
    // The outage starts from replicas that agree: each holds both agents.
    let ids = [calc.agent_id().to_owned(), front.agent_id().to_owned()];
    let converging = Instant::now();
    for url in [&a.url, &b.url] {
        while healthy_at(&certs, url).await.iter().filter(|id| ids.contains(id)).count() < 2 {
            assert!(converging.elapsed() < PROPAGATION, "{url} does not hold both agents healthy");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    postgres.stop();
    let stopped_at = Instant::now();
    // Meanwhile agents are served from memory: heartbeats keep both agents healthy at every
    // replica (nobody is evicted for the store's silence), and a registration is accepted.
    let late = client(&certs, &a.url, "other");
    late.register(&provider_named("late-1")).await.expect("a registration while PostgreSQL is down");
    let late_beats = beat_forever(client(&certs, &a.url, "other"), "late-1");
    while stopped_at.elapsed() < Duration::from_secs(10) {
        for url in [&a.url, &b.url] {
            let healthy = healthy_at(&certs, url).await;
            assert!(
                healthy.contains(&calc.agent_id().to_owned()) && healthy.contains(&front.agent_id().to_owned()),
                "{url} after {:?} without PostgreSQL: healthy {healthy:?}",
                stopped_at.elapsed()
            );
        }
        tokio::time::sleep(HEARTBEAT).await;
    }
    assert!(!healthy_at(&certs, &b.url).await.contains(&"late-1".to_owned()), "B cannot know late-1 before the store returns");

    postgres.resume();
    let back = Instant::now();
    // The registration made during the outage reaches the other replica once the store is back.
    while !healthy_at(&certs, &b.url).await.contains(&"late-1".to_owned()) {
        assert!(back.elapsed() < HEARTBEAT * 10, "B never took the registration made at A while PostgreSQL was down");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("PostgreSQL back: the registration made during the outage reached the other replica in {:?}", back.elapsed());
    late_beats.abort();
    let (calls, failed, first_error) = load.finish().await;
    eprintln!("PostgreSQL stopped for 10 s: {calls} calls, {failed} failed");
    assert_eq!(failed, 0, "calls failed while PostgreSQL was down: first {first_error:?}");
    assert!(calls > 1000, "the load ran: {calls} calls");
    assert_eq!(postgres.psql("SELECT count(*) FROM toolmesh_agents"), "3", "every registration is stored again");
    front.shutdown().await;
    calc.shutdown().await;
    // No agent was told to register again, during the outage or after it: no storm.
    let logs: String = [a, b].into_iter().map(|replica| replica.terminate().1).collect();
    let registered: Vec<&str> = logs.lines().filter(|l| l.contains("agent registered") && l.contains("re_registration=")).collect();
    assert_eq!(registered.len(), 3, "calc, front and late-1 registered once each: {registered:#?}");
    assert!(registered.iter().all(|l| l.contains("re_registration=false")), "re-registrations: {registered:#?}");
}

fn provider_named(agent_id: &str) -> RegisterRequest {
    registration(agent_id, "other", json!([{"name": "sub", "capability": "sub"}]))
}
