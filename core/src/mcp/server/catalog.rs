//! The resources and prompts methods: `resources/list`, `resources/templates/list`,
//! `resources/read`, `prompts/list` and `prompts/get`, each caller decided by the gate by the
//! rules for tools (`Gate::admit_named`, `Gate::may_list_named`).

use super::era::Era;
use super::methods::{declared_capabilities, input_answers, input_required_result, method_not_found};
use super::reply::{ErrorMeta, RpcError};
use super::request::{Params, Raw};
use super::{McpServer, PeerInfo};
use crate::authorize::Admitted;
use crate::context::TraceContext;
use crate::error::{Error, ErrorKind};
use crate::host::{input_required_error_of, InputRequired, PromptAnswer, ResourceAnswer};
use crate::mcp::*;
use http::{HeaderMap, StatusCode};
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// A mesh error as a JSON-RPC error: the caller's mistakes and refusals are Invalid params, the
/// rest (the handler failed, answered something invalid, or never answered) Internal error; the
/// mesh error itself is in `data` (`code`, `name`, `message`), as for an unknown tool.
fn rpc_error_of(e: &Error) -> RpcError {
    let code = match e.kind() {
        ErrorKind::InvalidArguments | ErrorKind::CallDenied | ErrorKind::RateLimited | ErrorKind::OriginRejected => codes::INVALID_PARAMS,
        _ => codes::INTERNAL_ERROR,
    };
    RpcError::new(StatusCode::OK, code, e.message()).with_data(json!(ErrorMeta::of(e)))
}

impl McpServer {
    /// The answer of a catalog list method, with only the entries the caller may see (the
    /// `discover` rules, as for `tools/list`); `None` when `method` is none of them, or names a
    /// kind the agent declared none of (Method not found, as undeclared).
    pub(super) fn catalog_list(
        &self,
        method: &str,
        params: &Params,
        headers: &HeaderMap,
        peer: &PeerInfo,
    ) -> Result<Option<Value>, RpcError> {
        let catalog = self.tools.catalog();
        let (key, entries): (&str, Vec<(&str, Value)>) = match method {
            "resources/list" if catalog.serves_resources() => {
                ("resources", catalog.resources.iter().map(|r| (r.name.as_str(), json!(r))).collect())
            }
            "resources/templates/list" if catalog.serves_resources() => {
                ("resourceTemplates", catalog.resource_templates.iter().map(|t| (t.name.as_str(), json!(t))).collect())
            }
            "prompts/list" if catalog.serves_prompts() => {
                ("prompts", catalog.prompts.iter().map(|p| (p.name.as_str(), json!(p))).collect())
            }
            _ => return Ok(None),
        };
        if params.cursor.is_some() {
            return Err(RpcError::new(
                StatusCode::OK,
                codes::INVALID_PARAMS,
                "Invalid params: unknown cursor (this server never paginates)",
            ));
        }
        let caller = self.caller(headers, peer).map_err(|e| rpc_error_of(&e))?;
        let policy = self.gate.policy();
        let visible: Vec<Value> =
            entries.into_iter().filter(|(name, _)| self.gate.may_list_named(&policy, &caller, name)).map(|(_, entry)| entry).collect();
        let mut list = Map::new();
        list.insert(key.to_owned(), Value::Array(visible));
        Ok(Some(Value::Object(list)))
    }

