use super::*;

const MESH: &str = "spiffe://toolmesh.local/agent/";

fn principal(id: &str) -> Principal<'_> {
    Principal::new(id, None)
}

fn target<'a>(agent: &'a str, tool: &'a str, capability: &'a str, tags: &'a [String]) -> Target<'a> {
    Target { agent, tool, capability, tags }
}

fn call<'a>(source: Principal<'a>, target: Target<'a>) -> Query<'a> {
    Query { phase: Phase::Call, method: "tools/call", source, origin: None, origin_vouched: false, target }
}

fn policy(yaml: &str) -> Policy {
    Policy::parse(yaml, 1).unwrap()
}

#[test]
fn the_default_allows_the_mesh_and_no_entity() {
    let p = Policy::allow_mesh();
    let front = format!("{MESH}front");
    let t = target("calc", "add", "math", &[]);
    let d = p.decide(&call(principal(&front), t));
    assert!(d.allowed);
    assert_eq!(&*d.rule, "default: allow-mesh");
    let partner = Principal::new("spiffe://partner.example/agent/x", Some("partner"));
    assert!(!p.decide(&call(partner, t)).allowed);
    // A mesh caller acting for a partner's origin is not the mesh either.
    assert!(!p.decide(&Query { origin: Some(partner), ..call(principal(&front), t) }).allowed);
}

#[test]
fn deny_rules_win_and_allow_rules_name_themselves() {
    let p = policy(
        r#"
apiVersion: toolmesh.dev/v1alpha1
kind: AccessPolicy
default: deny
rules:
  - name: front-does-math
    source: { agents: [front] }
    target: { capabilities: ["math*"] }
  - name: no-division
    action: deny
    target: { tools: [div] }
"#,
    );
    let front = format!("{MESH}front");
    let back = format!("{MESH}back");
    let allowed = p.decide(&call(principal(&front), target("calc", "add", "math", &[])));
    assert_eq!((allowed.allowed, &*allowed.rule), (true, "front-does-math"));
    let denied = p.decide(&call(principal(&front), target("calc", "div", "math", &[])));
    assert_eq!((denied.allowed, &*denied.rule), (false, "no-division"));
    let other = p.decide(&call(principal(&back), target("calc", "add", "math", &[])));
    assert_eq!((other.allowed, &*other.rule), (false, "default: deny"));
    let other_capability = p.decide(&call(principal(&front), target("stats", "mean", "stats", &[])));
    assert!(!other_capability.allowed);
}

#[test]
fn phases_default_to_discover_and_call_and_provide_is_explicit() {
    let p = policy(
        r#"{"apiVersion":"toolmesh.dev/v1alpha1","kind":"AccessPolicy","default":"deny","rules":[
            {"name":"see-and-call","source":{"agents":["front"]}},
            {"name":"calc-provides-math","phases":["provide"],"source":{"agents":["calc"]},"target":{"capabilities":["math"]}}]}"#,
    );
    let front = format!("{MESH}front");
    let calc = format!("{MESH}calc");
    let t = target("calc", "add", "math", &[]);
    for phase in [Phase::Discover, Phase::Call] {
        assert!(p.decide(&Query { phase, ..call(principal(&front), t) }).allowed);
    }
    assert!(!p.decide(&Query { phase: Phase::Provide, ..call(principal(&front), t) }).allowed);
    assert!(p.decide(&Query { phase: Phase::Provide, method: "", ..call(principal(&calc), t) }).allowed);
    assert!(!p.decide(&Query { phase: Phase::Provide, ..call(principal(&calc), target("calc", "mean", "stats", &[])) }).allowed);
}

#[test]
fn entities_are_matched_only_where_a_rule_names_them() {
    let p = policy(
        r#"
rules:
  - name: anyone-in-the-mesh
    source: { identities: ["*"], agents: ["*"] }
    target: { tools: [add] }
  - name: partner-reads
    source: { entities: [partner] }
    target: { tools: [get] }
  - name: partner-by-id
    source: { identities: ["spiffe://partner.example/*"] }
    target: { tools: [put] }
"#,
    );
    let partner = Principal::new("spiffe://partner.example/agent/x", Some("partner"));
    assert!(!p.decide(&call(partner, target("calc", "add", "math", &[]))).allowed);
    assert_eq!(&*p.decide(&call(partner, target("kv", "get", "kv", &[]))).rule, "partner-reads");
    assert_eq!(&*p.decide(&call(partner, target("kv", "put", "kv", &[]))).rule, "partner-by-id");
}

