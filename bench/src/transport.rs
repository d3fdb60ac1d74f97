//! Row 1, the transport limit: a raw hyper + rustls mTLS echo (the baseline) against a toolmesh
//! agent calling another agent's Rust tool through core (`Agent::call`), measured alternately;
//! between them, a bare MCP `tools/call` on the same stack (what the protocol alone costs).

use crate::common::*;
use crate::http::{connect, EchoCaller, Sender};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Serialize;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use toolmesh_core::agent::Agent;
use toolmesh_core::config::AgentConfig;
use toolmesh_core::host::{Completion, FnHandler, ToolInvocation};
use toolmesh_core::registry_api::{DependencySpec, ToolInfo};

#[derive(clap::Args)]
pub struct TlsFilesArgs {
    #[arg(long)]
    pub cert: PathBuf,
    #[arg(long)]
    pub key: PathBuf,
    #[arg(long)]
    pub ca: PathBuf,
}

#[derive(clap::Args)]
pub struct ServeRawArgs {
    #[command(flatten)]
    tls: TlsFilesArgs,
    #[arg(long, default_value_t = 0)]
    port: u16,
}

/// Waits for SIGINT or SIGTERM.
pub async fn terminated() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// The baseline server: hyper (HTTP/1.1 and HTTP/2 by ALPN, like core's server) over rustls
/// with a mandatory client certificate, answering a POST to `/mcp` as a bare MCP server would
/// ([`bare_mcp_answer`]) and any other POST with its own body.
pub async fn serve_raw(args: ServeRawArgs) -> Result<(), AnyError> {
    let config = plain_server_config(&args.tls.cert, &args.tls.key, &args.tls.ca, &[b"h2", b"http/1.1"])?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await?;
    println!("READY https://127.0.0.1:{}/echo", listener.local_addr()?.port());
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let stop = terminated();
    tokio::pin!(stop);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            _ = &mut stop => return Ok(()),
        };
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let builder = builder.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(stream).await else { return };
            let service = hyper::service::service_fn(|request: http::Request<hyper::body::Incoming>| async move {
                let (parts, body) = request.into_parts();
                let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                let (status, body) = match parts.uri.path() {
                    "/mcp" => bare_mcp_answer(&parts.headers, &body),
                    _ => (http::StatusCode::OK, body),
                };
                Ok::<_, std::convert::Infallible>(
                    http::Response::builder()
                        .status(status)
                        .header(http::header::CONTENT_TYPE, "application/json")
                        .body(Full::new(body))
                        .expect("static response"),
                )
            });
            let _ = builder.serve_connection(TokioIo::new(tls), service).await;
        });
    }
}

