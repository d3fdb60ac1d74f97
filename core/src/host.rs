//! The host bridge: the one small contract every language binding implements. Core calls
//! [`ToolHandler::invoke`] on a tokio worker; the binding hands the call to its own executor
//! (asyncio loop, Node event loop, Java executor, C thread) and returns at once. The host later
//! answers through the [`Completion`], exactly once; dropping it unanswered is an answer too.
//! Resources and prompts ([`Catalog`]) that need the host take the same path
//! ([`ToolHandler::invoke_catalog`]).

use crate::context::RequestContext;
use crate::error::{Error, ErrorKind};
use crate::mcp::catalog::{check_prompt_result, check_read_result, static_contents, UriTemplate};
pub use crate::mcp::catalog::{Catalog, PromptArgument, PromptInfo, ResourceInfo, ResourceTemplateInfo};
use crate::mcp::content::ResultShape;
pub use crate::mcp::content::ToolOutput;
pub use crate::mcp::input::InputRequired;
use serde_json::Value;
use std::sync::Arc;
use tokio::sync::oneshot;

/// One call of a local tool.
#[derive(Debug, Clone)]
pub struct ToolInvocation {
    /// The local tool's name.
    pub tool: String,
    /// The call's arguments (a JSON object).
    pub arguments: Value,
    /// Propagated headers, trace context and deadline: the binding makes them the handler's
    /// ambient context (contextvar, AsyncLocalStorage, ThreadLocal) and passes them back to
    /// [`crate::agent::Agent::call`] for every dependency call the handler makes.
    pub context: Arc<RequestContext>,
}

/// A `resources/read` or `prompts/get` that core hands to the host, the way it hands a tool
/// call: through [`ToolHandler::invoke_catalog`], answered once through a [`Completion`] with
/// JSON in MCP's own shape (`Completion::ok`), which core checks, or a failure
/// (`Completion::err`).
#[derive(Debug, Clone)]
pub struct CatalogInvocation {
    pub request: CatalogRequest,
    /// The same context a tool call gets (caller, trace, headers, deadline).
    pub context: Arc<RequestContext>,
}

/// What a [`CatalogInvocation`] asks for. Serialized, it is the one JSON document a binding
/// dispatches on (`{"kind": "readResource", "uri", "name", "template"?, "variables"}` or
/// `{"kind": "getPrompt", "name", "arguments"}`), so no binding spells these shapes itself.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum CatalogRequest {
    /// Read a resource declared without static content, or one of a template's URIs. Answer a
    /// `ReadResourceResult`: `{"contents": [{"uri", "mimeType"?, "text" | "blob"}]}`.
    ReadResource {
        uri: String,
        /// The declared resource's or template's `name`.
        name: String,
        /// The `uriTemplate` the URI matched, with its variables' values (strings).
        #[serde(skip_serializing_if = "Option::is_none")]
        template: Option<String>,
        variables: serde_json::Map<String, Value>,
    },
    /// Get a prompt, its arguments checked (strings, the required ones present). Answer a
    /// `GetPromptResult`: `{"description"?, "messages": [{"role", "content"}]}`.
    GetPrompt { name: String, arguments: serde_json::Map<String, Value> },
}

/// How a host handler failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostError {
    pub message: String,
    /// When the handler failed because a mesh call it made failed, that call's error: it is
    /// reported to the caller unchanged instead of as a generic handler failure.
    pub mesh_error: Option<Error>,
}

impl HostError {
    pub fn new(message: impl Into<String>) -> Self {
        HostError { message: message.into(), mesh_error: None }
    }

    /// The handler failed with the mesh error of a call it awaited, as its language's exception
    /// carries it (by code, [`HostError::with_code`], or by name, [`HostError::with_kind_name`]):
    /// the caller gets that code and `message` unchanged. A code or name that is no error kind's
    /// (0, a handler's own failure) makes it a plain handler failure with `message`, the same in
    /// every language.
    pub fn with_kind(kind: Option<ErrorKind>, message: String) -> Self {
        let mesh_error = kind.map(|kind| Error::new(kind, message.clone()));
        HostError { message, mesh_error }
    }

