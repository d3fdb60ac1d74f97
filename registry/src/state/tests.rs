use super::*;
use toolmesh_core::registry_api::{DependencySpec, HeartbeatResponse};

const ALICE_ID: &str = "spiffe://toolmesh.local/agent/alice";

fn alice() -> Caller {
    Caller::mesh(ALICE_ID)
}

fn registration(agent_id: &str, provides: &[&str], depends_on: &[&str]) -> RegisterRequest {
    let tools = provides
        .iter()
        .map(|capability| {
            serde_json::from_value(serde_json::json!({
                "name": format!("{capability}-tool"),
                "capability": capability,
                "dependencies": depends_on,
            }))
            .expect("test tool")
        })
        .collect();
    RegisterRequest { agent_id: agent_id.into(), name: "alice".into(), endpoint: format!("https://{agent_id}:1/mcp"), tools }
}

fn named(mut registration: RegisterRequest, name: &str) -> RegisterRequest {
    registration.name = name.to_owned();
    registration
}

fn provider_ids(watch: &TopologyWatch) -> Vec<String> {
    watch.borrow().dependencies.iter().flat_map(|d| d.providers.iter().map(|p| p.agent_id.clone())).collect()
}

#[test]
fn dependents_follow_providers_and_others_are_not_woken() {
    let registry = Registry::new(Duration::from_secs(5), 3);
    registry.register(registration("consumer", &["report"], &["add"]), &alice()).expect("register consumer");
    registry.register(registration("bystander", &["log"], &["sub"]), &alice()).expect("register bystander");
    let mut consumer = registry.watch("consumer", &alice()).expect("watch consumer");
    let mut bystander = registry.watch("bystander", &alice()).expect("watch bystander");
    consumer.mark_unchanged();
    bystander.mark_unchanged();

    registry.register(registration("adder", &["add"], &[]), &alice()).expect("register adder");
    assert!(consumer.has_changed().expect("open"));
    assert_eq!(provider_ids(&consumer), ["adder"]);
    assert!(!bystander.has_changed().expect("open"), "an unrelated agent must not be woken");

    consumer.mark_unchanged();
    registry.register(registration("adder", &["add"], &[]), &alice()).expect("idempotent re-registration");
    assert!(!consumer.has_changed().expect("open"), "an identical re-registration changes no topology");

    registry.deregister("adder", &alice(), false).expect("deregister");
    assert!(consumer.has_changed().expect("open"));
    assert!(provider_ids(&consumer).is_empty());
}

#[test]
fn only_the_registering_identity_may_act_on_an_agent() {
    let registry = Registry::new(Duration::from_secs(5), 3);
    let first = registry.register(registration("a", &["add"], &[]), &alice()).expect("register");
    let mallory = &Caller::mesh("spiffe://toolmesh.local/agent/mallory");
    assert!(matches!(
        registry.register(named(registration("a", &["add"], &[]), "mallory"), mallory),
        Err(StateError::IdentityConflict { .. })
    ));
    assert!(matches!(registry.heartbeat("a", mallory, first.topology.version), Err(StateError::NotOwner { .. })));
    assert!(matches!(registry.deregister("a", mallory, false), Err(StateError::NotOwner { .. })));
    assert_eq!(
        registry.heartbeat("a", &alice(), first.topology.version),
        Ok(HeartbeatResponse { topology: None, trust_bundle_version: None, policy_version: None, warming_up: true })
    );
    // The same identity from a partner's CA is another caller.
    let impostor = Caller { identity: ALICE_ID.to_owned(), entity: Some("partner".to_owned()) };
    assert!(matches!(registry.deregister("a", &impostor, false), Err(StateError::NotOwner { .. })));
}

