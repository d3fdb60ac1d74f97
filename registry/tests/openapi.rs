//! Checks the live registry against `registry/openapi.yaml`: every request this test sends and
//! every answer it gets is validated against the document's schema for that operation and
//! status, and every response the document lists must have been seen, so the document and the
//! server cannot drift apart silently.

mod common;

use bytes::Bytes;
use common::postgres::Postgres;
use common::{registration_as, Answer, Mesh, RawClient};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;
use toolmesh_ca::Role;
use toolmesh_registry::RegistryConfig;

/// One documented response: path template, method, status.
type ResponseKey = (String, String, String);

struct Document {
    root: Value,
    seen: BTreeSet<ResponseKey>,
}

impl Document {
    fn load() -> Self {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml")).expect("read openapi.yaml");
        let root: Value = serde_norway::from_str(&text).expect("openapi.yaml is YAML");
        assert_eq!(root["openapi"], "3.1.0");
        Document { root, seen: BTreeSet::new() }
    }

    /// Every response the document lists, by operation.
    fn documented(&self) -> BTreeSet<ResponseKey> {
        let mut all = BTreeSet::new();
        for (path, item) in self.root["paths"].as_object().expect("paths") {
            for (method, operation) in item.as_object().expect("path item") {
                let Some(responses) = operation.get("responses").and_then(Value::as_object) else { continue };
                for status in responses.keys() {
                    all.insert((path.clone(), method.clone(), status.clone()));
                }
            }
        }
        all
    }

    /// Follows a `$ref` to a component (responses and parameters are referenced whole).
    fn deref<'a>(&'a self, node: &'a Value) -> &'a Value {
        match node.get("$ref").and_then(Value::as_str) {
            Some(reference) => {
                let pointer = reference.strip_prefix('#').expect("local reference");
                self.root.pointer(pointer).unwrap_or_else(|| panic!("dangling reference {reference}"))
            }
            None => node,
        }
    }

    /// Validates `instance` against `schema`, resolving `#/components/...` references against
    /// the document by embedding its components next to the schema.
    fn validate(&self, schema: &Value, instance: &Value, what: &str) {
        let wrapper = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": self.root["components"],
            "allOf": [schema],
        });
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .build(&wrapper)
            .unwrap_or_else(|e| panic!("{what}: the document's schema does not compile: {e}"));
        let errors: Vec<String> = validator.iter_errors(instance).map(|e| format!("{} at {}", e, e.instance_path())).collect();
        assert!(errors.is_empty(), "{what} does not match openapi.yaml:\n  {}\ninstance: {instance:#}", errors.join("\n  "));
    }

    fn operation(&self, template: &str, method: &str) -> &Value {
        let item = &self.root["paths"][template];
        assert!(item.is_object(), "openapi.yaml does not document {template}");
        let operation = &item[method];
        assert!(operation.is_object(), "openapi.yaml does not document {method} {template}");
        operation
    }

    /// Checks a request body against the operation's request schema.
    fn check_request(&self, template: &str, method: &str, body: &Value) {
        let schema = &self.operation(template, method)["requestBody"]["content"]["application/json"]["schema"];
        assert!(schema.is_object(), "{method} {template} documents no JSON request body");
        self.validate(schema, body, &format!("request of {method} {template}"));
    }

    /// Checks an answer against the documented response for its status, and records it.
    fn check_answer(&mut self, template: &str, method: &str, answer: &Answer) {
        let status = answer.status.as_str().to_owned();
        let response = &self.operation(template, method)["responses"][status.as_str()];
        assert!(response.is_object(), "{method} {template} answered {status}, which openapi.yaml does not list: {answer:?}");
        self.check_response(self.deref(response), answer, &format!("{status} of {method} {template}"));
        self.seen.insert((template.to_owned(), method.to_owned(), status));
    }

    fn check_response(&self, response: &Value, answer: &Answer, what: &str) {
        match response["content"]["application/json"]["schema"] {
            Value::Null => assert!(answer.body.is_empty(), "{what} documents no body but got {:?}", answer.body),
            ref schema => {
                let content_type = answer.headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
                assert_eq!(content_type, Some("application/json"), "{what}");
                self.validate(schema, &answer.json(), what);
            }
        }
        if let Some(headers) = response.get("headers").and_then(Value::as_object) {
            for name in headers.keys() {
                assert!(answer.headers.contains_key(name.as_str()), "{what} documents header {name}, missing from the answer");
            }
        }
    }
}

/// Sends requests and checks each exchange against the document.
struct Exchange<'a> {
    document: &'a mut Document,
    client: &'a RawClient,
}