    /// [`HostError::with_kind`] for the kind whose stable code is `code`.
    pub fn with_code(code: i64, message: String) -> Self {
        HostError::with_kind(u32::try_from(code).ok().and_then(ErrorKind::from_code), message)
    }

    /// [`HostError::with_kind`] for the kind whose stable name is `name` (none: a plain failure).
    pub fn with_kind_name(name: Option<&str>, message: String) -> Self {
        HostError::with_kind(name.and_then(ErrorKind::from_name), message)
    }

    /// The handler raised its language's tool error (`ToolError` in Python and Node,
    /// `ToolException` in Java, `toolmesh_invocation_fail_tool_error` in C), or let one that a
    /// dependency call raised escape: the caller gets `TOOL_ERROR` with this application code,
    /// message and data, intact. A code [`crate::error::check_app_code`] refuses makes it a handler failure
    /// that says why, so the author learns of it from the first call.
    pub fn tool_error(app_code: &str, message: impl Into<String>, data: Option<Value>) -> Self {
        let message = message.into();
        match Error::tool_error(app_code, message.clone(), data) {
            Ok(error) => HostError { message, mesh_error: Some(error) },
            Err(problem) => HostError::new(format!("it raised a tool error whose code is refused: {problem}")),
        }
    }

    /// Like [`HostError::tool_error`], for a tool error whose data the binding could not encode
    /// as JSON: the caller is told so in the same words in every language, and `reason` (the
    /// language's serializer's words) goes to this agent's log.
    pub fn tool_error_data_not_json(app_code: &str, reason: &str) -> Self {
        tracing::warn!("a tool error with code {app_code:?} carries data that is not JSON: {reason}");
        HostError::new(format!("it raised a tool error ({app_code:?}) whose data is not JSON; the agent serving it logs why"))
    }
}

/// What a host handler answered.
#[derive(Debug)]
pub enum Answer {
    /// Its JSON result, or how it failed.
    Done(Result<Value, HostError>),
    /// It returned a value its language cannot encode as JSON; the language's own account of why.
    NotJson(String),
    /// An argument passed core's schema check but did not decode into the type the handler
    /// declares for it (a model's validator, a constructor's check): the caller's mistake.
    ArgumentNotDecoded { argument: String, type_name: String, reason: String },
    /// A result in MCP's own shape (images, audio, resources, several items), checked already.
    Result(ToolOutput),
    /// Requests to the client for input (2026-07-28), checked already; the client calls again
    /// with the answers.
    InputRequired(InputRequired),
}

/// What a prompt's handler answered ([`LocalTools::get_prompt`]).
#[derive(Debug)]
pub enum PromptAnswer {
    /// A checked `GetPromptResult`.
    Messages(Value),
    /// Requests for the client's input, answered before the prompt is.
    InputRequired(InputRequired),
}

/// What a local tool answered, for callers that serve it over MCP: a plain value (which becomes
/// `structuredContent` and one text item) or a result in MCP's own shape.
#[derive(Debug, Clone, PartialEq)]
pub enum HandlerOutput {
    Value(Value),
    Result(ToolOutput),
    InputRequired(InputRequired),
}

/// A tool result in MCP's shape that core refused ([`ToolOutput::from_json`]): HANDLER_RESULT
/// naming `subject` ("tool 'x'") and the item at fault, in the same words in every language.
pub fn invalid_tool_result(subject: &str, problem: &str) -> HostError {
    HostError::with_kind(Some(ErrorKind::HandlerResult), format!("{subject} returned an invalid tool result: {problem}"))
}

/// The one-shot answer channel of an invocation.
#[derive(Debug)]
pub struct Completion {
    tx: oneshot::Sender<Answer>,
}

/// What core awaits for an invocation.
pub type CompletionReceiver = oneshot::Receiver<Answer>;

impl Completion {
    pub fn new() -> (Completion, CompletionReceiver) {
        let (tx, rx) = oneshot::channel();
        (Completion { tx }, rx)
    }

    /// Delivers the result. Answering a call whose caller has gone away is not an error.
    pub fn complete(self, result: Result<Value, HostError>) {
        let _ = self.tx.send(Answer::Done(result));
    }