#[test]
fn names_are_bound_to_certificates_and_held_by_one_identity() {
    let registry = Registry::new(Duration::from_secs(5), 3);
    // Replicas: one certificate, several agent ids.
    registry.register(registration("alice-1", &["add"], &[]), &alice()).expect("first replica");
    registry.register(registration("alice-2", &["add"], &[]), &alice()).expect("second replica");
    let evil = &Caller::mesh("spiffe://toolmesh.local/agent/evil");
    let refused = registry.register(registration("alice-3", &["add"], &[]), evil).unwrap_err();
    assert!(matches!(&refused, StateError::NameNotInCertificate(r) if r.carried.as_deref() == Some("evil")), "{refused:?}");
    registry.register(named(registration("evil-1", &["add"], &[]), "evil"), evil).expect("its own name");
    // Another identity carrying the same name (a legacy CN certificate) cannot take it either.
    let cn_alice = &Caller::mesh("alice");
    assert!(matches!(registry.register(registration("alice-4", &["add"], &[]), cn_alice), Err(StateError::NameHeld { .. })));
    // A partner registering `alice` (which a rule lets it provide) is recorded in its own namespace.
    registry.replace_policy(partner_may_provide());
    let partner = &Caller { identity: "spiffe://partner.example/agent/alice".to_owned(), entity: Some("partner".to_owned()) };
    registry.register(registration("p-1", &["add"], &[]), partner).expect("partner's alice");
    let names: Vec<String> = registry.list(None).agents.into_iter().map(|a| a.name).collect();
    assert_eq!(names, ["alice", "alice", "evil", "partner/alice"]);
    // An admin may deregister anyone's agent; others may not.
    let ops = &Caller::mesh("spiffe://toolmesh.local/operator/ops");
    assert!(matches!(registry.deregister("alice-1", ops, false), Err(StateError::NotOwner { .. })));
    registry.deregister("alice-1", ops, true).expect("admin deregisters");
    assert!(
        matches!(registry.register(registration("alice-4", &["add"], &[]), cn_alice), Err(StateError::NameHeld { .. })),
        "alice-2 still holds it"
    );
    registry.deregister("alice-2", &alice(), false).expect("deregister");
    registry.register(registration("alice-4", &["add"], &[]), cn_alice).expect("a name no live registration holds is free");
    assert!(matches!(
        registry.register(named(registration("ops-1", &["add"], &[]), "alice"), ops),
        Err(StateError::NameNotInCertificate(_))
    ));
}

#[test]
fn quotas_bound_one_identity_and_leave_its_registrations_alone() {
    let quotas = Quotas { max_agents: 2, max_tools: 3, max_bytes: 100_000 };
    let registry = Registry::new(Duration::from_secs(5), 3).with_quotas(quotas);
    registry.register(registration("a-1", &["x", "y"], &[]), &alice()).expect("within");
    registry.register(registration("a-1", &["x", "y"], &[]), &alice()).expect("a re-registration replaces its own usage");
    let too_many_tools = registry.register(registration("a-2", &["x", "y"], &[]), &alice()).unwrap_err();
    assert!(
        matches!(&too_many_tools, StateError::QuotaExceeded { exceeded, .. } if exceeded.rule == "max_tools_per_identity"),
        "{too_many_tools:?}"
    );
    registry.register(registration("a-2", &["x"], &[]), &alice()).expect("within");
    let too_many_agents = registry.register(registration("a-3", &[], &[]), &alice()).unwrap_err();
    assert!(matches!(&too_many_agents, StateError::QuotaExceeded { exceeded, .. } if exceeded.rule == "max_agents_per_identity"));
    assert_eq!(registry.list(None).agents.len(), 2, "nothing changed");
    // Another identity has quotas of its own.
    let bob = &Caller::mesh("spiffe://toolmesh.local/agent/bob");
    registry.register(named(registration("b-1", &["x"], &[]), "bob"), bob).expect("bob's own quota");
    let tiny = Registry::new(Duration::from_secs(5), 3).with_quotas(Quotas { max_bytes: 50, ..quotas });
    assert!(
        matches!(tiny.register(registration("a-1", &["x"], &[]), &alice()), Err(StateError::QuotaExceeded { exceeded, .. }) if exceeded.rule == "max_bytes_per_identity")
    );
}

#[tokio::test(start_paused = true)]
async fn an_agent_may_depend_on_itself_and_eviction_removes_it_from_dependents() {
    let registry = Registry::new(Duration::from_secs(5), 3);
    let own = registry.register(registration("self", &["add"], &["add"]), &alice()).expect("register");
    assert_eq!(own.topology.dependencies[0].providers[0].agent_id, "self");
    registry.register(registration("consumer", &["report"], &["add"]), &alice()).expect("register");
    let consumer = registry.watch("consumer", &alice()).expect("watch");
    tokio::time::advance(Duration::from_millis(5)).await;
    registry.heartbeat("consumer", &alice(), 0).expect("heartbeat");
    registry.sweep(Duration::from_millis(4));
    assert_eq!(registry.list(None).agents.iter().map(|a| a.agent_id.as_str()).collect::<Vec<_>>(), ["consumer"]);
    assert!(provider_ids(&consumer).is_empty());
    assert!(matches!(registry.watch("self", &alice()), Err(StateError::UnknownAgent(_))));
}