impl Exchange<'_> {
    /// The same exchange, sent with another identity.
    fn by<'b>(&'b mut self, client: &'b RawClient) -> Exchange<'b> {
        Exchange { document: &mut *self.document, client }
    }

    /// Sends a body that must itself match the documented request schema and expects `status`.
    async fn expect(&mut self, status: u16, method: &str, template: &str, path: &str, body: Option<Value>) -> Answer {
        if let Some(body) = &body {
            self.document.check_request(template, method, body);
        }
        self.expect_raw(status, method, template, path, body.map(|b| Bytes::from(b.to_string()))).await
    }

    /// Sends any body (e.g. a deliberately invalid one) and expects `status`.
    async fn expect_raw(&mut self, status: u16, method: &str, template: &str, path: &str, body: Option<Bytes>) -> Answer {
        self.expect_as(status, method, template, path, body, "application/json").await
    }

    /// Sends any body of `content_type` and expects `status`.
    async fn expect_as(
        &mut self,
        status: u16,
        method: &str,
        template: &str,
        path: &str,
        body: Option<Bytes>,
        content_type: &str,
    ) -> Answer {
        let answer = self.client.send_as(&method.to_ascii_uppercase(), path, body, content_type).await;
        assert_eq!(answer.status.as_u16(), status, "{method} {path}: {}", String::from_utf8_lossy(&answer.body));
        self.document.check_answer(template, method, &answer);
        answer
    }
}

/// An OTLP export of one trace: a client span, and its failed server span.
fn otlp_request() -> Bytes {
    use toolmesh_core::trace::otlp::{export_request, resource, SpanKind, SpanRecord};
    let span = |id: u8, parent: Option<u8>, kind, error: Option<&str>| SpanRecord {
        trace_id: [7; 16],
        span_id: [id; 8],
        parent_span_id: parent.map(|p| [p; 8]),
        trace_state: None,
        name: "tools/call add".into(),
        kind,
        start_unix_nanos: 1_000 + u64::from(id),
        end_unix_nanos: 2_000,
        attributes: vec![("gen_ai.tool.name", "add".into())],
        error: error.map(str::to_owned),
    };
    let spans = [span(1, None, SpanKind::Client, None), span(2, Some(1), SpanKind::Server, Some("it broke"))];
    Bytes::from(export_request(&resource(&[("service.name".into(), "alice".into())]), ("test", "0"), &spans))
}

