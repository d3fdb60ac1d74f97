//! Input required (SEP-2322, 2026-07-28): a handler that needs something from the client (an
//! elicitation, a sampled message, its roots) answers with the requests instead of a result; the
//! client asks its user or model and calls again with the answers (`inputResponses`) and the
//! state the handler asked to get back (`requestState`).
//!
//! The state travels through the client, so core seals it: an HMAC-SHA256 under a key made when
//! the agent starts, over the tool it belongs to and an expiry. A state the client changed, one
//! made for another tool, or one past its expiry is refused (-32602) before the handler runs.

pub mod relay;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::hmac;
use serde_json::{Map, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a sealed state stays valid: long enough for a person to answer an elicitation.
pub const STATE_TTL: Duration = Duration::from_secs(30 * 60);

/// What a handler asks of the client: its requests by key, and the state it wants back.
#[derive(Debug, Clone, PartialEq)]
pub struct InputRequired {
    /// `{key: {"method": "elicitation/create" | "sampling/createMessage" | "roots/list", "params": {...}}}`
    pub input_requests: Map<String, Value>,
    /// Any JSON the handler wants back with the answers; sealed by core on the way out.
    pub request_state: Option<Value>,
}

/// Each request method a handler may ask, and the client capability it needs.
const METHODS: &[(&str, &str)] = &[("elicitation/create", "elicitation"), ("sampling/createMessage", "sampling"), ("roots/list", "roots")];

impl InputRequired {
    /// Reads a handler's answer `{"inputRequests": {...}, "requestState": ...}` (the same JSON in
    /// every language); `Err` names the member at fault.
    pub fn from_json(answer: Value) -> Result<InputRequired, String> {
        let Value::Object(mut answer) = answer else { return Err("an input-required answer must be a JSON object".into()) };
        let Some(Value::Object(mut requests)) = answer.remove("inputRequests") else {
            return Err("'inputRequests' must be an object of requests by key".into());
        };
        if requests.is_empty() {
            return Err("'inputRequests' names no request; answer a result instead".into());
        }
        for (key, request) in requests.iter_mut() {
            let method = request.get("method").and_then(Value::as_str).unwrap_or_default();
            if !METHODS.iter().any(|(m, _)| *m == method) {
                let known: Vec<&str> = METHODS.iter().map(|(m, _)| *m).collect();
                return Err(format!("inputRequests.{key}: 'method' must be one of {}", known.join(", ")));
            }
            match request.get("params") {
                None | Some(Value::Null) => request["params"] = Value::Object(Map::new()),
                Some(Value::Object(_)) => {}
                Some(_) => return Err(format!("inputRequests.{key}: 'params' must be an object")),
            }
        }
        let request_state = answer.remove("requestState").filter(|state| !state.is_null());
        Ok(InputRequired { input_requests: requests, request_state })
    }

    /// The client capabilities these requests need, each once, in request order.
    pub fn required_capabilities(&self) -> Vec<&'static str> {
        let mut needed: Vec<&'static str> = Vec::new();
        for request in self.input_requests.values() {
            let method = request.get("method").and_then(Value::as_str);
            if let Some((_, capability)) = METHODS.iter().find(|(m, _)| Some(*m) == method) {
                if !needed.contains(capability) {
                    needed.push(capability);
                }
            }
        }
        needed
    }
}

/// Seals and opens request states with one agent's key.
pub struct StateSeal {
    key: hmac::Key,
}

impl Default for StateSeal {
    fn default() -> Self {
        StateSeal::new()
    }
}

impl StateSeal {
    /// A seal with a fresh random key: states sealed by an earlier run of the agent are refused.
    pub fn new() -> StateSeal {
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &ring::rand::SystemRandom::new()).expect("the system random source works");
        StateSeal { key }
    }

    /// The opaque `requestState` string for `state`, valid for `subject` (`tool 'x'`) until
    /// [`STATE_TTL`] from now.
    pub fn seal(&self, subject: &str, state: &Value) -> String {
        let sealed = serde_json::json!({"for": subject, "exp": now_secs() + STATE_TTL.as_secs(), "state": state}).to_string();
        let tag = hmac::sign(&self.key, sealed.as_bytes());
        format!("{}.{}", URL_SAFE_NO_PAD.encode(sealed), URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// The state sealed in `request_state`, if this agent sealed it for `subject` and it has not
    /// expired; `Err` says which check failed.
    pub fn open(&self, subject: &str, request_state: &str) -> Result<Value, String> {
        const REFUSED: &str = "requestState failed its integrity check: it was changed, or not issued by this agent";
        let (payload, tag) = request_state.split_once('.').ok_or(REFUSED)?;
        let (payload, tag) = (URL_SAFE_NO_PAD.decode(payload).map_err(|_| REFUSED)?, URL_SAFE_NO_PAD.decode(tag).map_err(|_| REFUSED)?);
        hmac::verify(&self.key, &payload, &tag).map_err(|_| REFUSED)?;
        let Ok(Value::Object(mut sealed)) = serde_json::from_slice(&payload) else { return Err(REFUSED.into()) };
        if sealed.get("for").and_then(Value::as_str) != Some(subject) {
            return Err(format!("requestState was issued for another request, not {subject}"));
        }
        if sealed.get("exp").and_then(Value::as_u64).is_none_or(|exp| exp < now_secs()) {
            return Err("requestState has expired; call again without it to start over".into());
        }
        Ok(sealed.remove("state").unwrap_or(Value::Null))
    }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_sealed_state_opens_only_unchanged_for_its_own_subject_and_seal() {
        let seal = StateSeal::new();
        let sealed = seal.seal("tool 'a'", &json!({"step": 2}));
        assert_eq!(seal.open("tool 'a'", &sealed).unwrap(), json!({"step": 2}));
        assert!(seal.open("tool 'b'", &sealed).unwrap_err().contains("issued for another request"));
        assert!(StateSeal::new().open("tool 'a'", &sealed).unwrap_err().contains("integrity"));
        let (payload, tag) = sealed.split_once('.').unwrap();
        let forged = URL_SAFE_NO_PAD.encode(String::from_utf8(URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap().replace('2', "3"));
        assert!(seal.open("tool 'a'", &format!("{forged}.{tag}")).unwrap_err().contains("integrity"));
        for garbage in ["", "no-dot", "!!.!!", "e30.AAAA"] {
            assert!(seal.open("tool 'a'", garbage).is_err(), "{garbage}");
        }
    }

    #[test]
    fn an_answer_names_known_request_methods_and_the_capabilities_they_need() {
        let answer = json!({"inputRequests": {
            "name": {"method": "elicitation/create", "params": {"message": "?"}},
            "roots": {"method": "roots/list"},
            "again": {"method": "elicitation/create", "params": {}}},
            "requestState": {"n": 1}});
        let input = InputRequired::from_json(answer).unwrap();
        assert_eq!(input.required_capabilities(), ["elicitation", "roots"]);
        assert_eq!(input.input_requests["roots"]["params"], json!({}));
        assert_eq!(input.request_state, Some(json!({"n": 1})));
        for (bad, says) in [
            (json!([]), "must be a JSON object"),
            (json!({}), "'inputRequests' must be an object"),
            (json!({"inputRequests": {}}), "names no request"),
            (json!({"inputRequests": {"x": {"method": "tools/call"}}}), "inputRequests.x: 'method' must be one of"),
            (json!({"inputRequests": {"x": {"method": "roots/list", "params": 1}}}), "inputRequests.x: 'params' must be an object"),
        ] {
            assert!(InputRequired::from_json(bad.clone()).unwrap_err().contains(says), "{bad}");
        }
    }
}