/// A `tools/call` of `add` as the least an MCP server does with it on this stack: decode the
/// JSON-RPC request, check the headers a 2026-07-28 request repeats its body in (SEP-2243), call
/// the tool, encode the answer. No authorization, origin, trace, metrics or schema check: the
/// floor under any MCP server, toolmesh's included.
fn bare_mcp_answer(headers: &http::HeaderMap, body: &[u8]) -> (http::StatusCode, Bytes) {
    #[derive(serde::Deserialize)]
    struct Request<'a> {
        #[serde(borrow)]
        id: &'a serde_json::value::RawValue,
        method: &'a str,
        params: Params<'a>,
    }
    #[derive(serde::Deserialize)]
    struct Params<'a> {
        name: &'a str,
        arguments: Arguments,
    }
    #[derive(serde::Deserialize)]
    struct Arguments {
        a: i64,
        b: i64,
    }
    let refused = |why: String| (http::StatusCode::BAD_REQUEST, Bytes::from(why));
    let request: Request = match serde_json::from_slice(body) {
        Ok(request) => request,
        Err(e) => return refused(format!("not a tools/call of add: {e}")),
    };
    use toolmesh_core::mcp::{METHOD_HEADER, NAME_HEADER, PROTOCOL_VERSION_HEADER};
    let header = |name: http::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    if request.method != "tools/call"
        || request.params.name != "add"
        || header(METHOD_HEADER) != Some(request.method)
        || header(NAME_HEADER) != Some(request.params.name)
        || header(PROTOCOL_VERSION_HEADER).is_none()
    {
        return refused(format!("not a tools/call of add with its headers: {}", request.method));
    }
    #[derive(Serialize)]
    struct Answer<'a> {
        jsonrpc: &'static str,
        id: &'a serde_json::value::RawValue,
        result: ToolResult<'a>,
    }
    #[derive(Serialize)]
    struct ToolResult<'a> {
        content: [Text<'a>; 1],
        #[serde(rename = "structuredContent")]
        structured_content: Sum,
        #[serde(rename = "isError")]
        is_error: bool,
    }
    #[derive(Serialize)]
    struct Text<'a> {
        r#type: &'static str,
        text: &'a str,
    }
    #[derive(Serialize)]
    struct Sum {
        result: i64,
    }
    let sum = request.params.arguments.a + request.params.arguments.b;
    let text = sum.to_string();
    let answer = Answer {
        jsonrpc: "2.0",
        id: request.id,
        result: ToolResult { content: [Text { r#type: "text", text: &text }], structured_content: Sum { result: sum }, is_error: false },
    };
    (http::StatusCode::OK, Bytes::from(serde_json::to_vec(&answer).expect("the answer serializes")))
}

#[derive(clap::Args)]
pub struct ServeAgentArgs {
    /// Agent name (configuration otherwise from the TOOLMESH_* environment).
    #[arg(long, default_value = "rust-b")]
    name: String,
    /// Capability of the `add` tool.
    #[arg(long, default_value = "add")]
    capability: String,
    /// A policy file to enforce (as TOOLMESH_POLICY_FILE); the built-in default otherwise.
    #[arg(long)]
    policy_file: Option<PathBuf>,
}

pub fn add_tool(capability: &str) -> ToolInfo {
    ToolInfo {
        name: "add".into(),
        capability: capability.into(),
        version: "1.0.0".into(),
        tags: vec![],
        description: "a + b".into(),
        input_schema: json!({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]}),
        dependencies: vec![],
        timeout_ms: None,
        annotations: Default::default(),
        output_schema: None,
        required_client_capabilities: vec![],
        task_support: Default::default(),
    }
}

pub fn caller_tool(name: &str, capability: &str, depends_on: &str) -> ToolInfo {
    ToolInfo {
        name: name.into(),
        capability: capability.into(),
        version: "1.0.0".into(),
        tags: vec![],
        description: String::new(),
        input_schema: json!({"type": "object", "properties": {}}),
        dependencies: vec![DependencySpec::capability(depends_on)],
        timeout_ms: None,
        annotations: Default::default(),
        output_schema: None,
        required_client_capabilities: vec![],
        task_support: Default::default(),
    }
}

/// The Rust tool handler: `add` answers a + b; anything else fails.
pub fn add_handler() -> Arc<FnHandler<impl Fn(ToolInvocation, Completion) + Send + Sync + 'static>> {
    Arc::new(FnHandler(|invocation: ToolInvocation, completion: Completion| {
        let a = invocation.arguments.get("a").and_then(Value::as_i64);
        let b = invocation.arguments.get("b").and_then(Value::as_i64);
        match (invocation.tool.as_str(), a, b) {
            ("add", Some(a), Some(b)) => completion.ok(json!(a + b)),
            _ => completion.err("only add(a, b) is served here"),
        }
    }))
}