#[test]
fn origin_rules_match_the_origin_or_the_caller_on_a_direct_call() {
    let p = policy(
        r#"
default: deny
rules:
  - name: only-for-users
    origin: { agents: [frontdoor] }
    target: { tools: [pay] }
"#,
    );
    let frontdoor = format!("{MESH}frontdoor");
    let billing = format!("{MESH}billing");
    let t = target("bank", "pay", "payments", &[]);
    assert!(p.decide(&call(principal(&frontdoor), t)).allowed);
    assert!(!p.decide(&call(principal(&billing), t)).allowed);
    assert!(p.decide(&Query { origin: Some(principal(&frontdoor)), ..call(principal(&billing), t) }).allowed);
    // Only the origin's own signature grants through an origin rule; a hop's word does not.
    let vouched = Query { origin: Some(principal(&frontdoor)), origin_vouched: true, ..call(principal(&billing), t) };
    assert!(!p.decide(&vouched).allowed);
}

#[test]
fn tags_methods_and_agents_narrow_a_rule() {
    let p = policy(
        r#"
default: deny
rules:
  - name: public-list-only
    methods: [tools/list]
    target: { agents: ["calc*"], tags: [public] }
"#,
    );
    let front = format!("{MESH}front");
    let tags = vec!["public".to_owned()];
    let list =
        |agent, tags| Query { phase: Phase::Discover, method: "tools/list", ..call(principal(&front), target(agent, "add", "math", tags)) };
    assert!(p.decide(&list("calc2", &tags)).allowed);
    assert!(!p.decide(&list("stats", &tags)).allowed);
    assert!(!p.decide(&list("calc", &[])).allowed);
    assert!(!p.decide(&Query { phase: Phase::Discover, ..call(principal(&front), target("calc", "add", "math", &tags)) }).allowed);
}

#[test]
fn invalid_documents_name_the_rule_and_the_fix() {
    let cases = [
        ("apiVersion: v9\nrules: []", "apiVersion"),
        ("rules: [{name: a}, {name: a}]", "two rules have this name"),
        ("rules: [{name: a, phases: []}]", "phases is empty"),
        ("rules: [{name: a, source: {identities: [front]}}]", "not a SPIFFE ID"),
        ("rules: [{name: a, source: {}}]", "names nobody"),
        ("rules: [{name: a, action: deny, limits: {concurrency: 1}}]", "deny rule cannot carry limits"),
        ("rules: [{name: a, methods: [initialize]}]", "method 'initialize'"),
        ("rules: [{name: a, phases: [provide], origin: {agents: [x]}}]", "provide phase"),
        ("rules: [{name: a, souce: {agents: [x]}}]", "unknown field `souce`"),
        ("{\"rules\": 3}", "JSON"),
    ];
    for (text, expected) in cases {
        let e = Policy::parse(text, 0).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidConfig);
        assert!(e.message().contains(expected), "{text}: {}", e.message());
    }
}

#[test]
fn agent_names_come_from_agent_spiffe_ids_or_a_cn() {
    assert_eq!(agent_name_of("spiffe://td/agent/calc"), Some("calc"));
    assert_eq!(agent_name_of("spiffe://td/operator/ops"), None);
    assert_eq!(agent_name_of("spiffe://td/ns/prod/sa/calc"), Some("calc"), "the last segment, as the registry binds names");
    assert_eq!(agent_name_of("spiffe://td/registry/r"), None);
    assert_eq!(agent_name_of("spiffe://td"), None);
    assert_eq!(agent_name_of("spiffe://td/agent/"), None);
    assert_eq!(agent_name_of("spiffe://TD/agent/calc"), None, "not a valid SPIFFE ID: no name, and no CN either");
    let invalid = Principal::new("spiffe://td/agent/a?b", None);
    assert_eq!((invalid.trust_domain, invalid.agent_name()), ("", None));
    let valid = Principal::new("spiffe://td/agent/calc", None);
    assert_eq!((valid.trust_domain, valid.agent_name()), ("td", Some("calc")));
    assert_eq!(agent_name_of("unknown"), None);
    assert_eq!(agent_name_of("calc"), Some("calc"));
}

#[test]
fn a_hundred_rules_decide_in_microseconds() {
    // Not a timing assertion (bench/ measures it): a smoke check that a decision scans compiled
    // rules without parsing or allocating per rule.
    let rules: Vec<String> =
        (0..100).map(|i| format!(r#"{{"name":"r{i}","source":{{"agents":["agent{i}"]}},"target":{{"tools":["tool{i}*"]}}}}"#)).collect();
    let p = Policy::parse(&format!(r#"{{"default":"deny","rules":[{}]}}"#, rules.join(",")), 1).unwrap();
    let id = format!("{MESH}agent99");
    let d = p.decide(&call(principal(&id), target("x", "tool99", "c", &[])));
    assert_eq!((d.allowed, &*d.rule), (true, "r99"));
}
