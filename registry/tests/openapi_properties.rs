//! Property-based test of the live registry against `registry/openapi.yaml`: registration bodies
//! are generated from the document's own `RegisterRequest` schema (its types, required members,
//! lengths, patterns, `oneOf`s and `examples`), some of them broken on purpose (an undeclared
//! member, a control character, a version that is not semver, an over-long string, a value of the
//! wrong type, a missing member), and sent over mutual TLS to a real registry. The property: the
//! registry accepts a body (200, an answer matching `RegisterResponse`) exactly when the
//! document's schema accepts it, and refuses every other one with a 400 `ApiError` that names the
//! member at fault — never a 5xx.
//!
//! Rules no JSON Schema can state are kept out of the generated bodies: tool names are made
//! unique within an agent, and dependency version constraints come from the document's
//! `examples`.

mod common;

use bytes::Bytes;
use common::{Mesh, RawClient};
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::strategy::{BoxedStrategy, Union};
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;
use std::time::Duration;
use toolmesh_ca::Role;

/// How many bodies one run sends (each is one request over a kept-alive connection); a longer
/// run: `TOOLMESH_PROPTEST_CASES=5000`.
fn cases() -> u32 {
    std::env::var("TOOLMESH_PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(96)
}

struct Document {
    root: Value,
}

/// A schema with its `$ref`s followed: keywords (siblings of a `$ref` win) and every pattern met
/// on the way, all of which apply.
struct Flat {
    keywords: Map<String, Value>,
    patterns: Vec<String>,
}

impl Document {
    fn load() -> Self {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml")).expect("read openapi.yaml");
        Document { root: serde_norway::from_str(&text).expect("openapi.yaml is YAML") }
    }

    fn schema(&self, name: &str) -> Value {
        json!({"$ref": format!("#/components/schemas/{name}")})
    }

    fn validator(&self, schema: &Value) -> jsonschema::Validator {
        let wrapper = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": self.root["components"],
            "allOf": [schema],
        });
        jsonschema::options().with_draft(jsonschema::Draft::Draft202012).build(&wrapper).expect("the document's schema compiles")
    }

    fn flatten(&self, schema: &Value) -> Flat {
        let mut flat = match schema.get("$ref").and_then(Value::as_str) {
            Some(reference) => {
                let target = self.root.pointer(reference.trim_start_matches('#')).unwrap_or_else(|| panic!("dangling {reference}"));
                self.flatten(target)
            }
            None => Flat { keywords: Map::new(), patterns: Vec::new() },
        };
        for (key, value) in schema.as_object().into_iter().flatten() {
            match key.as_str() {
                "$ref" => {}
                "pattern" => flat.patterns.push(value.as_str().expect("a pattern is a string").to_owned()),
                _ => {
                    flat.keywords.insert(key.clone(), value.clone());
                }
            }
        }
        flat
    }

    /// Values the schema accepts, generated from its keywords.
    fn strategy(&self, schema: &Value) -> BoxedStrategy<Value> {
        let flat = self.flatten(schema);
        let k = &flat.keywords;
        if let Some(examples) = k.get("examples").and_then(Value::as_array) {
            return select(examples.clone()).boxed();
        }
        if let Some(branches) = k.get("oneOf").and_then(Value::as_array) {
            return Union::new(branches.iter().map(|b| self.strategy(b))).boxed();
        }
        if let Some(values) = k.get("enum").and_then(Value::as_array) {
            return select(values.clone()).boxed();
        }
        let number = |key: &str| k.get(key).and_then(Value::as_u64);
        match k.get("type").and_then(Value::as_str) {
            Some("object") => {
                let required: BTreeSet<&str> =
                    k.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
                let members: Vec<BoxedStrategy<Option<(String, Value)>>> = k
                    .get("properties")
                    .and_then(Value::as_object)
                    .into_iter()
                    .flatten()
                    .map(|(name, sub)| {
                        let is_required = required.contains(name.as_str());
                        let name = name.clone();
                        let value = self.strategy(sub).prop_map(move |v| (name.clone(), v));
                        if is_required {
                            value.prop_map(Some).boxed()
                        } else {
                            proptest::option::of(value).boxed()
                        }
                    })
                    .collect();
                members.prop_map(|members| Value::Object(members.into_iter().flatten().collect())).boxed()
            }
            Some("array") => {
                let min = number("minItems").unwrap_or(0) as usize;
                let items = k.get("items").map(|i| self.strategy(i)).unwrap_or_else(|| Just(json!(1)).boxed());
                let unique = k.get("uniqueItems") == Some(&Value::Bool(true));
                proptest::collection::vec(items, min..=min.max(3))
                    .prop_map(move |mut items| {
                        if unique {
                            let mut seen = Vec::new();
                            items.retain(|item| {
                                !seen.contains(item) && {
                                    seen.push(item.clone());
                                    true
                                }
                            });
                        }
                        Value::Array(items)
                    })
                    .boxed()
            }
            Some("integer") => {
                let min = number("minimum").unwrap_or(0);
                let max = number("maximum").unwrap_or(1 << 20);
                (min..=max).prop_map(|n| json!(n)).boxed()
            }
            Some("boolean") => any::<bool>().prop_map(Value::Bool).boxed(),
            Some("string") => strings(&flat),
            other => panic!("the generator does not know schemas of type {other:?}: {schema}"),
        }
    }
}

