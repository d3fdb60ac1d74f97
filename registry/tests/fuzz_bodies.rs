//! Bounded fuzzing of the registry's request bodies, run by `cargo test` in CI in a few seconds:
//! arbitrary bytes, and valid bodies of every route that reads one (register, heartbeat,
//! resolve, entities, bootstrap) with members removed, added, retyped or filled with odd
//! strings, then damaged byte by byte, sent over mutual TLS to a live `--tls-auto` registry.
//! Every body gets an answer: a documented status below 500, and for a refusal an `ApiError`
//! (JSON with `error` and `message`) — never a panic, a dropped connection or a 5xx.
//!
//! A longer run: `TOOLMESH_FUZZ_CASES=20000 cargo test -p toolmesh-registry --test fuzz_bodies`.

mod common;

use bytes::Bytes;
use common::{registration, Mesh, RawClient};
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Value};
use std::time::Duration;
use toolmesh_ca::Role;

fn cases() -> u32 {
    std::env::var("TOOLMESH_FUZZ_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(384)
}

/// Odd values to put anywhere.
fn odd_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        Just(json!(u64::MAX)),
        Just(json!(-1)),
        Just(json!(1.5e300)),
        "\\PC{0,16}".prop_map(Value::String),
        select(vec!["", " ", "\u{0}", "\u{1b}[2J\nINFO forged", "\u{202e}", "https://", "1.0", ">>1", "+", "-", "../x", "registry"])
            .prop_map(|s| json!(s)),
        Just(json!([])),
        Just(json!({})),
        Just(serde_json::from_str::<Value>(&format!("{}1{}", "[".repeat(100), "]".repeat(100))).expect("nested")),
    ]
}

/// One edit at a random place in a JSON tree.
fn edit(value: &mut Value, how: u8, pick: &mut impl FnMut(usize) -> usize, odd: Value, key: &str) {
    // Walk down to a random node.
    let mut node = value;
    loop {
        let len = match &*node {
            Value::Object(m) => m.len(),
            Value::Array(a) => a.len(),
            _ => 0,
        };
        if len == 0 || pick(3) == 0 {
            break;
        }
        let i = pick(len);
        node = match node {
            Value::Object(m) => m.values_mut().nth(i).expect("in range"),
            Value::Array(a) => &mut a[i],
            _ => unreachable!(),
        };
    }
    match (how, node) {
        (0, node) => *node = odd,
        (1, Value::Object(m)) => {
            m.insert(key.to_owned(), odd);
        }
        (2, Value::Object(m)) if !m.is_empty() => {
            let k = m.keys().nth(pick(m.len())).expect("in range").clone();
            m.remove(&k);
        }
        (3, Value::Array(a)) => a.push(odd),
        (_, node) => *node = odd,
    }
}

#[test]
fn every_body_gets_a_documented_answer_never_a_5xx() {
    let state = tempfile::tempdir().expect("tempdir");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let (mesh, issuer, registry) = runtime.block_on(Mesh::start_auto(state.path(), Duration::from_secs(3600), Duration::from_secs(30)));
    let agent = RawClient::new(&registry.url(), &mesh.identity("fuzz", Role::Agent));
    let operator = RawClient::new(&registry.url(), &mesh.identity("ops", Role::Operator));
    let joining = RawClient::anonymous(&registry.url(), issuer.token().ca_fingerprint(), Some(issuer.token().reveal()));
    // A registered agent, so heartbeats reach the body.
    let me = serde_json::to_vec(&registration("fuzz-1", &[("t", "c")], &[])).expect("json");
    assert_eq!(runtime.block_on(agent.send("POST", "/v1/agents", Some(Bytes::from(me)))).status, 200);
    let (_, csr) = toolmesh_ca::certificate_request("joiner").expect("csr");
    let partner = Mesh::named("fuzz partner CA");
    let routes: Vec<(&str, Value, &RawClient)> = vec![
        (
            "/v1/agents",
            serde_json::to_value(registration(
                "f-2",
                &[("a", "a"), ("b", "b")],
                &[json!("a"), json!({"capability": "b", "tags": ["+x", ["y", "z"]], "version": ">=1"})],
            ))
            .expect("json"),
            &agent,
        ),
        ("/v1/agents/fuzz-1/heartbeat", json!({"topology_version": 0}), &agent),
        ("/v1/resolve", json!({"capability": "a", "tags": ["x", "-y"], "version": "^1"}), &agent),
        ("/v1/entities", json!({"name": "p", "ca_cert": partner.ca.cert_pem(), "trust_domain": "p.example"}), &operator),
        ("/v1/bootstrap", json!({"name": "joiner", "csr": csr, "hosts": ["10.0.0.1"]}), &joining),
    ];
    let bodies = (
        0..routes.len(),
        prop_oneof![
            1 => proptest::collection::vec(any::<u8>(), 0..200).prop_map(Err),
            6 => proptest::collection::vec((0..5u8, odd_value(), "[a-z_]{1,8}"), 0..4).prop_map(Ok),
        ],
        proptest::collection::vec(any::<Index>(), 16),
        proptest::option::weighted(0.2, (any::<Index>(), any::<u8>())),
    );
    let mut runner = TestRunner::new(Config { cases: cases(), failure_persistence: None, ..Config::default() });
    let outcome = runner.run(&bodies, |(route, body, picks, damage)| {
        let (path, valid, client) = &routes[route];
        let mut picks = picks.into_iter().cycle();
        let mut pick = |n: usize| picks.next().expect("cycled").index(n.max(1));
        let mut bytes = match body {
            Err(raw) => raw,
            Ok(edits) => {
                let mut value = valid.clone();
                for (how, odd, key) in edits {
                    edit(&mut value, how, &mut pick, odd, &key);
                }
                serde_json::to_vec(&value).expect("serializes")
            }
        };
        if let Some((at, byte)) = damage {
            if !bytes.is_empty() {
                let i = at.index(bytes.len());
                bytes[i] ^= byte | 1;
            }
        }
        let answer = runtime.block_on(client.send("POST", path, Some(Bytes::from(bytes.clone()))));
        let shown = String::from_utf8_lossy(&bytes);
        let status = answer.status.as_u16();
        prop_assert!(
            matches!(status, 200 | 400 | 401 | 403 | 404 | 409 | 413),
            "POST {} answered {}: {}\nbody: {}",
            path,
            status,
            String::from_utf8_lossy(&answer.body),
            shown
        );
        if status >= 400 {
            let error: Value = serde_json::from_slice(&answer.body).map_err(|e| TestCaseError::fail(format!("not JSON ({e})")))?;
            prop_assert!(error["error"].is_string() && error["message"].is_string(), "not an ApiError: {}", error);
        }
        if status == 200 && *path == "/v1/entities" {
            // Keep the next valid entity body addable.
            runtime.block_on(operator.send("DELETE", "/v1/entities/p", None));
        }
        Ok(())
    });
    runtime.block_on(registry.shutdown());
    outcome.unwrap_or_else(|e| panic!("{e}"));
}