#[tokio::test(start_paused = true)]
async fn a_stale_provider_is_routed_to_only_when_no_healthy_one_remains() {
    let registry = Registry::new(Duration::from_secs(1), 3);
    registry.register(registration("quiet", &["add"], &[]), &alice()).expect("register");
    registry.register(registration("lively", &["add"], &[]), &alice()).expect("register");
    registry.register(registration("consumer", &["report"], &["add"]), &alice()).expect("register");
    let consumer = registry.watch("consumer", &alice()).expect("watch");
    assert_eq!(provider_ids(&consumer), ["lively", "quiet"]);

    // Two seconds without a beat from `quiet` (stale after 1.5 s, evicted after 3 s).
    tokio::time::advance(Duration::from_millis(1000)).await;
    registry.heartbeat("lively", &alice(), 0).expect("beat");
    tokio::time::advance(Duration::from_millis(1000)).await;
    registry.heartbeat("lively", &alice(), 0).expect("beat");
    registry.sweep(Duration::from_secs(3));
    assert_eq!(provider_ids(&consumer), ["lively"], "a healthy provider is preferred to a stale one");
    assert_eq!(registry.resolve(&DependencySpec::capability("add"), None).expect("resolve").providers.len(), 1);

    registry.heartbeat("quiet", &alice(), 0).expect("beat");
    registry.heartbeat("consumer", &alice(), 0).expect("beat");
    assert_eq!(provider_ids(&consumer), ["lively", "quiet"], "a stale provider that beats again is routed to again");

    // Both stale: both stay, as the last resort.
    tokio::time::advance(Duration::from_millis(2000)).await;
    registry.sweep(Duration::from_secs(3));
    assert_eq!(provider_ids(&consumer), ["lively", "quiet"]);
    assert_eq!(registry.list(None).agents.iter().filter(|a| a.status == "stale").count(), 3, "all still listed, as stale");
}

#[tokio::test(start_paused = true)]
async fn an_agent_the_registry_cannot_connect_to_is_listed_unreachable_until_it_beats_again() {
    let registry = Registry::new(Duration::from_secs(1), 3);
    registry.register(registration("gone", &["add"], &[]), &alice()).expect("register");
    registry.register(registration("lively", &["add"], &[]), &alice()).expect("register");
    registry.register(registration("consumer", &["report"], &["add"]), &alice()).expect("register");
    let consumer = registry.watch("consumer", &alice()).expect("watch");
    // Reported by a caller: probed at once, whatever its heartbeat.
    let reported = registry.reported(&["gone".into(), "nobody".into()]);
    assert_eq!(reported.iter().map(|p| p.agent_id.as_str()).collect::<Vec<_>>(), ["gone"], "only registered agents are probed");
    assert!(registry.late().is_empty(), "no heartbeat is late yet");
    registry.mark_unreachable(&reported[0], "refused");
    let status = |id: &str| registry.list(None).agents.into_iter().find(|a| a.agent_id == id).expect("listed").status;
    assert_eq!(status("gone"), "unreachable");
    assert_eq!(provider_ids(&consumer), ["lively"], "left out while a healthy provider remains");
    assert!(registry.reported(&["gone".into()]).is_empty(), "not probed again while unreachable");
    // Its next heartbeat makes it healthy again.
    registry.heartbeat("gone", &alice(), 0).expect("beat");
    assert_eq!(status("gone"), "healthy");
    assert_eq!(provider_ids(&consumer), ["gone", "lively"]);
    // A probe decided before a heartbeat does not count after it.
    let probe = registry.reported(&["gone".into()]).remove(0);
    tokio::time::advance(Duration::from_millis(10)).await;
    registry.heartbeat("gone", &alice(), 0).expect("beat");
    registry.mark_unreachable(&probe, "refused");
    assert_eq!(status("gone"), "healthy", "it beat after the probe was decided");
    // Late heartbeats are probed a tenth of an interval after they were due.
    tokio::time::advance(Duration::from_millis(1050)).await;
    registry.heartbeat("consumer", &alice(), 0).expect("beat");
    registry.heartbeat("lively", &alice(), 0).expect("beat");
    assert!(registry.late().is_empty());
    tokio::time::advance(Duration::from_millis(60)).await;
    assert_eq!(registry.late().iter().map(|p| p.agent_id.as_str()).collect::<Vec<_>>(), ["gone"]);
}

#[tokio::test(start_paused = true)]
async fn answers_say_warming_up_for_one_eviction_window_after_the_start() {
    let registry = Registry::new(Duration::from_secs(1), 3);
    assert!(registry.register(registration("a", &["add"], &[]), &alice()).expect("register").warming_up);
    tokio::time::advance(Duration::from_millis(2900)).await;
    assert!(registry.heartbeat("a", &alice(), 0).expect("beat").warming_up);
    tokio::time::advance(Duration::from_millis(200)).await;
    assert!(!registry.heartbeat("a", &alice(), 0).expect("beat").warming_up);
    assert!(!registry.register(registration("b", &["add"], &[]), &alice()).expect("register").warming_up);
}

