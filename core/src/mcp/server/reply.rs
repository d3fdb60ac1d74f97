// ---- Writing an answer ----------------------------------------------------------------------

/// A JSON-RPC error on its way out (serialized as the response's `error`), with the HTTP status
/// it travels with.
#[derive(Serialize)]
struct RpcError {
    #[serde(skip)]
    status: StatusCode,
    code: i64,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Value>,
}

impl RpcError {
    fn new(status: StatusCode, code: i64, message: impl Into<String>) -> Self {
        RpcError { status, code, message: message.into(), data: None }
    }

    fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    fn invalid_request(what: &str) -> Self {
        RpcError::new(StatusCode::BAD_REQUEST, codes::INVALID_REQUEST, format!("Invalid Request: {what}"))
    }
}

#[derive(Serialize)]
struct Success<'a, R> {
    jsonrpc: &'static str,
    id: &'a RawValue,
    result: &'a R,
}

#[derive(Serialize)]
struct Failure<'a> {
    jsonrpc: &'static str,
    id: &'a RawValue,
    error: &'a RpcError,
}

#[derive(Serialize)]
struct CallResult<'a> {
    content: [TextContent<'a>; 1],
    #[serde(rename = "structuredContent", skip_serializing_if = "Option::is_none")]
    structured: Option<Structured<'a>>,
    #[serde(rename = "isError")]
    is_error: bool,
    #[serde(rename = "resultType", skip_serializing_if = "Option::is_none")]
    result_type: Option<&'static str>,
    #[serde(rename = "_meta", skip_serializing_if = "ResultMeta::is_empty")]
    meta: ResultMeta<'a>,
}

#[derive(Serialize)]
struct TextContent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
}

/// A tool's value as `structuredContent`. Legacy revisions require an object there, so other
/// values are wrapped.
#[derive(Serialize)]
#[serde(untagged)]
enum Structured<'a> {
    AsIs(&'a RawValue),
    Wrapped { result: &'a RawValue },
    /// The `structuredContent` of a tool error: `{"error": {"code", "message", "data"?}}`.
    ToolError { error: ToolErrorContent<'a> },
}

#[derive(Serialize)]
struct ToolErrorContent<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a Value>,
}

impl<'a> Structured<'a> {
    fn of(era: Era, value: &Value, json: &'a RawValue) -> Self {
        match era {
            Era::Legacy if !value.is_object() => Structured::Wrapped { result: json },
            _ => Structured::AsIs(json),
        }
    }
}

#[derive(Serialize)]
struct ResultMeta<'a> {
    #[serde(rename = "io.modelcontextprotocol/serverInfo", skip_serializing_if = "Option::is_none")]
    server_info: Option<&'a RawValue>,
    #[serde(rename = "dev.toolmesh/error", skip_serializing_if = "Option::is_none")]
    error: Option<ErrorMeta<'a>>,
}

impl ResultMeta<'_> {
    fn is_empty(&self) -> bool {
        self.server_info.is_none() && self.error.is_none()
    }
}

/// The mesh error behind an `isError` result or an unknown tool (the `META_ERROR` extension).
#[derive(Serialize)]
struct ErrorMeta<'a> {
    code: u32,
    name: &'static str,
    message: &'a str,
    /// A tool error's application code and data.
    #[serde(rename = "appCode", skip_serializing_if = "Option::is_none")]
    app_code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a Value>,
}

impl<'a> ErrorMeta<'a> {
    fn of(e: &'a Error) -> Self {
        ErrorMeta { code: e.code(), name: e.kind().name(), message: e.message(), app_code: e.app_code(), data: e.data() }
    }
}

fn accepted() -> Response<Body> {
    Response::builder().status(StatusCode::ACCEPTED).body(Full::new(Bytes::new())).expect("static response")
}

fn json_ok(id: &RawValue, result: &impl Serialize) -> Response<Body> {
    crate::server::json_response(StatusCode::OK, &Success { jsonrpc: "2.0", id, result })
}

fn rpc_error(id: &RawValue, e: RpcError) -> Response<Body> {
    crate::server::json_response(e.status, &Failure { jsonrpc: "2.0", id, error: &e })
}