    /// The handler returned a value that is not JSON. The caller is told so in the same words
    /// whatever the language ([`not_json_error`]); `reason`, the language's own words (its
    /// serializer's error), is for this agent's log.
    pub fn not_json(self, reason: impl Into<String>) {
        let _ = self.tx.send(Answer::NotJson(reason.into()));
    }

    /// Argument `argument` did not decode into `type_name`, the type the handler declares for it;
    /// `reason` is the language's account of why. The caller gets INVALID_ARGUMENTS worded by
    /// [`argument_not_decoded_error`], the same in every language.
    pub fn argument_not_decoded(self, argument: impl Into<String>, type_name: impl Into<String>, reason: impl Into<String>) {
        let _ = self.tx.send(Answer::ArgumentNotDecoded { argument: argument.into(), type_name: type_name.into(), reason: reason.into() });
    }

    /// Delivers a result in MCP's own shape; [`ToolOutput::from_json`] reads one from the JSON a
    /// binding hands over.
    pub fn result(self, output: ToolOutput) {
        let _ = self.tx.send(Answer::Result(output));
    }

    /// Answers with a JSON document in MCP's shape, as every binding hands one over: a
    /// `CallToolResult` ([`ToolOutput::from_json`]), or input requests when it says
    /// `"resultType": "input_required"` ([`InputRequired::from_json`]). A document core refuses
    /// is answered as HANDLER_RESULT naming `subject` (`tool 'x'`) and the member at fault; the
    /// same message is returned, for the handler's own language to report.
    pub fn answer_document(self, subject: &str, document: Value) -> Result<(), String> {
        let asks_for_input = document.get("resultType").and_then(Value::as_str) == Some("input_required");
        let read = match asks_for_input {
            true => InputRequired::from_json(document).map(Answer::InputRequired),
            false => ToolOutput::from_json(document).map(Answer::Result),
        };
        match read {
            Ok(answer) => {
                let _ = self.tx.send(answer);
                Ok(())
            }
            Err(problem) => {
                let error = invalid_tool_result(subject, &problem);
                let message = error.message.clone();
                self.complete(Err(error));
                Err(message)
            }
        }
    }

    /// [`Completion::answer_document`] from JSON text; text that is not JSON is refused the
    /// same way, naming the parser's complaint.
    pub fn answer_document_text(self, subject: &str, json: &str) -> Result<(), String> {
        match serde_json::from_str(json) {
            Ok(document) => self.answer_document(subject, document),
            Err(e) => {
                let error = invalid_tool_result(subject, &e.to_string());
                let message = error.message.clone();
                self.complete(Err(error));
                Err(message)
            }
        }
    }

    /// Asks the client for input instead of answering ([`InputRequired::from_json`] reads one from
    /// the JSON a binding hands over); the client calls again with the answers, which the next
    /// invocation finds in its context.
    pub fn input_required(self, input: InputRequired) {
        let _ = self.tx.send(Answer::InputRequired(input));
    }

    pub fn ok(self, value: Value) {
        self.complete(Ok(value))
    }

    pub fn err(self, message: impl Into<String>) {
        self.complete(Err(HostError::new(message)))
    }
}

/// The error of a tool whose result is not JSON. Each language's serializer explains it in its
/// own words, so the caller gets none of them: the message is the same in every language, and
/// the reason goes to the callee's log.
pub fn not_json_error(tool: &str) -> Error {
    Error::new(ErrorKind::HandlerResult, format!("tool '{tool}' returned a value that is not JSON; the agent serving it logs why"))
}

/// The error of an argument that did not decode into the type its tool declares for it: the
/// caller's mistake (INVALID_ARGUMENTS), named with the tool, the argument and the type.
pub fn argument_not_decoded_error(tool: &str, argument: &str, type_name: &str, reason: &str) -> Error {
    Error::new(ErrorKind::InvalidArguments, format!("tool '{tool}': argument '{argument}' is not a valid {type_name}: {reason}"))
}

/// A handler asked for input its caller cannot give: a mesh call, or a legacy-era MCP request.
pub fn input_required_error(tool: &str, input: &InputRequired) -> Error {
    input_required_error_of(&format!("tool '{tool}'"), input)
}