/// A Rust agent serving `add` (a core-level handler): the server side of row 1, and the Rust
/// agent of the memory and cold-start rows.
pub async fn serve_agent(args: ServeAgentArgs) -> Result<(), AnyError> {
    let mut config = AgentConfig::from_env(&args.name)?;
    if let Some(path) = &args.policy_file {
        config.set("policy_file", &path.display().to_string())?;
    }
    let policy = match &config.policy_file {
        Some(path) => {
            let policy = toolmesh_core::policy::Policy::parse(&std::fs::read_to_string(path)?, 0)?;
            format!("{} rules, default {:?}", policy.document().rules.len(), policy.document().default)
        }
        None => "built-in default".to_owned(),
    };
    let agent = Agent::start(config, vec![add_tool(&args.capability)], add_handler()).await?;
    println!("policy: {policy}");
    println!("READY {}", agent.endpoint());
    terminated().await;
    agent.shutdown().await;
    Ok(())
}

#[derive(clap::Args)]
pub struct TransportArgs {
    /// The client agent's identity.
    #[command(flatten)]
    tls: TlsFilesArgs,
    #[arg(long)]
    registry_url: String,
    /// The raw echo server (`serve-raw`); needed for the raw systems only.
    #[arg(long)]
    raw_addr: Option<String>,
    /// The capability the toolmesh server agent (`serve-agent`) provides.
    #[arg(long, default_value = "bench-add")]
    capability: String,
    /// The capability of a second server agent enforcing a policy (`serve-agent --policy-file`):
    /// the `toolmesh_policy` system calls it, the same way `toolmesh` calls the first.
    #[arg(long)]
    policy_capability: Option<String>,
    /// The capability of a server agent with metrics off (`TOOLMESH_METRICS=off`): the
    /// `toolmesh_metrics_off` system calls it from a second client agent whose metrics are off too.
    #[arg(long)]
    metrics_off_capability: Option<String>,
    /// The capability of a server agent with tracing off (`OTEL_TRACES_EXPORTER=none`): the
    /// `toolmesh_traces_off` system calls it from a third client agent whose tracing is off too
    /// (the others export every span to the registry, the default with no collector named).
    #[arg(long)]
    traces_off_capability: Option<String>,
    #[arg(long, value_delimiter = ',', default_value = "1,64")]
    concurrency: Vec<usize>,
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    #[arg(long, default_value_t = 0.5)]
    warmup: f64,
    #[arg(long, default_value_t = 5_000_000)]
    max_calls: u64,
    /// pid of the raw server and of the toolmesh server agent, for their CPU use.
    #[arg(long)]
    raw_pid: Option<u32>,
    #[arg(long)]
    agent_pid: Option<u32>,
    #[arg(long)]
    policy_agent_pid: Option<u32>,
    #[arg(long)]
    metrics_off_agent_pid: Option<u32>,
    #[arg(long)]
    traces_off_agent_pid: Option<u32>,
    /// Which systems to measure (raw_h1, raw_h2, bare_mcp, toolmesh, toolmesh_policy,
    /// toolmesh_metrics_off, toolmesh_traces_off; one alone is for profiling).
    #[arg(long, value_delimiter = ',', default_value = "raw_h1,raw_h2,toolmesh")]
    systems: Vec<String>,
}

#[derive(Serialize)]
struct Measured {
    round: usize,
    concurrency: usize,
    system: &'static str,
    order: usize,
    stats: RunStats,
    /// CPU of the server process and of this (client) process during the run, in cores.
    server_cores: Option<f64>,
    client_cores: Option<f64>,
}

struct AgentCaller {
    agent: Agent,
    /// The driver's tool whose dependency is called (`caller`, or `caller_policy`).
    tool: &'static str,
    arguments: Value,
}