/// Characters names are made of: ASCII, a space, non-ASCII letters and symbols, a no-break space
/// (white space to both Rust and ECMAScript) and a zero-width space (white space to neither).
const POOL: &[char] = &['a', 'b', 'Z', '0', '7', '-', '_', '.', '/', '%', '+', ' ', 'é', '✓', '中', '\u{a0}', '\u{200b}', '"', '\\'];

/// Strings a string schema accepts: from its anchored shape pattern when it has one, else from
/// [`POOL`] (sometimes exactly `maxLength` long, in two-byte characters: limits count
/// characters), and in every case filtered by all its patterns and lengths.
fn strings(flat: &Flat) -> BoxedStrategy<Value> {
    let min = flat.keywords.get("minLength").and_then(Value::as_u64).unwrap_or(0) as usize;
    let max = flat.keywords.get("maxLength").and_then(Value::as_u64).unwrap_or(64) as usize;
    let checks: Vec<regex::Regex> = flat.patterns.iter().map(|p| regex::Regex::new(p).expect("the pattern compiles")).collect();
    let shape = flat.patterns.iter().find(|p| p.starts_with('^') && !p.starts_with("^[^"));
    let base = match shape {
        Some(pattern) => {
            let unanchored = pattern.trim_start_matches('^').trim_end_matches('$');
            proptest::string::string_regex(unanchored).expect("the pattern generates").boxed()
        }
        None => prop_oneof![
            9 => proptest::collection::vec(select(POOL), min.max(1)..=max.min(24)).prop_map(|c| c.into_iter().collect::<String>()),
            1 => Just("é".repeat(max)),
        ]
        .boxed(),
    };
    base.prop_filter("outside the schema's lengths or patterns", move |s| {
        (min..=max).contains(&s.chars().count()) && checks.iter().all(|r| r.is_match(s))
    })
    .prop_map(Value::String)
    .boxed()
}

/// The ways a body is broken.
#[derive(Debug, Clone, Copy)]
enum Break {
    UnknownMember,
    UnknownToolMember,
    ControlCharacter,
    NotSemver,
    OverLong,
    WrongType,
    MissingMember,
}

const BREAKS: [Break; 7] = [
    Break::UnknownMember,
    Break::UnknownToolMember,
    Break::ControlCharacter,
    Break::NotSemver,
    Break::OverLong,
    Break::WrongType,
    Break::MissingMember,
];

/// Where a value sits in the body, as a JSON pointer's segments.
type Location = Vec<String>;