/// [`input_required_error`] for any `subject` ("tool 'x'", "prompt 'y'").
pub fn input_required_error_of(subject: &str, input: &InputRequired) -> Error {
    let methods: Vec<&str> = input.input_requests.values().filter_map(|r| r.get("method").and_then(Value::as_str)).collect();
    Error::new(
        ErrorKind::Protocol,
        format!(
            "{subject} asked its caller for input ({}), which only an MCP 2026-07-28 client can give; this call cannot answer it",
            methods.join(", ")
        ),
    )
}

/// Turns what a host handler answered into the mesh's error model, for callers that take one
/// value: a result in MCP's shape gives [`ToolOutput::to_value`], and one the handler marked
/// `isError` is the handler failure it reports.
pub fn completion_result(tool: &str, received: Result<Answer, oneshot::error::RecvError>) -> Result<Value, Error> {
    completion_output(tool, received).and_then(|output| single_value(tool, output))
}

/// A handler's answer as one value: a result in MCP's shape gives [`ToolOutput::to_value`], and
/// one the handler marked `isError` is the handler failure it reports.
fn single_value(tool: &str, output: HandlerOutput) -> Result<Value, Error> {
    match output {
        HandlerOutput::Value(value) => Ok(value),
        HandlerOutput::Result(output) if output.is_error() => {
            let text = output.text();
            let message = if text.trim().is_empty() { "(no message)" } else { text.as_str() };
            Err(Error::new(ErrorKind::HandlerFailed, format!("tool '{tool}' failed: {message}")))
        }
        HandlerOutput::Result(output) => Ok(output.to_value()),
        HandlerOutput::InputRequired(input) => Err(input_required_error(tool, &input)),
    }
}

/// Turns what a host handler answered into the mesh's error model, keeping a result in MCP's
/// shape as it is (the MCP server sends it on whole).
pub fn completion_output(tool: &str, received: Result<Answer, oneshot::error::RecvError>) -> Result<HandlerOutput, Error> {
    match received {
        Ok(Answer::Done(Ok(value))) => Ok(HandlerOutput::Value(value)),
        Ok(Answer::Result(output)) => Ok(HandlerOutput::Result(output)),
        Ok(Answer::InputRequired(input)) => Ok(HandlerOutput::InputRequired(input)),
        // A TOOL_ERROR is only ever made with its application code (`HostError::tool_error`): a
        // binding that hands back the bare number is reported as the handler failure it is.
        Ok(Answer::Done(Err(HostError { mesh_error: Some(e), .. }))) if e.kind() != ErrorKind::ToolError || e.app_code().is_some() => {
            if let Some(app_code) = e.app_code() {
                // An expected answer, not a bug: one line, and no stack trace in any language.
                tracing::info!("tool '{tool}' answered its own error {app_code}: {}", e.message());
            }
            Err(e)
        }
        Ok(Answer::Done(Err(HostError { message, .. }))) => {
            // Every language reports an exception without a message the same way.
            let message = if message.trim().is_empty() { "(no message)" } else { message.as_str() };
            Err(Error::new(ErrorKind::HandlerFailed, format!("tool '{tool}' failed: {message}")))
        }
        Ok(Answer::NotJson(reason)) => {
            tracing::warn!("tool '{tool}' returned a value that is not JSON: {reason}");
            Err(not_json_error(tool))
        }
        Ok(Answer::ArgumentNotDecoded { argument, type_name, reason }) => {
            Err(argument_not_decoded_error(tool, &argument, &type_name, &reason))
        }
        Err(_) => Err(Error::new(ErrorKind::HandlerDropped, format!("tool '{tool}' ended without an answer"))),
    }
}