impl Caller for AgentCaller {
    async fn call(&mut self) -> Result<(), String> {
        match self.agent.call(self.tool, 0, self.arguments.clone(), None).await {
            Ok(v) if v == json!(3) => Ok(()),
            Ok(v) => Err(format!("unexpected answer {v}")),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// The client agent of the transport systems (`metrics`: `on` or `off`).
fn client_config(args: &TransportArgs, metrics: &str) -> Result<AgentConfig, AnyError> {
    // The registry takes an agent's name from its certificate: the client is named like its file.
    let name = args.tls.cert.file_stem().and_then(|stem| stem.to_str()).unwrap_or("bench-a").to_owned();
    let mut config = AgentConfig::from_env(&name)?;
    for (key, value) in [
        ("registry_url", args.registry_url.as_str()),
        ("tls_cert", &args.tls.cert.display().to_string()),
        ("tls_key", &args.tls.key.display().to_string()),
        ("tls_ca", &args.tls.ca.display().to_string()),
        ("health_port", "off"),
        ("metrics", metrics),
    ] {
        config.set(key, value)?;
    }
    Ok(config)
}

pub async fn transport(args: TransportArgs) -> Result<(), AnyError> {
    let mut tools = vec![caller_tool("caller", "bench-caller", &args.capability)];
    if let Some(capability) = &args.policy_capability {
        tools.push(caller_tool("caller_policy", "bench-caller-policy", capability));
    }
    let agent = Agent::start(client_config(&args, "on")?, tools, add_handler()).await?;
    let quiet_agent = match &args.metrics_off_capability {
        Some(capability) => {
            let tools = vec![caller_tool("caller", "bench-caller-metrics-off", capability)];
            Some(Agent::start(client_config(&args, "off")?, tools, add_handler()).await?)
        }
        None => None,
    };
    let untraced_agent = match &args.traces_off_capability {
        Some(capability) => {
            let tools = vec![caller_tool("caller", "bench-caller-traces-off", capability)];
            // An agent reads the OTEL_* variables when it starts; this one alone starts with
            // export off (the others have started already, and nothing else reads them).
            std::env::set_var("OTEL_TRACES_EXPORTER", "none");
            let started = Agent::start(client_config(&args, "on")?, tools, add_handler()).await;
            std::env::remove_var("OTEL_TRACES_EXPORTER");
            Some(started?)
        }
        None => None,
    };
    let arguments = json!({"a": 1, "b": 2});
    let wanted = |s: &str| args.systems.iter().any(|a| a == s);
    if wanted("toolmesh_policy") && args.policy_capability.is_none() {
        return Err("the toolmesh_policy system needs --policy-capability".into());
    }
    if wanted("toolmesh_metrics_off") && quiet_agent.is_none() {
        return Err("the toolmesh_metrics_off system needs --metrics-off-capability".into());
    }
    if wanted("toolmesh_traces_off") && untraced_agent.is_none() {
        return Err("the toolmesh_traces_off system needs --traces-off-capability".into());
    }
    let ready_by = std::time::Instant::now() + Duration::from_secs(60);
    let warm_ups = [
        (Some(&agent), "caller"),
        (args.policy_capability.as_ref().map(|_| &agent), "caller_policy"),
        (quiet_agent.as_ref(), "caller"),
        (untraced_agent.as_ref(), "caller"),
    ];
    for (agent, tool) in warm_ups {
        let Some(agent) = agent else { continue };
        loop {
            match agent.call(tool, 0, arguments.clone(), None).await {
                Ok(v) if v == json!(3) => break,
                Ok(v) => return Err(format!("the server agent behind {tool} answered {v}").into()),
                Err(e) if std::time::Instant::now() > ready_by => {
                    return Err(format!("the server agent behind {tool} never answered: {e}").into())
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }
    // The raw body has the size of the JSON-RPC request toolmesh sends for the same call.
    let body = Bytes::from(raw_body(1000));
    let client_tls = Arc::new(plain_client_config(&args.tls.cert, &args.tls.key, &args.tls.ca, &[b"h2", b"http/1.1"])?);
    let raw_addr = match &args.raw_addr {
        Some(addr) => addr.clone(),
        None if wanted("raw_h1") || wanted("raw_h2") || wanted("bare_mcp") => return Err("the raw systems need --raw-addr".into()),
        None => String::new(),
    };
    let raw_authority = if raw_addr.is_empty() { "127.0.0.1:9" } else { &raw_addr };
    let uri: http::Uri = format!("https://{raw_authority}/echo").parse()?;
    let mcp_uri: http::Uri = format!("https://{raw_authority}/mcp").parse()?;
    let limits = Limits {
        warmup: Duration::from_secs_f64(args.warmup),
        duration: Duration::from_secs_f64(args.seconds),
        max_calls: args.max_calls,
        call_timeout: Duration::from_secs(10),
    };
    let me = std::process::id();
    let mut results = Vec::new();
    for round in 0..args.rounds {
        for &concurrency in &args.concurrency {
            // Alternate who goes first, so neither side always gets the warmer machine.
            let mut systems: Vec<&'static str> =
                ["raw_h1", "raw_h2", "bare_mcp", "toolmesh", "toolmesh_policy", "toolmesh_metrics_off", "toolmesh_traces_off"]
                    .into_iter()
                    .filter(|s| wanted(s))
                    .collect();
            if round % 2 == 1 {
                systems.reverse();
            }
            for (order, system) in systems.into_iter().enumerate() {
                let server_pid = match system {
                    "toolmesh" => args.agent_pid,
                    "toolmesh_policy" => args.policy_agent_pid,
                    "toolmesh_metrics_off" => args.metrics_off_agent_pid,
                    "toolmesh_traces_off" => args.traces_off_agent_pid,
                    _ => args.raw_pid,
                };
                let server_cpu = server_pid.and_then(CpuWindow::start);
                let client_cpu = CpuWindow::start(me);
                let stats = match system {
                    "toolmesh" | "toolmesh_policy" | "toolmesh_metrics_off" | "toolmesh_traces_off" => {
                        let (agent, tool) = match system {
                            "toolmesh" => (&agent, "caller"),
                            "toolmesh_policy" => (&agent, "caller_policy"),
                            "toolmesh_traces_off" => (untraced_agent.as_ref().expect("checked above"), "caller"),
                            _ => (quiet_agent.as_ref().expect("checked above"), "caller"),
                        };
                        let callers =
                            (0..concurrency).map(|_| AgentCaller { agent: agent.clone(), tool, arguments: arguments.clone() }).collect();
                        closed_loop(callers, limits).await
                    }
                    "bare_mcp" => {
                        let mut callers = Vec::new();
                        let body = Arc::new(bare_mcp_body());
                        for n in 0..concurrency {
                            let sender = connect(&raw_addr, "localhost", client_tls.clone(), false).await?;
                            let next_id = n as u64 * 1_000_000_000;
                            callers.push(BareMcpCaller { sender, uri: mcp_uri.clone(), next_id, body: body.clone() });
                        }
                        closed_loop(callers, limits).await
                    }
                    raw => {
                        let h2 = raw == "raw_h2";
                        let mut callers = Vec::new();
                        let shared = if h2 { Some(connect(&raw_addr, "localhost", client_tls.clone(), true).await?) } else { None };
                        for _ in 0..concurrency {
                            let sender: Sender = match &shared {
                                Some(s) => s.share().expect("HTTP/2 connections are shared"),
                                None => connect(&raw_addr, "localhost", client_tls.clone(), false).await?,
                            };
                            callers.push(EchoCaller { sender, uri: uri.clone(), body: body.clone() });
                        }
                        closed_loop(callers, limits).await
                    }
                };
                let measured = Measured {
                    round,
                    concurrency,
                    system,
                    order,
                    stats,
                    server_cores: server_cpu.and_then(|w| w.cores()),
                    client_cores: client_cpu.and_then(|w| w.cores()),
                };
                eprintln!(
                    "transport round {round} c={concurrency} {system}: {:.0} calls/s, p50 {:.3} ms, p99 {:.3} ms, errors {}",
                    measured.stats.throughput, measured.stats.p50_ms, measured.stats.p99_ms, measured.stats.errors
                );
                results.push(measured);
            }
        }
    }
    agent.shutdown().await;
    if let Some(untraced_agent) = untraced_agent {
        untraced_agent.shutdown().await;
    }
    if let Some(quiet_agent) = quiet_agent {
        quiet_agent.shutdown().await;
    }
    print_json(&json!({"body_bytes": body.len(), "runs": results}));
    Ok(())
}

/// A bare MCP client of the same stack (hyper over rustls, one HTTP/1.1 connection): the
/// request toolmesh sends for `add(1, 2)` and the headers that go with it, the body written per
/// call around its constant parts and the header names made once (as core's client does); its
/// answer decoded into borrowed structs and checked.
struct BareMcpCaller {
    sender: Sender,
    uri: http::Uri,
    next_id: u64,
    /// The body before and after its id.
    body: Arc<(String, String)>,
}

/// [`raw_body`] split around its id.
fn bare_mcp_body() -> (String, String) {
    let marker = u64::MAX;
    let whole = raw_body(marker);
    let (before, after) = whole.split_once(&marker.to_string()).expect("the id is in the body");
    (before.to_owned(), after.to_owned())
}

impl Caller for BareMcpCaller {
    async fn call(&mut self) -> Result<(), String> {
        use http::header::HeaderValue;
        use toolmesh_core::context::TRACEPARENT_HEADER;
        use toolmesh_core::mcp::{METHOD_HEADER, MODERN_VERSION, NAME_HEADER, PROTOCOL_VERSION_HEADER};
        self.next_id += 1;
        let (before, after) = &*self.body;
        let id = self.next_id.to_string();
        let mut body = String::with_capacity(before.len() + id.len() + after.len());
        body.push_str(before);
        body.push_str(&id);
        body.push_str(after);
        let mut request = http::Request::new(Full::new(Bytes::from(body)));
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = self.uri.clone();
        let headers = request.headers_mut();
        headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(http::header::ACCEPT, HeaderValue::from_static("application/json, text/event-stream"));
        headers.insert(PROTOCOL_VERSION_HEADER, HeaderValue::from_static(MODERN_VERSION));
        headers.insert(METHOD_HEADER, HeaderValue::from_static("tools/call"));
        headers.insert(NAME_HEADER, HeaderValue::from_static("add"));
        headers.insert(TRACEPARENT_HEADER, HeaderValue::from_static("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"));
        let (status, body) = self.sender.send(request).await?;
        #[derive(serde::Deserialize)]
        struct Answer<'a> {
            #[serde(borrow)]
            result: ToolResult<'a>,
        }
        #[derive(serde::Deserialize)]
        struct ToolResult<'a> {
            #[serde(borrow)]
            content: Vec<Text<'a>>,
            #[serde(rename = "isError", default)]
            is_error: bool,
        }
        #[derive(serde::Deserialize)]
        struct Text<'a> {
            #[serde(borrow)]
            text: std::borrow::Cow<'a, str>,
        }
        let answer: Answer = match serde_json::from_slice(&body) {
            Ok(answer) if status == http::StatusCode::OK => answer,
            _ => return Err(format!("HTTP {status}: {}", String::from_utf8_lossy(&body))),
        };
        match answer.result.content.first() {
            Some(first) if first.text == "3" && !answer.result.is_error => Ok(()),
            _ => Err(format!("unexpected answer: {}", String::from_utf8_lossy(&body))),
        }
    }
}

/// The JSON-RPC body core sends for `add(1, 2)` (same shape and size; its ids vary).
fn raw_body(id: u64) -> String {
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "method": "tools/call",
        "params": {
            "name": "add",
            "arguments": {"a": 1, "b": 2},
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
                "io.modelcontextprotocol/clientInfo": {"name": "toolmesh", "version": "0.1.0"},
                "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            },
        },
    })
    .to_string()
}
