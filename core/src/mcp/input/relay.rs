//! Input required across hops. X calls A, whose handler calls B, whose handler calls C; C answers
//! input-required. B's dependency call fails with `INPUT_REQUIRED` and leaves C's requests in B's
//! request context ([`Asked`]); B's handler lets the error propagate (each language's idiom for
//! a dependency's failure), and B's MCP server answers its caller input-required instead of that
//! failure: C's requests, with a state that names C (the provider that asked) and holds C's own
//! sealed state, sealed in turn by B. Hop by hop the requests reach X, whose client asks its user.
//!
//! X's retry brings the answers and A's state. A's server opens it, finds a relay state, and
//! hands the answers to the handler's dependency call ([`Answers`]) rather than to the handler,
//! which runs again as on any retry; its call goes to the provider that asked, with the answers
//! and that provider's state. So on down to C, which gets what it asked for. No handler on the
//! way writes any of this.

use super::InputRequired;
use crate::context::{InputAnswers, RequestContext};
use crate::error::{Error, ErrorKind};
use serde_json::{json, Map, Value};
use std::sync::Mutex;

/// The member of a relay state (inside the hop's sealed `requestState`).
const RELAY_KEY: &str = "dev.toolmesh/dependencyInput";

/// Where a request's dependency calls leave what their callee asked of the client: the first
/// request for input wins (a handler that calls several dependencies at once relays one at a
/// time; the retry brings the next).
#[derive(Debug, Default)]
pub struct Asked(Mutex<Option<AskedBy>>);

/// A dependency's request for input: the provider that asked (its agent id and tool), its
/// requests, and its sealed state as it sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct AskedBy {
    pub provider: String,
    pub tool: String,
    pub input_requests: Map<String, Value>,
    pub request_state: Option<Value>,
}

impl Asked {
    pub fn record(&self, asked: AskedBy) {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(asked);
        }
    }

    pub fn take(&self) -> Option<AskedBy> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

impl AskedBy {
    /// What this hop answers its own caller: the same requests, and a state naming the provider
    /// that asked and holding its state (this hop's server seals it like a handler's).
    pub fn relayed(self) -> InputRequired {
        let state = json!({RELAY_KEY: {"provider": self.provider, "tool": self.tool, "state": self.request_state}});
        InputRequired { input_requests: self.input_requests, request_state: Some(state) }
    }
}

/// The client's answers to a dependency's requests, for the provider that asked.
#[derive(Debug, Clone, PartialEq)]
pub struct Answers {
    pub provider: String,
    pub tool: String,
    pub responses: Map<String, Value>,
    pub request_state: Option<Value>,
}

impl Answers {
    /// Whether a call to `tool` of agent `provider` is the one these answers are for.
    pub fn are_for(&self, provider: &str, tool: &str) -> bool {
        self.provider == provider && self.tool == tool
    }
}

/// The INPUT_REQUIRED error of a call whose callee asked the client for input; the request goes
/// where the request the call is made for relays it from. `endpoint` names where the callee is.
pub fn asked_for_input(tool: &str, endpoint: &str, provider: Option<&str>, input: InputRequired, context: &RequestContext) -> Error {
    let keys: Vec<&str> = input.input_requests.keys().map(String::as_str).collect();
    let asked = format!("tool '{tool}' at {endpoint} needs input from the MCP client ({})", keys.join(", "));
    match (&context.dependency_asked, provider) {
        (Some(slot), Some(provider)) => {
            let InputRequired { input_requests, request_state } = input;
            slot.record(AskedBy { provider: provider.to_owned(), tool: tool.to_owned(), input_requests, request_state });
            Error::new(
                ErrorKind::InputRequired,
                format!("{asked}: let this error propagate and toolmesh asks the client, then runs this call again with the answers"),
            )
        }
        _ => Error::new(ErrorKind::InputRequired, format!("{asked}, and this caller cannot ask it: call the tool from an MCP client")),
    }
}

/// Splits what a retry brought: answers for this hop's own handler, or (its unsealed state is a
/// relay state) answers for the dependency that asked.
pub fn route(answers: InputAnswers) -> Result<InputAnswers, Answers> {
    let Some(Value::Object(state)) = &answers.state else { return Ok(answers) };
    let Some(Value::Object(relay)) = state.get(RELAY_KEY).filter(|_| state.len() == 1) else { return Ok(answers) };
    let text = |key: &str| relay.get(key).and_then(Value::as_str).map(str::to_owned);
    match (text("provider"), text("tool")) {
        (Some(provider), Some(tool)) => {
            let request_state = relay.get("state").filter(|s| !s.is_null()).cloned();
            Err(Answers { provider, tool, responses: answers.responses, request_state })
        }
        _ => Ok(answers),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relayed_request_comes_back_as_answers_for_the_provider_that_asked() {
        let asked = AskedBy {
            provider: "c-1".into(),
            tool: "greet".into(),
            input_requests: Map::from_iter([("name".to_owned(), json!({"method": "elicitation/create", "params": {}}))]),
            request_state: Some(json!("c's sealed state")),
        };
        let relayed = asked.clone().relayed();
        assert_eq!(relayed.input_requests, asked.input_requests);
        let responses = Map::from_iter([("name".to_owned(), json!({"action": "accept", "content": {"name": "Ada"}}))]);
        let routed = route(InputAnswers { responses: responses.clone(), state: relayed.request_state });
        assert_eq!(
            routed,
            Err(Answers { provider: "c-1".into(), tool: "greet".into(), responses, request_state: Some(json!("c's sealed state")) })
        );
        // A handler's own state, even one that mentions the key among others, stays the handler's.
        for own in [json!({"step": 2}), json!({RELAY_KEY: {"provider": "x", "tool": "y"}, "mine": 1}), json!("text")] {
            let answers = InputAnswers { responses: Map::new(), state: Some(own) };
            assert_eq!(route(answers.clone()), Ok(answers));
        }
    }

    #[test]
    fn the_first_request_for_input_is_the_one_relayed() {
        let asked = Asked::default();
        let by = |provider: &str| AskedBy { provider: provider.into(), tool: "t".into(), input_requests: Map::new(), request_state: None };
        asked.record(by("first"));
        asked.record(by("second"));
        assert_eq!(asked.take().map(|a| a.provider), Some("first".to_owned()));
        assert_eq!(asked.take(), None);
    }
}