/// What a host handler answered for a resource or prompt (`what` names it), as the mesh's error
/// model has it: a JSON value in MCP's shape, still to be checked, or the failure.
fn catalog_answer(what: &str, received: Result<Answer, oneshot::error::RecvError>) -> Result<Value, Error> {
    match received {
        Ok(Answer::Done(Ok(value))) => Ok(value),
        Ok(Answer::Done(Err(HostError { mesh_error: Some(e), .. }))) if e.kind() != ErrorKind::ToolError => Err(e),
        Ok(Answer::Done(Err(HostError { message, .. }))) => {
            let message = if message.trim().is_empty() { "(no message)" } else { message.as_str() };
            Err(Error::new(ErrorKind::HandlerFailed, format!("{what} failed: {message}")))
        }
        Ok(Answer::Result(_)) => Err(Error::new(
            ErrorKind::HandlerResult,
            format!("{what}: the handler answered a tool result; answer JSON in MCP's shape with Completion::ok"),
        )),
        Ok(Answer::InputRequired(_)) => Err(Error::new(
            ErrorKind::HandlerResult,
            format!("{what}: the handler asked the client for input, which toolmesh carries for tools and prompts only so far"),
        )),
        Ok(Answer::NotJson(reason)) => {
            tracing::warn!("{what}: the handler answered a value that is not JSON: {reason}");
            Err(Error::new(
                ErrorKind::HandlerResult,
                format!("{what}: the handler answered a value that is not JSON; the agent serving it logs why"),
            ))
        }
        Ok(Answer::ArgumentNotDecoded { argument, type_name, reason }) => {
            Err(Error::new(ErrorKind::InvalidArguments, format!("{what}: argument '{argument}' is not a valid {type_name}: {reason}")))
        }
        Err(_) => Err(Error::new(ErrorKind::HandlerDropped, format!("{what} ended without an answer"))),
    }
}

/// Implemented once per language: runs the named local tool on the host's executor.
pub trait ToolHandler: Send + Sync + 'static {
    /// Must not block: schedule the call and return.
    fn invoke(&self, invocation: ToolInvocation, completion: Completion);

    /// Reads a resource or gets a prompt the agent declared (see [`CatalogRequest`]), with the
    /// same discipline as [`ToolHandler::invoke`]: must not block. A host without resources or
    /// prompts served by a handler needs nothing here; the default answers that it has none.
    fn invoke_catalog(&self, invocation: CatalogInvocation, completion: Completion) {
        let what = match &invocation.request {
            CatalogRequest::ReadResource { uri, .. } => format!("resource '{uri}'"),
            CatalogRequest::GetPrompt { name, .. } => format!("prompt '{name}'"),
        };
        completion.err(format!("this agent's host has no handler for {what} (its handler implements tools only)"));
    }
}

/// A handler made of a Rust closure; used by Rust agents, tests and benchmarks.
pub struct FnHandler<F>(pub F);

impl<F> ToolHandler for FnHandler<F>
where
    F: Fn(ToolInvocation, Completion) + Send + Sync + 'static,
{
    fn invoke(&self, invocation: ToolInvocation, completion: Completion) {
        (self.0)(invocation, completion)
    }
}

/// A handler of tools and of resources/prompts made of two Rust closures.
pub struct FnCatalogHandler<F, G>(pub F, pub G);

impl<F, G> ToolHandler for FnCatalogHandler<F, G>
where
    F: Fn(ToolInvocation, Completion) + Send + Sync + 'static,
    G: Fn(CatalogInvocation, Completion) + Send + Sync + 'static,
{
    fn invoke(&self, invocation: ToolInvocation, completion: Completion) {
        (self.0)(invocation, completion)
    }

    fn invoke_catalog(&self, invocation: CatalogInvocation, completion: Completion) {
        (self.1)(invocation, completion)
    }
}

/// An agent's own tools and the host handler that runs them: the one place a local call is
/// checked and dispatched, whether it came over the network or from the same agent.
pub struct LocalTools {
    /// Sorted by name, so `tools/list` is deterministic.
    tools: Vec<crate::registry_api::ToolInfo>,
    /// Resources, templates and prompts, in declaration order (the order they are listed in).
    catalog: Catalog,
    /// The catalog's templates, parsed once, in declaration order.
    templates: Vec<UriTemplate>,
    handler: Arc<dyn ToolHandler>,
}

/// A resource a `resources/read` URI names: how it is read, and the name policy decides it by.
#[derive(Debug)]
pub enum ResolvedResource<'a> {
    /// Declared with its content: core answers.
    Static(&'a ResourceInfo),
    /// Read through the host handler.
    Handled { uri: String, name: &'a str, template: Option<&'a str>, variables: serde_json::Map<String, Value> },
}