#[tokio::test]
async fn the_live_registry_matches_its_openapi_document() {
    let state = tempfile::tempdir().expect("tempdir");
    let (mesh, issuer, registry) = Mesh::start_auto(state.path(), Duration::from_secs(3600), Duration::from_secs(5)).await;
    let alice = RawClient::new(&registry.url(), &mesh.identity("alice", Role::Agent));
    let mallory = RawClient::new(&registry.url(), &mesh.identity("mallory", Role::Agent));
    let operator = RawClient::new(&registry.url(), &mesh.identity("ops", Role::Operator));
    let fingerprint = issuer.token().ca_fingerprint().to_owned();
    let anonymous = RawClient::anonymous(&registry.url(), &fingerprint, None);
    let joining = RawClient::anonymous(&registry.url(), &fingerprint, Some(issuer.token().reveal()));
    let partner_ca = Mesh::named("partner CA");
    let partner = RawClient::new(&registry.url(), &{
        let leaf = partner_ca.issue_in("p", Role::Agent, "partner");
        // The partner trusts the mesh CA (to reach the registry) and holds its own CA's certificate.
        let bundle = format!("{}{}", mesh.ca.cert_pem(), partner_ca.ca.cert_pem());
        toolmesh_core::tls::Identity::from_pem(&leaf.cert_pem, &leaf.key_pem, &bundle).expect("partner identity")
    });
    let mut document = Document::load();
    let mut ex = Exchange { document: &mut document, client: &alice };

    const AGENTS: &str = "/v1/agents";
    const AGENT: &str = "/v1/agents/{agent_id}";
    const HEARTBEAT: &str = "/v1/agents/{agent_id}/heartbeat";
    const TOPOLOGY: &str = "/v1/agents/{agent_id}/topology";
    const RESOLVE: &str = "/v1/resolve";
    let bytes = |text: &str| Some(Bytes::from(text.to_owned()));

    ex.expect(200, "get", "/health", "/health", None).await;

    // Registration: a provider, and a consumer that depends on it (with every selector form).
    let mut provider = serde_json::to_value(registration_as("alice", "adder-1", &[("add", "add")], &[])).expect("json");
    // A parameter mirrored in a header (SEP-2243): dependents learn it from their topology.
    provider["tools"][0]["input_schema"] = json!({"type": "object", "properties": {"a": {"type": "integer", "x-mcp-header": "A"}}});
    ex.expect(200, "post", AGENTS, AGENTS, Some(provider.clone())).await;
    let consumer = serde_json::to_value(registration_as(
        "alice",
        "consumer-1",
        &[("report", "report")],
        &[json!("add"), json!({"capability": "add", "tags": ["test", "+fast", "-beta", ["a", "test"]], "version": ">=1"})],
    ))
    .expect("json");
    let registered = ex.expect(200, "post", AGENTS, AGENTS, Some(consumer)).await.json();
    let version = registered["topology"]["version"].as_u64().expect("topology version");
    assert_eq!(registered["topology"]["dependencies"][0]["providers"][0]["agent_id"], "adder-1");
    assert_eq!(registered["topology"]["dependencies"][0]["providers"][0]["param_headers"], json!([{"parameter": "a", "header": "A"}]));
    let plaintext_endpoint = r#"{"agent_id":"x","name":"x","endpoint":"http://x/mcp","tools":[]}"#;
    let refused = ex.expect_raw(400, "post", AGENTS, AGENTS, bytes(plaintext_endpoint)).await.json();
    assert_eq!(refused["error"], "invalid_request");
    let refused = ex.expect_raw(400, "post", AGENTS, AGENTS, bytes(r#"{"agent_id":"x"}"#)).await.json();
    assert_eq!(refused["error"], "invalid_json");
    assert!(refused["message"].as_str().is_some_and(|m| m.contains("missing field `name`")), "{refused}");
    ex.expect_raw(413, "post", AGENTS, AGENTS, Some(Bytes::from(vec![b' '; 1024 * 1024 + 1]))).await;
    let stolen = ex.by(&mallory).expect(403, "post", AGENTS, AGENTS, Some(provider.clone())).await.json();
    assert_eq!(stolen["error"], "name_not_in_certificate");
    assert!(stolen["message"].as_str().is_some_and(|m| m.contains("toolmesh certs issue alice")), "{stolen}");
    let mut own_name = provider.clone();
    own_name["name"] = json!("mallory");
    let stolen = ex.by(&mallory).expect(409, "post", AGENTS, AGENTS, Some(own_name)).await.json();
    assert_eq!(stolen["error"], "identity_conflict");
    // Another identity carrying the name `alice` (of another trust domain, from the mesh CA).
    let other_alice = RawClient::new(&registry.url(), &{
        let leaf = mesh.issue_in("alice", Role::Agent, "other.example");
        toolmesh_core::tls::Identity::from_pem(&leaf.cert_pem, &leaf.key_pem, mesh.ca.cert_pem()).expect("identity")
    });
    let held = serde_json::to_value(registration_as("alice", "alice-2", &[("add", "add")], &[])).expect("json");
    let held = ex.by(&other_alice).expect(409, "post", AGENTS, AGENTS, Some(held)).await.json();
    assert_eq!(held["error"], "name_held_by_another_identity");
    let many: Vec<(String, String)> = (0..=toolmesh_registry::DEFAULT_MAX_TOOLS).map(|i| (format!("t{i}"), "t".to_owned())).collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(n, c)| (n.as_str(), c.as_str())).collect();
    let greedy = serde_json::to_value(registration_as("alice", "alice-9", &many, &[])).expect("json");
    let greedy = ex.expect(429, "post", AGENTS, AGENTS, Some(greedy)).await.json();
    assert!(greedy["message"].as_str().is_some_and(|m| m.contains("--max-tools-per-identity")), "{greedy}");

    let list = ex.expect(200, "get", AGENTS, AGENTS, None).await.json();
    assert_eq!(list["agents"].as_array().map(Vec::len), Some(2));
    assert_eq!(list["agents"][0]["identity"], "spiffe://toolmesh.local/agent/alice");

    // Heartbeats.
    let consumer_beat = "/v1/agents/consumer-1/heartbeat";
    let beat = ex.expect(200, "post", HEARTBEAT, consumer_beat, Some(json!({"topology_version": version}))).await;
    assert_eq!(beat.json().get("topology"), None, "an unchanged topology is not resent");
    assert!(beat.json()["trust_bundle_version"].is_u64(), "heartbeats announce the trust bundle version");
    let beat = ex.expect(200, "post", HEARTBEAT, consumer_beat, Some(json!({"topology_version": 0}))).await;
    assert_eq!(beat.json()["topology"]["version"], version);
    ex.expect_raw(400, "post", HEARTBEAT, consumer_beat, bytes("{}")).await;
    ex.expect(404, "post", HEARTBEAT, "/v1/agents/nobody/heartbeat", Some(json!({"topology_version": 0}))).await;
    ex.by(&mallory).expect(403, "post", HEARTBEAT, consumer_beat, Some(json!({"topology_version": 0}))).await;
    // Heartbeats report the calls the agent made, per provider, for the dashboard's call graph.
    let calls = json!([{"agent_id": "adder-1", "calls": 3, "errors": 1, "duration_ns": 4_500_000}]);
    ex.expect(200, "post", HEARTBEAT, consumer_beat, Some(json!({"topology_version": 0, "calls": calls}))).await;
    let inflated = json!({"topology_version": 0, "calls": [{"agent_id": "adder-1", "calls": 1, "errors": 2, "duration_ns": 0}]});
    let bad = ex.expect_raw(400, "post", HEARTBEAT, consumer_beat, bytes(&inflated.to_string())).await.json();
    assert!(bad["message"].as_str().is_some_and(|m| m.contains("calls[0] has 2 errors but 1 calls")), "{bad}");

    // Topology long poll.
    let topology = ex.expect(200, "get", TOPOLOGY, "/v1/agents/consumer-1/topology?since=0&wait_ms=10", None).await;
    assert_eq!(topology.json()["version"], version);
    ex.expect(204, "get", TOPOLOGY, &format!("/v1/agents/consumer-1/topology?since={version}&wait_ms=10"), None).await;
    ex.expect(400, "get", TOPOLOGY, "/v1/agents/consumer-1/topology?wait_ms=soon", None).await;
    ex.expect(404, "get", TOPOLOGY, "/v1/agents/nobody/topology", None).await;

    // Resolution.
    let resolved = ex.expect(200, "post", RESOLVE, RESOLVE, Some(json!({"capability": "add", "tags": ["+test"]}))).await.json();
    assert_eq!(resolved["providers"][0]["score"], 1);
    ex.expect(200, "post", RESOLVE, RESOLVE, Some(json!("add"))).await;
    ex.expect(400, "post", RESOLVE, RESOLVE, Some(json!({"capability": "add", "version": ">>1"}))).await;

    // Deregistration.
    ex.by(&mallory).expect(403, "delete", AGENT, "/v1/agents/adder-1", None).await;
    ex.expect(204, "delete", AGENT, "/v1/agents/adder-1", None).await;
    ex.expect(404, "delete", AGENT, "/v1/agents/adder-1", None).await;

    // Without a certificate only bootstrap is served, and only with the join token.
    let refused = ex.by(&anonymous).expect(401, "get", AGENTS, AGENTS, None).await.json();
    assert_eq!(refused["error"], "unauthenticated");
    const BOOTSTRAP: &str = "/v1/bootstrap";
    let (_, csr) = toolmesh_ca::certificate_request("joiner").expect("csr");
    let request = json!({"name": "joiner", "csr": csr, "hosts": ["10.1.2.3", "joiner.internal"]});
    ex.by(&anonymous).expect(401, "post", BOOTSTRAP, BOOTSTRAP, Some(request.clone())).await;
    let issued = ex.by(&joining).expect(200, "post", BOOTSTRAP, BOOTSTRAP, Some(request)).await.json();
    assert_eq!(issued["spiffe_id"], "spiffe://toolmesh.local/agent/joiner");
    assert!(issued["lifetime_ms"].as_u64().is_some_and(|ms| (3_599_000..=3_600_000).contains(&ms)), "{issued}");
    let summary = toolmesh_ca::CertificateSummary::parse_pem(issued["certificate"].as_str().expect("pem"), "issued").expect("cert");
    assert!(
        summary.sans().contains(&"IP:10.1.2.3".to_owned()) && summary.sans().contains(&"DNS:joiner.internal".to_owned()),
        "{:?}",
        summary.sans()
    );
    let bad_name = json!({"name": "../x", "csr": csr});
    ex.by(&joining).expect_raw(400, "post", BOOTSTRAP, BOOTSTRAP, Some(Bytes::from(bad_name.to_string()))).await;
    // The token issues agents, never the registry: its roles' names and its own names are refused.
    for (name, hosts) in
        [("registry", json!([])), ("operator", json!([])), ("joiner", json!(["Registry.Example."])), ("registry.example", json!([]))]
    {
        let refused =
            ex.by(&joining).expect(400, "post", BOOTSTRAP, BOOTSTRAP, Some(json!({"name": name, "csr": csr, "hosts": hosts}))).await.json();
        assert!(refused["message"].as_str().is_some_and(|m| m.contains("registry")), "{name}: {refused}");
    }

    // Entities: only admins change them; the bundle version follows.
    const BUNDLE: &str = "/v1/trust-bundle";
    const ENTITIES: &str = "/v1/entities";
    const ENTITY: &str = "/v1/entities/{entity}";
    let before = ex.expect(200, "get", BUNDLE, BUNDLE, None).await.json();
    let add = json!({"name": "partner", "ca_cert": partner_ca.ca.cert_pem()});
    let mesh_domain = json!({"name": "partner", "ca_cert": partner_ca.ca.cert_pem(), "trust_domain": "toolmesh.local"});
    let refused = ex.by(&operator).expect(400, "post", ENTITIES, ENTITIES, Some(mesh_domain)).await.json();
    assert!(refused["message"].as_str().is_some_and(|m| m.contains("the mesh's own")), "{refused}");
    let denied = ex.expect(403, "post", ENTITIES, ENTITIES, Some(add.clone())).await.json();
    assert!(denied["message"].as_str().is_some_and(|m| m.contains("admin")), "{denied}");
    let added = ex.by(&operator).expect(200, "post", ENTITIES, ENTITIES, Some(add.clone())).await.json();
    assert_eq!((&added["name"], &added["trust_domain"]), (&json!("partner"), &json!("partner")), "the default trust domain is the name");
    ex.by(&operator).expect(409, "post", ENTITIES, ENTITIES, Some(add)).await;
    let leaf = json!({"name": "leafy", "ca_cert": mesh.issue("leaf", Role::Agent).cert_pem});
    ex.by(&operator).expect(400, "post", ENTITIES, ENTITIES, Some(leaf)).await;
    let listed = ex.expect(200, "get", ENTITIES, ENTITIES, None).await.json();
    assert_eq!(listed["entities"][0]["name"], "partner");
    let after = ex.expect(200, "get", BUNDLE, BUNDLE, None).await.json();
    assert_ne!(after["version"], before["version"]);
    assert!(after["pem"].as_str().is_some_and(|p| p.matches("BEGIN CERTIFICATE").count() == 2), "{after}");
    assert_eq!(after["anchors"][0]["trust_domains"], json!(["toolmesh.local"]));
    assert_eq!((&after["anchors"][1]["entity"], &after["anchors"][1]["trust_domains"]), (&json!("partner"), &json!(["partner"])));

    // Entities are denied by default: without a policy naming it, a partner agent provides nothing.
    let theirs = serde_json::to_value(registration_as("p", "theirs-1", &[("mul", "mul")], &[])).expect("json");
    let refused = ex.by(&partner).expect(403, "post", AGENTS, AGENTS, Some(theirs)).await.json();
    assert_eq!(
        (&refused["error"], refused["message"].as_str().is_some_and(|m| m.contains("default: allow-mesh"))),
        (&json!("provide_denied"), true),
        "{refused}"
    );

    // The access policy: read by anyone, applied and tested by admins; once applied, provide
    // is enforced at registration and the answers announce its version.
    const POLICY: &str = "/v1/policy";
    const POLICY_TEST: &str = "/v1/policy/test";
    let none = ex.expect(404, "get", POLICY, POLICY, None).await.json();
    assert_eq!(none["error"], "no_policy");
    ex.by(&anonymous).expect(401, "get", POLICY, POLICY, None).await;
    let policy = json!({
        "apiVersion": "toolmesh.dev/v1alpha1",
        "kind": "AccessPolicy",
        "default": "allow-mesh",
        "rules": [
            {"name": "no-secrets", "action": "deny", "phases": ["provide"], "target": {"capabilities": ["secret"]}},
            {"name": "ops-calls", "source": {"identities": ["spiffe://toolmesh.local/operator/*"]}, "methods": ["tools/call"],
             "limits": {"ratePerSecond": 10, "burst": 20, "concurrency": 4}},
            {"name": "partner-joins", "phases": ["provide", "discover", "call"], "source": {"entities": ["partner"]}},
        ],
    });
    let denied = ex.expect(403, "put", POLICY, POLICY, Some(policy.clone())).await.json();
    assert!(denied["message"].as_str().is_some_and(|m| m.contains("applying a policy needs an admin")), "{denied}");
    let twice = json!({"rules": [{"name": "twice"}, {"name": "twice", "action": "deny"}]});
    let invalid = ex.by(&operator).expect(400, "put", POLICY, POLICY, Some(twice)).await.json();
    assert!(
        invalid["message"].as_str().is_some_and(|m| m.contains("rules[1] ('twice')") && m.contains("nothing was applied")),
        "{invalid}"
    );
    let unknown =
        ex.by(&operator).expect_raw(400, "put", POLICY, POLICY, bytes(r#"{"rules": [{"name": "x", "sources": {}}]}"#)).await.json();
    assert_eq!(unknown["error"], "invalid_json");
    let applied = ex.by(&operator).expect(200, "put", POLICY, POLICY, Some(policy.clone())).await.json();
    assert_eq!(applied["version"], 1);
    let read = ex.expect(200, "get", POLICY, POLICY, None).await.json();
    assert_eq!((&read["version"], &read["policy"]["rules"][0]["name"]), (&json!(1), &json!("no-secrets")));
    let secret = serde_json::to_value(registration_as("alice", "vault-1", &[("get", "secret")], &[])).expect("json");
    let refused = ex.expect(403, "post", AGENTS, AGENTS, Some(secret)).await.json();
    assert_eq!(refused["error"], "provide_denied");
    assert!(
        refused["message"].as_str().is_some_and(|m| m.contains("'get'") && m.contains("'secret'") && m.contains("'no-secrets'")),
        "{refused}"
    );
    let beat = ex.expect(200, "post", HEARTBEAT, consumer_beat, Some(json!({"topology_version": 0}))).await.json();
    assert_eq!(beat["policy_version"], 1, "heartbeats announce the policy version");
    // Heartbeats report the calls the agent's own policy refused, for the registry's audit.
    let refusal = json!({"kind": "call_denied", "caller": "spiffe://toolmesh.local/agent/mallory", "tool": "add", "rule": "default: deny", "time": "2026-12-05T00:00:00Z"});
    ex.expect(200, "post", HEARTBEAT, consumer_beat, Some(json!({"topology_version": 0, "denials": [refusal]}))).await;
    let forged = json!({"topology_version": 0, "denials": [{"kind": "anything", "caller": "x", "tool": "add", "rule": "r", "time": "t"}]});
    let bad = ex.expect_raw(400, "post", HEARTBEAT, consumer_beat, bytes(&forged.to_string())).await.json();
    assert!(bad["message"].as_str().is_some_and(|m| m.contains("denials[0].kind 'anything'")), "{bad}");
    let adder = ex.expect(200, "post", AGENTS, AGENTS, Some(provider.clone())).await.json();
    assert_eq!(adder["policy_version"], 1, "registrations announce the policy version");
    let test = json!({"from": "spiffe://toolmesh.local/agent/alice", "tool": "add", "phase": "discover"});
    ex.expect(403, "post", POLICY_TEST, POLICY_TEST, Some(test.clone())).await;
    ex.by(&operator).expect(400, "post", POLICY_TEST, POLICY_TEST, Some(json!({"from": "", "tool": "add"}))).await;
    let decided = ex.by(&operator).expect(200, "post", POLICY_TEST, POLICY_TEST, Some(test)).await.json();
    assert_eq!(
        decided["decisions"][0],
        json!({"agent": "alice", "tool": "add", "capability": "add", "allowed": true, "rule": "default: allow-mesh"})
    );
    let nobody = json!({"from": "spiffe://toolmesh.local/agent/alice", "origin": "spiffe://toolmesh.local/agent/bob", "tool": "secret", "agent": "calc", "phase": "provide"});
    let decided = ex.by(&operator).expect(200, "post", POLICY_TEST, POLICY_TEST, Some(nobody)).await.json();
    assert_eq!(
        decided["decisions"][0],
        json!({"agent": "calc", "tool": "secret", "capability": "secret", "allowed": false, "rule": "no-secrets"})
    );
    assert!(decided["note"].as_str().is_some_and(|n| n.contains("no provider of tool 'secret'")), "{decided}");

    // With a rule naming it, the partner agent registers with its entity, and is refused once
    // the entity is revoked.
    let theirs = serde_json::to_value(registration_as("p", "theirs-1", &[("mul", "mul")], &[])).expect("json");
    let joined = ex.by(&partner).expect(200, "post", AGENTS, AGENTS, Some(theirs)).await.json();
    assert_eq!(joined["trust_bundle_version"], after["version"]);
    let list = ex.expect(200, "get", AGENTS, AGENTS, None).await.json();
    let entity_of = |id: &str| list["agents"].as_array().and_then(|a| a.iter().find(|x| x["agent_id"] == id)).map(|x| x["entity"].clone());
    assert_eq!(entity_of("theirs-1"), Some(json!("partner")));
    assert_eq!(entity_of("consumer-1"), Some(Value::Null), "mesh agents have no entity");
    ex.expect(403, "delete", ENTITY, "/v1/entities/partner", None).await;
    ex.by(&operator).expect(204, "delete", ENTITY, "/v1/entities/partner", None).await;
    ex.by(&operator).expect(404, "delete", ENTITY, "/v1/entities/partner", None).await;
    let revoked =
        ex.by(&partner).expect(403, "post", HEARTBEAT, "/v1/agents/theirs-1/heartbeat", Some(json!({"topology_version": 0}))).await.json();
    assert_eq!(revoked["error"], "revoked");
    let list = ex.expect(200, "get", AGENTS, AGENTS, None).await.json();
    assert!(list["agents"].as_array().is_some_and(|a| a.iter().all(|x| x["agent_id"] != "theirs-1")), "evicted: {list}");

    // The audit: every denial above, for admins only.
    // The dashboard's snapshot: admins only over mTLS; it holds the heartbeat's calls above.
    const DASHBOARD: &str = "/dashboard/state.json";
    ex.by(&anonymous).expect(401, "get", DASHBOARD, DASHBOARD, None).await;
    ex.expect(403, "get", DASHBOARD, DASHBOARD, None).await;
    let state = ex.by(&operator).expect(200, "get", DASHBOARD, DASHBOARD, None).await.json();
    let edge = &state["edges"][0];
    assert_eq!(
        (&edge["from"], &edge["to"], &edge["calls"], &edge["errors"]),
        (&json!("consumer-1"), &json!("adder-1"), &json!(3), &json!(1)),
        "{state}"
    );
    assert!((edge["mean_latency_ms"].as_f64().unwrap() - 1.5).abs() < 1e-9, "{state}");
    const AUDIT: &str = "/v1/audit";
    ex.by(&anonymous).expect(401, "get", AUDIT, AUDIT, None).await;
    let denied = ex.expect(403, "get", AUDIT, AUDIT, None).await.json();
    assert!(denied["message"].as_str().is_some_and(|m| m.contains("reading the audit needs an admin")), "{denied}");
    ex.by(&operator).expect(400, "get", AUDIT, "/v1/audit?limit=0", None).await;
    let audit = ex.by(&operator).expect(200, "get", AUDIT, AUDIT, None).await.json();
    let rules: Vec<&str> = audit["events"].as_array().expect("events").iter().filter_map(|e| e["rule"].as_str()).collect();
    let reported = audit["events"].as_array().expect("events").iter().find(|e| e["kind"] == "call_denied").expect("a reported call denial");
    assert_eq!(
        (&reported["caller"], &reported["agent"], &reported["rule"]),
        (&json!("spiffe://toolmesh.local/agent/mallory"), &json!("consumer-1"), &json!("default: deny"))
    );
    for rule in [
        "no-secrets",
        "name_not_in_certificate",
        "agent_id_held_by_another_identity",
        "name_held_by_another_identity",
        "max_tools_per_identity",
        "not_owner",
        "admin_required",
        "not_in_trust_bundle",
    ] {
        assert!(rules.contains(&rule), "{rule} missing from the audit: {rules:?}");
    }
    let squatter = &audit["events"][0];
    assert_eq!(
        (&squatter["caller"], &squatter["agent"], &squatter["tool"]),
        (&json!("spiffe://toolmesh.local/agent/mallory"), &json!("alice"), &json!("add"))
    );
    let quota = ex.by(&operator).expect(200, "get", AUDIT, "/v1/audit?kind=quota_exceeded&limit=5", None).await.json();
    assert_eq!(quota["events"].as_array().map(Vec::len), Some(1), "{quota}");

    // Traces: any mesh certificate exports OTLP protobuf; admins read them back.
    const TRACES: &str = "/v1/traces";
    const TRACE: &str = "/v1/traces/{trace_id}";
    const PROTOBUF: &str = "application/x-protobuf";
    let otlp = otlp_request();
    let accepted = ex.expect_as(200, "post", TRACES, TRACES, Some(otlp.clone()), PROTOBUF).await;
    assert_eq!(accepted.headers.get(http::header::CONTENT_TYPE).map(|v| v.as_bytes()), Some(PROTOBUF.as_bytes()));
    ex.by(&anonymous).expect_as(401, "post", TRACES, TRACES, Some(otlp.clone()), PROTOBUF).await;
    let malformed = ex.expect_as(400, "post", TRACES, TRACES, Some(otlp.slice(..otlp.len() - 5)), PROTOBUF).await.json();
    assert_eq!(malformed["error"], "invalid_otlp");
    assert!(malformed["message"].as_str().is_some_and(|m| m.contains("not a valid OTLP ExportTraceServiceRequest")), "{malformed}");
    let json_otlp = ex.expect_raw(415, "post", TRACES, TRACES, bytes("{}")).await.json();
    assert!(json_otlp["message"].as_str().is_some_and(|m| m.contains("OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf")), "{json_otlp}");
    let denied = ex.expect(403, "get", TRACES, TRACES, None).await.json();
    assert!(denied["message"].as_str().is_some_and(|m| m.contains("reading traces needs an admin")), "{denied}");
    ex.by(&operator).expect(400, "get", TRACES, "/v1/traces?last=0", None).await;
    let recent = ex.by(&operator).expect(200, "get", TRACES, "/v1/traces?last=5", None).await.json();
    assert_eq!(recent["traces"][0]["root_name"], "tools/call add", "{recent}");
    assert_eq!((&recent["traces"][0]["span_count"], &recent["traces"][0]["error_count"]), (&json!(2), &json!(1)));
    let trace_path = format!("/v1/traces/{}", "07".repeat(16));
    ex.expect(403, "get", TRACE, &trace_path, None).await;
    let trace = ex.by(&operator).expect(200, "get", TRACE, &trace_path, None).await.json();
    assert_eq!(trace["spans"][1]["parent_span_id"], trace["spans"][0]["span_id"], "{trace}");
    // Stamped with the verified identity that exported it, whatever the body said.
    assert_eq!(trace["spans"][0]["attributes"]["toolmesh.exporter.identity"], "spiffe://toolmesh.local/agent/alice", "{trace}");
    assert_eq!((&trace["spans"][0]["kind"], &trace["spans"][1]["error"]), (&json!("client"), &json!("it broke")));
    ex.by(&operator).expect(400, "get", TRACE, "/v1/traces/nothex", None).await;
    let unknown = ex.by(&operator).expect(404, "get", TRACE, &format!("/v1/traces/{}", "ab".repeat(16)), None).await.json();
    assert_eq!(unknown["error"], "unknown_trace");

    // Last, since it cools this source down for a minute: wrong join tokens are throttled.
    let (_, csr) = toolmesh_ca::certificate_request("guesser").expect("csr");
    let guess = json!({"name": "guesser", "csr": csr});
    for _ in 0..toolmesh_registry::JOIN_FAILURES_ALLOWED {
        ex.by(&anonymous).expect(401, "post", BOOTSTRAP, BOOTSTRAP, Some(guess.clone())).await;
    }
    let throttled = ex.by(&anonymous).expect(429, "post", BOOTSTRAP, BOOTSTRAP, Some(guess)).await;
    assert!(throttled.headers.contains_key("retry-after"), "{:?}", throttled.headers);

    // A change the store cannot take, its PostgreSQL being down: 503, retry after. Checked
    // before anything else, so a revocation of an unknown entity is refused the same.
    let postgres = tokio::task::spawn_blocking(Postgres::start).await.expect("start PostgreSQL");
    let mut config = RegistryConfig::new("127.0.0.1", 0, mesh.identity("registry", Role::Registry));
    config.postgres = Some(postgres.url());
    let replica = toolmesh_registry::start(config).await.expect("a registry on PostgreSQL");
    let _stopped = tokio::task::spawn_blocking(move || {
        let mut postgres = postgres;
        postgres.stop();
        postgres
    })
    .await
    .expect("stop PostgreSQL");
    let replica_operator = RawClient::new(&replica.url(), &mesh.identity("ops", Role::Operator));
    let add = json!({"name": "later", "ca_cert": Mesh::named("later CA").ca.cert_pem()});
    let policy = json!({"default": "allow-mesh", "rules": []});
    for (method, template, path, body) in
        [("post", ENTITIES, ENTITIES, Some(add)), ("delete", ENTITY, "/v1/entities/later", None), ("put", POLICY, POLICY, Some(policy))]
    {
        let refused = ex.by(&replica_operator).expect(503, method, template, path, body).await;
        assert_eq!(refused.json()["error"], "store_unavailable", "{method} {path}");
    }
    replica.shutdown().await;

    let missing: Vec<_> = document.documented().difference(&document.seen).cloned().collect();
    assert!(missing.is_empty(), "documented responses this test never saw (document drifted?): {missing:?}");
    registry.shutdown().await;
}

#[tokio::test]
async fn undocumented_methods_and_paths_get_the_documented_errors() {
    let mesh = Mesh::new();
    let registry = mesh.start_registry(0, Duration::from_secs(5)).await;
    let client = RawClient::new(&registry.url(), &mesh.identity("alice", Role::Agent));
    let document = Document::load();
    let responses = &document.root["components"]["responses"];
    for (template, item) in document.root["paths"].as_object().expect("paths") {
        let documented: BTreeSet<String> =
            item.as_object().expect("path item").keys().filter(|k| *k != "parameters").map(|m| m.to_ascii_uppercase()).collect();
        let undocumented = ["GET", "POST", "PUT", "DELETE", "PATCH"].into_iter().find(|m| !documented.contains(*m));
        let method = undocumented.expect("some method is undocumented");
        let path = template.replace("{agent_id}", "some-agent").replace("{entity}", "some-entity");
        let answer = client.send(method, &path, None).await;
        assert_eq!(answer.status, 405, "{method} {path}");
        document.check_response(&responses["MethodNotAllowed"], &answer, &format!("405 of {method} {path}"));
        let allow: BTreeSet<String> =
            answer.headers["allow"].to_str().expect("ascii Allow").split(',').map(|m| m.trim().to_owned()).collect();
        assert_eq!(allow, documented, "Allow of {path} should list exactly the documented methods");
    }
    let unknown = client.send("GET", "/v2/agents", None).await;
    assert_eq!(unknown.status, 404);
    document.check_response(&responses["NotFound"], &unknown, "404 of an unknown path");
    registry.shutdown().await;
}