    /// `resources/read` and `prompts/get` in either era (a modern request is validated already).
    pub(super) async fn catalog_get(
        &self,
        era: Era,
        method: &str,
        params: &Params<'_>,
        headers: &HeaderMap,
        peer: &PeerInfo,
        trace: TraceContext,
    ) -> Result<Value, RpcError> {
        let catalog = self.tools.catalog();
        let invalid = |message: &str| RpcError::new(StatusCode::OK, codes::INVALID_PARAMS, format!("Invalid params: {message}"));
        let mut result = if method == "resources/read" {
            if !catalog.serves_resources() {
                return Err(method_not_found(era, method));
            }
            let Some(uri) = params.uri.and_then(Raw::as_str) else {
                return Err(invalid("resources/read needs a string 'uri'"));
            };
            let Some(resource) = self.tools.resolve_resource(&uri) else {
                // SEP-2164 standardized Invalid params; the legacy revisions define -32002.
                let code = if era == Era::Modern { codes::INVALID_PARAMS } else { codes::RESOURCE_NOT_FOUND };
                return Err(RpcError::new(StatusCode::OK, code, format!("Resource not found: {uri}")).with_data(json!({"uri": uri})));
            };
            let admitted = self.admit_named(headers, peer, "resource", resource.name())?;
            // A resource may ask the client for input first, as a prompt may (2026-07-28).
            let subject = format!("resource '{uri}'");
            let (context, declared) = self.catalog_context(era, &subject, (headers, params, peer), &admitted, trace)?;
            let answer = self.tools.read_resource(resource, context).await.map_err(|e| rpc_error_of(&e))?;
            drop(admitted);
            let contents = match answer {
                ResourceAnswer::Contents(contents) => contents,
                ResourceAnswer::InputRequired(input) => return self.asks_for_input(era, &subject, &input, declared.as_deref()),
            };
            let mut result = json!({"contents": contents});
            if era == Era::Modern {
                result["ttlMs"] = json!(0);
                result["cacheScope"] = json!("private");
            }
            result
        } else {
            if !catalog.serves_prompts() {
                return Err(method_not_found(era, method));
            }
            let Some(name) = params.name.and_then(Raw::as_str) else {
                return Err(invalid("prompts/get needs a string 'name'"));
            };
            let Some(prompt) = catalog.prompt(&name) else {
                return Err(invalid(&format!("unknown prompt '{name}'")).with_data(json!({"name": name})));
            };
            let admitted = self.admit_named(headers, peer, "prompt", &prompt.name)?;
            // A prompt may ask the client for input first, as a tool may (2026-07-28).
            let subject = format!("prompt '{name}'");
            let (context, declared) = self.catalog_context(era, &subject, (headers, params, peer), &admitted, trace)?;
            let answer = self.tools.get_prompt(prompt, params.arguments.as_ref(), context).await.map_err(|e| rpc_error_of(&e))?;
            drop(admitted);
            match answer {
                PromptAnswer::Messages(result) => result,
                PromptAnswer::InputRequired(input) => return self.asks_for_input(era, &subject, &input, declared.as_deref()),
            }
        };
        if era == Era::Modern {
            result["resultType"] = json!("complete");
            result["_meta"] = json!({ META_SERVER_INFO: self.info });
        }
        Ok(result)
    }

    /// The gate's decision on reading the resource or getting the prompt `name`.
    pub(super) fn admit_named(&self, headers: &HeaderMap, peer: &PeerInfo, kind: &str, name: &str) -> Result<Admitted, RpcError> {
        let caller = self.caller(headers, peer).map_err(|e| rpc_error_of(&e))?;
        self.gate.admit_named(caller, kind, name).map_err(|e| rpc_error_of(&e))
    }

    /// The context the handler runs in: the one a tool call gets.
    /// The context a read or a get of `subject` runs with, and the capabilities its client
    /// declared: a modern request brings the answers to the subject's earlier input requests.
    fn catalog_context(
        &self,
        era: Era,
        subject: &str,
        (headers, params, peer): (&HeaderMap, &Params, &PeerInfo),
        admitted: &Admitted,
        trace: TraceContext,
    ) -> Result<(Arc<crate::context::RequestContext>, Option<Arc<Value>>), RpcError> {
        let mut context = self.inbound_context(headers, params.meta(), trace);
        context.caller = Some(peer.identity.clone());
        context.origin = admitted.origin.clone();
        let declared = params.meta().and_then(|m| m.client_capabilities).and_then(declared_capabilities);
        if era == Era::Modern {
            context.input = input_answers(subject, params, &self.seal)?;
            context.client_capabilities = declared.clone();
        }
        Ok((Arc::new(context), declared))
    }

    /// The answer to a read or a get whose handler asked for input: the requests, to a modern
    /// client that can answer them; to a legacy one, the error that says it cannot.
    fn asks_for_input(&self, era: Era, subject: &str, input: &InputRequired, declared: Option<&Value>) -> Result<Value, RpcError> {
        if era == Era::Legacy {
            return Err(rpc_error_of(&input_required_error_of(subject, input)));
        }
        let mut result = input_required_result(subject, input, &self.seal, declared)?;
        result["_meta"] = json!({ META_SERVER_INFO: self.info });
        Ok(result)
    }
}