impl ResolvedResource<'_> {
    pub fn name(&self) -> &str {
        match self {
            ResolvedResource::Static(r) => &r.name,
            ResolvedResource::Handled { name, .. } => name,
        }
    }
}

impl LocalTools {
    pub fn new(tools: Vec<crate::registry_api::ToolInfo>, handler: Arc<dyn ToolHandler>) -> Self {
        LocalTools::with_catalog(tools, Catalog::default(), handler).expect("an empty catalog is valid")
    }

    /// Tools plus resources and prompts; the catalog is checked ([`Catalog::check`]).
    pub fn with_catalog(
        mut tools: Vec<crate::registry_api::ToolInfo>,
        catalog: Catalog,
        handler: Arc<dyn ToolHandler>,
    ) -> Result<Self, Error> {
        tools.sort_by(|a, b| a.name.cmp(&b.name));
        catalog
            .check()
            .map_err(|e| Error::new(ErrorKind::InvalidConfig, format!("the resource and prompt definitions are not valid: {e}")))?;
        let templates =
            catalog.resource_templates.iter().map(|t| UriTemplate::parse(&t.uri_template).expect("checked by Catalog::check")).collect();
        Ok(LocalTools { tools, catalog, templates, handler })
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The resource `uri` names: a declared resource of that URI, else the first template (in
    /// declaration order) it expands.
    pub fn resolve_resource(&self, uri: &str) -> Option<ResolvedResource<'_>> {
        if let Some(resource) = self.catalog.resources.iter().find(|r| r.uri == uri) {
            return Some(match resource.text.is_some() || resource.blob.is_some() {
                true => ResolvedResource::Static(resource),
                false => {
                    ResolvedResource::Handled { uri: uri.to_owned(), name: &resource.name, template: None, variables: Default::default() }
                }
            });
        }
        self.catalog.resource_templates.iter().zip(&self.templates).find_map(|(info, template)| {
            let variables = template.matches(uri)?;
            Some(ResolvedResource::Handled { uri: uri.to_owned(), name: &info.name, template: Some(&info.uri_template), variables })
        })
    }

    /// Reads a resolved resource: its static content, or the host handler's answer, checked
    /// ([`check_read_result`]). Returns the `contents`.
    pub async fn read_resource(&self, resource: ResolvedResource<'_>, context: Arc<RequestContext>) -> Result<Vec<Value>, Error> {
        let (uri, request) = match resource {
            ResolvedResource::Static(info) => return Ok(static_contents(info).expect("a static resource has content")),
            ResolvedResource::Handled { uri, name, template, variables } => {
                (uri.clone(), CatalogRequest::ReadResource { uri, name: name.to_owned(), template: template.map(str::to_owned), variables })
            }
        };
        let what = format!("resource '{uri}'");
        let answer = self.start_catalog(request, context).await;
        check_read_result(catalog_answer(&what, answer)?).map_err(|problem| {
            Error::new(ErrorKind::HandlerResult, format!("{what}: the handler's answer is not a valid ReadResourceResult: {problem}"))
        })
    }

    /// Gets a prompt: checks the arguments ([`PromptInfo::check_arguments`]; a refusal is
    /// INVALID_ARGUMENTS), asks the host handler, checks its answer ([`check_prompt_result`]).
    /// Gets a prompt: its `GetPromptResult`, or the input its handler asks the client for first
    /// (answered `Completion::input_required`, or `ok` with an `InputRequiredResult` document).
    pub async fn get_prompt(
        &self,
        prompt: &PromptInfo,
        arguments: Option<&Value>,
        context: Arc<RequestContext>,
    ) -> Result<PromptAnswer, Error> {
        let arguments = prompt.check_arguments(arguments).map_err(|problem| Error::new(ErrorKind::InvalidArguments, problem))?;
        let what = format!("prompt '{}'", prompt.name);
        let answer = self.start_catalog(CatalogRequest::GetPrompt { name: prompt.name.clone(), arguments }, context).await;
        if let Ok(Answer::InputRequired(input)) = answer {
            return Ok(PromptAnswer::InputRequired(input));
        }
        let value = catalog_answer(&what, answer)?;
        if value.get("resultType").and_then(Value::as_str) == Some("input_required") {
            return InputRequired::from_json(value)
                .map(PromptAnswer::InputRequired)
                .map_err(|problem| Error::new(ErrorKind::HandlerResult, format!("{what}: {problem}")));
        }
        check_prompt_result(value).map(PromptAnswer::Messages).map_err(|problem| {
            Error::new(ErrorKind::HandlerResult, format!("{what}: the handler's answer is not a valid GetPromptResult: {problem}"))
        })
    }

    fn start_catalog(&self, request: CatalogRequest, context: Arc<RequestContext>) -> CompletionReceiver {
        let (completion, answer) = Completion::new();
        self.handler.invoke_catalog(CatalogInvocation { request, context }, completion);
        answer
    }

    pub fn tools(&self) -> &[crate::registry_api::ToolInfo] {
        &self.tools
    }

    pub fn get(&self, name: &str) -> Option<&crate::registry_api::ToolInfo> {
        self.tools.binary_search_by(|t| t.name.as_str().cmp(name)).ok().map(|i| &self.tools[i])
    }

    /// Checks the arguments against the tool's schema, runs the host handler, awaits its answer
    /// as one value (see [`completion_result`]).
    pub async fn invoke(&self, tool: &str, arguments: Value, context: Arc<RequestContext>) -> Result<Value, Error> {
        self.invoke_shaped(tool, arguments, context, ResultShape::Value).await
    }

    /// Like [`LocalTools::invoke`], answering in `shape`: one value, or the whole result as the
    /// MCP server would send it.
    pub async fn invoke_shaped(
        &self,
        tool: &str,
        arguments: Value,
        context: Arc<RequestContext>,
        shape: ResultShape,
    ) -> Result<Value, Error> {
        let answer = self.start(tool, arguments, context)?;
        let output = self.output(tool, answer.await)?;
        match (shape, output) {
            (ResultShape::Value, output) => single_value(tool, output),
            (ResultShape::Whole, HandlerOutput::Value(value)) => Ok(crate::mcp::content::whole_of_value(value)),
            (ResultShape::Whole, HandlerOutput::Result(output)) if !output.is_error() => Ok(output.to_whole()),
            // A failed result or a request for input is the same error in either shape.
            (ResultShape::Whole, output) => single_value(tool, output),
        }
    }

    /// Like [`LocalTools::invoke`], keeping a result in MCP's shape whole: what the MCP server
    /// answers with.
    pub async fn invoke_output(&self, tool: &str, arguments: Value, context: Arc<RequestContext>) -> Result<HandlerOutput, Error> {
        let answer = self.start(tool, arguments, context)?;
        self.output(tool, answer.await)
    }

    /// What the handler of `tool` answered ([`completion_output`]), held to the tool's
    /// `outputSchema` when it declares one: a successful answer's `structuredContent` must match
    /// it, or the caller gets HANDLER_RESULT naming the first problem.
    pub(crate) fn output(&self, tool: &str, received: Result<Answer, oneshot::error::RecvError>) -> Result<HandlerOutput, Error> {
        let output = completion_output(tool, received)?;
        let Some(schema) = self.get(tool).and_then(|t| t.output_schema.as_ref()) else { return Ok(output) };
        let structured = match &output {
            HandlerOutput::Value(value) => Some(value),
            HandlerOutput::Result(result) if result.is_error() => return Ok(output),
            HandlerOutput::InputRequired(_) => return Ok(output),
            HandlerOutput::Result(result) => result.structured(),
        };
        let problem = match structured {
            None => "it has none".to_owned(),
            Some(structured) => match crate::mcp::schema::check_structured(schema, structured) {
                Ok(()) => return Ok(output),
                Err(problem) => problem,
            },
        };
        Err(Error::new(
            ErrorKind::HandlerResult,
            format!("tool '{tool}' returned structuredContent that does not match its outputSchema: {problem}"),
        ))
    }

    /// Checks the arguments and hands the call to the host handler; the receiver gets its answer.
    pub(crate) fn start(&self, tool: &str, arguments: Value, context: Arc<RequestContext>) -> Result<CompletionReceiver, Error> {
        let info = self.get(tool).ok_or_else(|| Error::new(ErrorKind::UnknownTool, format!("Unknown tool: {tool}")))?;
        let arguments = match arguments {
            Value::Null => Value::Object(Default::default()),
            Value::Object(map) => {
                crate::mcp::schema::check_arguments(&info.input_schema, &map)
                    .map_err(|problem| Error::new(ErrorKind::InvalidArguments, format!("tool '{tool}': {problem}")))?;
                Value::Object(map)
            }
            _ => return Err(Error::new(ErrorKind::InvalidArguments, format!("tool '{tool}': arguments must be a JSON object"))),
        };
        let (completion, answer) = Completion::new();
        self.handler.invoke(ToolInvocation { tool: tool.to_owned(), arguments, context }, completion);
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn answered(error: HostError) -> Error {
        let (completion, receiver) = Completion::new();
        completion.complete(Err(error));
        completion_result("t", receiver.await).unwrap_err()
    }

    #[tokio::test]
    async fn a_mesh_error_named_by_code_or_name_passes_unchanged_and_anything_else_is_a_handler_failure() {
        for error in [HostError::with_code(4002, "slow".into()), HostError::with_kind_name(Some("TIMEOUT"), "slow".into())] {
            let e = answered(error).await;
            assert_eq!((e.kind(), e.message()), (ErrorKind::Timeout, "slow"));
        }
        for error in [
            HostError::with_code(0, "boom".into()),
            HostError::with_code(-1, "boom".into()),
            HostError::with_code(4999, "boom".into()),
            HostError::with_kind_name(Some("NO_SUCH_KIND"), "boom".into()),
            HostError::with_kind_name(None, "boom".into()),
        ] {
            assert_eq!(error, HostError::new("boom"));
        }
    }

    #[tokio::test]
    async fn a_tool_error_needs_a_valid_application_code() {
        let e = answered(HostError::tool_error("out_of_stock", "none left", None)).await;
        assert_eq!((e.kind(), e.app_code(), e.message(), e.data()), (ErrorKind::ToolError, Some("out_of_stock"), "none left", None));
        let e = answered(HostError::tool_error("out of stock", "none left", None)).await;
        assert_eq!(e.kind(), ErrorKind::HandlerFailed);
        assert!(
            e.message().starts_with("tool 't' failed: it raised a tool error whose code is refused: the error code \"out of stock\""),
            "{e}"
        );
        // A binding that hands back the bare code of a tool error, without its application code.
        let bare = Error::new(ErrorKind::ToolError, "none left");
        let e = answered(HostError { message: "none left".into(), mesh_error: Some(bare) }).await;
        assert_eq!((e.kind(), e.message()), (ErrorKind::HandlerFailed, "tool 't' failed: none left"));
        let e = answered(HostError::tool_error_data_not_json("out_of_stock", "a set")).await;
        assert_eq!(
            e.message(),
            "tool 't' failed: it raised a tool error (\"out_of_stock\") whose data is not JSON; the agent serving it logs why"
        );
    }

    #[test]
    fn a_catalog_request_is_one_json_document_tagged_by_kind() {
        let read = CatalogRequest::ReadResource {
            uri: "test://template/1/data".into(),
            name: "data".into(),
            template: Some("test://template/{id}/data".into()),
            variables: serde_json::json!({"id": "1"}).as_object().unwrap().clone(),
        };
        assert_eq!(
            serde_json::to_value(&read).unwrap(),
            serde_json::json!({"kind": "readResource", "uri": "test://template/1/data", "name": "data",
                "template": "test://template/{id}/data", "variables": {"id": "1"}})
        );
        let get = CatalogRequest::GetPrompt { name: "p".into(), arguments: Default::default() };
        assert_eq!(serde_json::to_value(&get).unwrap(), serde_json::json!({"kind": "getPrompt", "name": "p", "arguments": {}}));
    }

    #[tokio::test]
    async fn an_argument_that_did_not_decode_is_the_callers_mistake() {
        let (completion, receiver) = Completion::new();
        completion.argument_not_decoded("colour", "Colour", "no such colour");
        let e = completion_result("paint", receiver.await).unwrap_err();
        assert_eq!(
            (e.kind(), e.message()),
            (ErrorKind::InvalidArguments, "tool 'paint': argument 'colour' is not a valid Colour: no such colour")
        );
    }
}