/// Entities are denied by default: this lets `partner` provide and be seen.
fn partner_may_provide() -> Arc<Policy> {
    let text = "rules:\n  - name: partner-provides\n    phases: [provide, discover, call]\n    source: { entities: [partner] }\n";
    Arc::new(Policy::parse(text, 1).expect("policy"))
}

#[test]
fn revoking_an_entity_evicts_its_agents_from_every_topology() {
    let registry = Registry::new(Duration::from_secs(5), 3);
    registry.replace_policy(partner_may_provide());
    let partner = Caller { identity: "spiffe://partner.example/agent/p".to_owned(), entity: Some("partner".to_owned()) };
    registry.register(named(registration("theirs", &["add"], &[]), "p"), &partner).expect("register partner agent");
    registry.register(registration("ours", &["add"], &[]), &alice()).expect("register");
    registry.register(registration("consumer", &["report"], &["add"]), &alice()).expect("register");
    let consumer = registry.watch("consumer", &alice()).expect("watch");
    assert_eq!(provider_ids(&consumer), ["ours", "theirs"]);
    assert_eq!(
        registry.list(None).agents.iter().find(|a| a.agent_id == "theirs").and_then(|a| a.entity.clone()).as_deref(),
        Some("partner")
    );
    assert_eq!(registry.evict_entity("partner"), ["theirs"]);
    assert_eq!(provider_ids(&consumer), ["ours"]);
    assert!(registry.evict_entity("partner").is_empty());
}

/// A replica sharing registrations, with the channel its changes go out on.
fn replica() -> (Registry, tokio::sync::mpsc::UnboundedReceiver<Change>) {
    let (changes, changed) = tokio::sync::mpsc::unbounded_channel();
    (Registry::new(Duration::from_secs(1), 3).shared(changes, Duration::from_secs(1)), changed)
}

#[test]
fn a_replica_sends_its_own_changes_and_takes_others_without_sending_them_back() {
    let (registry, mut changed) = replica();
    registry.register(registration("consumer", &["report"], &["add"]), &alice()).expect("register consumer");
    assert!(matches!(changed.try_recv(), Ok(Change::Registered { registration, .. }) if registration.agent_id == "consumer"));
    let mut consumer = registry.watch("consumer", &alice()).expect("watch");
    consumer.mark_unchanged();

    registry.adopt(registration("adder", &["add"], &[]), alice(), Duration::ZERO);
    assert!(consumer.has_changed().expect("open"), "a registration at another replica wakes the dependent here");
    assert_eq!(provider_ids(&consumer), ["adder"]);
    consumer.mark_unchanged();
    registry.adopt(registration("adder", &["add"], &[]), alice(), Duration::ZERO);
    assert!(!consumer.has_changed().expect("open"), "the same registration again changes nothing");

    registry.forget("adder", false);
    assert!(consumer.has_changed().expect("open"));
    assert!(provider_ids(&consumer).is_empty());
    assert!(changed.try_recv().is_err(), "what other replicas changed is not sent back to them");

    registry.deregister("consumer", &alice(), false).expect("deregister");
    assert!(matches!(changed.try_recv(), Ok(Change::Removed { agent_id }) if agent_id == "consumer"));
}

#[tokio::test(start_paused = true)]
async fn a_replica_evicts_nobody_itself_and_judges_no_agent_by_the_stores_silence() {
    let (registry, _changed) = replica();
    registry.register(registration("adder", &["add"], &[]), &alice()).expect("register");
    // Long past the eviction window, with the store unread all along: still registered, and
    // healthy, since heartbeats at other replicas could not be known here.
    for _ in 0..10 {
        tokio::time::advance(Duration::from_secs(1)).await;
        registry.store_unheard(Duration::from_secs(1));
        registry.sweep(Duration::from_secs(3));
    }
    let listed = registry.list(None).agents;
    assert_eq!(listed.len(), 1, "only the store's leader evicts");
    assert_eq!(listed[0].status, "healthy");
    // With the store read again and nothing heard of it, it turns stale (routed to last).
    tokio::time::advance(Duration::from_secs(3)).await;
    registry.sweep(Duration::from_secs(3));
    assert_eq!(registry.list(None).agents[0].status, "stale");
    assert_eq!(registry.take_beaten(), Vec::<String>::new());
    registry.heartbeat("adder", &alice(), 0).expect("heartbeat");
    assert_eq!(registry.take_beaten(), ["adder"], "the heartbeat waits for the next batch");
}