/// Every value of the body outside tools' input schemas (which are JSON Schema, checked as JSON only).
fn locations(value: &Value, at: &mut Location, out: &mut Vec<Location>) {
    out.push(at.clone());
    let children: Vec<(String, &Value)> = match value {
        Value::Object(map) => map.iter().filter(|(k, _)| *k != "input_schema").map(|(k, v)| (k.clone(), v)).collect(),
        Value::Array(items) => items.iter().enumerate().map(|(i, v)| (i.to_string(), v)).collect(),
        _ => return,
    };
    for (key, child) in children {
        at.push(key);
        locations(child, at, out);
        at.pop();
    }
}

fn pointer(location: &[String]) -> String {
    location.iter().map(|s| format!("/{s}")).collect()
}

/// `tools[2].tags[0]`, as the registry names a member.
fn path(location: &[String]) -> String {
    let mut out = String::new();
    for segment in location {
        if segment.parse::<usize>().is_ok() {
            out.push_str(&format!("[{segment}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(segment);
        }
    }
    out
}

/// Breaks `body` as `how` says, choosing where with `pick`; answers the path the refusal must name
/// when the break is in a value the registry reads as text.
fn break_body(body: &mut Value, how: Break, pick: Index, key: &str, control: char) -> Option<String> {
    let ensure_tool = |body: &mut Value| {
        let tools = body["tools"].as_array_mut().expect("tools");
        if tools.is_empty() {
            tools.push(json!({"name": "t", "capability": "c"}));
        }
        pick.index(tools.len())
    };
    let mut all = Vec::new();
    locations(body, &mut Vec::new(), &mut all);
    let strings: Vec<Location> = all.iter().filter(|l| body.pointer(&pointer(l)).is_some_and(Value::is_string)).cloned().collect();
    match how {
        Break::UnknownMember => {
            body[format!("x_{key}")] = json!(1);
            None
        }
        Break::UnknownToolMember => {
            let i = ensure_tool(body);
            body["tools"][i][format!("x_{key}")] = json!("x");
            None
        }
        Break::ControlCharacter => {
            let at = pick.get(&strings);
            let target = body.pointer_mut(&pointer(at)).expect("a string");
            let text = target.as_str().expect("a string").to_owned();
            let cut = text.char_indices().map(|(i, _)| i).nth(pick.index(text.chars().count() + 1)).unwrap_or(text.len());
            *target = json!(format!("{}{control}{}", &text[..cut], &text[cut..]));
            Some(path(at))
        }
        Break::NotSemver => {
            let i = ensure_tool(body);
            let bad = ["1", "1.2", "v1.2.3", "01.2.3", "1.2.3-", "1.2.3+", "1.2.3-01", "latest", "1.2.3.4", "1.0.0-a..b", "", " 1.0.0"];
            body["tools"][i]["version"] = json!(pick.get(&bad));
            Some(format!("tools[{i}].version"))
        }
        Break::OverLong => {
            let at = pick.get(&strings);
            let long = match at.last().map(String::as_str) {
                Some("description") => "d".repeat(8193),
                Some("endpoint") => format!("https://h/{}", "a".repeat(2039)),
                Some("version") if at.len() == 3 => format!("1.0.0-{}", "a".repeat(251)),
                Some("version") => format!(">=1{}", " ".repeat(254)),
                _ => "n".repeat(257),
            };
            *body.pointer_mut(&pointer(at)).expect("a string") = json!(long);
            Some(path(at))
        }
        Break::WrongType => {
            let at = pick.get(&all[1..]).clone();
            let target = body.pointer_mut(&pointer(&at)).expect("a value");
            *target = match target {
                Value::String(_) => json!(7),
                Value::Number(_) => json!("7"),
                Value::Array(_) => json!({"a": 1}),
                Value::Object(_) => json!("object"),
                _ => json!([]),
            };
            None
        }
        Break::MissingMember => {
            let members = ["agent_id", "name", "endpoint", "tools"];
            body.as_object_mut().expect("object").remove(*pick.get(&members));
            None
        }
    }
}

/// Makes tool names unique within the agent (a rule the document states in prose only).
fn unique_tool_names(body: &mut Value) {
    let mut seen = BTreeSet::new();
    for (i, tool) in body["tools"].as_array_mut().into_iter().flatten().enumerate() {
        let name = tool["name"].as_str().unwrap_or_default().to_owned();
        if !seen.insert(name) {
            // Not made of POOL's characters, so unlike any generated name.
            tool["name"] = json!(format!("tool-{i}"));
        }
    }
}

/// Percent-encodes an agent id for its URL path.
fn encode(id: &str) -> String {
    id.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[test]
fn the_registry_accepts_exactly_the_registrations_its_document_accepts() {
    let document = Document::load();
    let request_schema = document.schema("RegisterRequest");
    let request_validator = document.validator(&request_schema);
    let answer_validator = document.validator(&document.schema("RegisterResponse"));
    let error_validator = document.validator(&document.schema("ApiError"));
    let valid = document.strategy(&request_schema).prop_map(|mut body| {
        unique_tool_names(&mut body);
        body
    });
    let bodies = (
        valid,
        proptest::option::weighted(0.7, select(&BREAKS[..])),
        any::<Index>(),
        "[a-z]{1,8}",
        select(vec!['\u{1b}', '\n', '\0', '\u{7f}', '\u{85}', '\u{9b}', '\r']),
    );

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let mesh = Mesh::new();
    let registry = runtime.block_on(mesh.start_registry(0, Duration::from_secs(30)));
    let client = RawClient::new(&registry.url(), &mesh.identity("prop", Role::Agent));
    let mut runner = TestRunner::new(Config { cases: cases(), failure_persistence: None, ..Config::default() });
    let (accepted, refused) = (std::cell::Cell::new(0), std::cell::Cell::new(0));
    let outcome = runner.run(&bodies, |(mut body, how, pick, key, control)| {
        let named = how.and_then(|how| break_body(&mut body, how, pick, &key, control));
        let expected_valid = request_validator.is_valid(&body);
        if expected_valid {
            // Beyond the document: the name must be the one the certificate carries.
            body["name"] = json!("prop");
        }
        if how.is_none() {
            prop_assert!(expected_valid, "the generator made a body the document refuses: {body}");
        }
        let answer = runtime.block_on(client.send("POST", "/v1/agents", Some(Bytes::from(body.to_string()))));
        let text = String::from_utf8_lossy(&answer.body).into_owned();
        prop_assert!(answer.status.as_u16() < 500, "{how:?}: {} {text}\nbody: {body}", answer.status);
        if expected_valid {
            prop_assert_eq!(
                answer.status.as_u16(),
                200,
                "{:?}: the document accepts this body, the registry refused it: {}\nbody: {}",
                how,
                text,
                body
            );
            prop_assert!(answer_validator.is_valid(&answer.json()), "the answer does not match RegisterResponse: {text}");
            let id = body["agent_id"].as_str().expect("agent_id");
            let gone = runtime.block_on(client.send("DELETE", &format!("/v1/agents/{}", encode(id)), None));
            prop_assert_eq!(gone.status.as_u16(), 204, "deregistering {:?}", id);
            accepted.set(accepted.get() + 1);
        } else {
            prop_assert_eq!(
                answer.status.as_u16(),
                400,
                "{:?}: the document refuses this body, the registry answered {}\nbody: {}",
                how,
                text,
                body
            );
            let error = answer.json();
            prop_assert!(error_validator.is_valid(&error), "not an ApiError: {text}");
            prop_assert!(matches!(error["error"].as_str(), Some("invalid_json" | "invalid_request")), "{text}");
            if let Some(member) = named {
                prop_assert!(
                    error["message"].as_str().is_some_and(|m| m.contains(&member)),
                    "{how:?}: the refusal does not name {member}: {text}"
                );
            }
            refused.set(refused.get() + 1);
        }
        Ok::<(), TestCaseError>(())
    });
    runtime.block_on(registry.shutdown());
    if let Err(e) = outcome {
        panic!("{e}");
    }
    let (accepted, refused) = (accepted.get(), refused.get());
    eprintln!("{accepted} registrations accepted, {refused} refused, as the document says");
    assert!(accepted >= cases() / 8 && refused >= cases() / 3, "a lopsided run: {accepted} accepted, {refused} refused");
}
