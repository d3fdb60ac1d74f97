//! `toolmesh list` and `toolmesh call`: the operator's view of the mesh, through the registry,
//! with the operator's certificate.

use crate::progress::ProgressDisplay;
use crate::{Failure, TlsArgs};
use clap::Args;
use serde_json::Value;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;
use toolmesh_core::client::RequestError;
use toolmesh_core::context::RequestContext;
use toolmesh_core::mcp::client::StartedTask;
use toolmesh_core::mcp::McpClient;
use toolmesh_core::pipeline::{Pipeline, Target, Transport};
use toolmesh_core::registry_api::{AgentInfo, AgentList, DependencySpec, Provider};
use toolmesh_core::registry_client::RegistryClient;
use toolmesh_core::report::NotificationObserver;
use toolmesh_core::text::escape;
use toolmesh_core::tls::Identity;
use toolmesh_core::{Error, ErrorKind};

/// Where the registry is and who is asking.
#[derive(Args)]
pub struct RegistryAccess {
    /// The registry's URL, e.g. https://127.0.0.1:8443.
    #[arg(long, env = "TOOLMESH_REGISTRY_URL", value_name = "URL")]
    registry: Option<String>,
    #[command(flatten)]
    tls: TlsArgs,
    /// Act with the operator certificate `toolmesh registry --tls-auto` wrote to its state directory.
    #[arg(long, conflicts_with_all = ["tls_cert", "tls_key", "tls_ca"])]
    tls_auto: bool,
    /// The state directory of a --tls-auto registry (default ~/.toolmesh/registry).
    #[arg(long, env = "TOOLMESH_STATE_DIR", value_name = "DIR", requires = "tls_auto")]
    state_dir: Option<std::path::PathBuf>,
}

impl RegistryAccess {
    pub fn connect(&self) -> Result<(RegistryClient, Arc<Identity>), Failure> {
        let url = self.registry.as_deref().ok_or_else(|| {
            Failure::usage(Error::new(
                ErrorKind::InvalidConfig,
                "no registry URL: pass --registry or set TOOLMESH_REGISTRY_URL (like https://127.0.0.1:8443)",
            ))
        })?;
        // Check the URL before the certificates: it is the cheaper mistake to report.
        toolmesh_core::registry_endpoints::parse(url)?;
        let identity = if self.tls_auto {
            let dir =
                self.state_dir.clone().or_else(toolmesh_core::auto_tls::default_state_dir).ok_or_else(|| {
                    Failure::usage(Error::new(ErrorKind::InvalidConfig, "--tls-auto needs --state-dir (HOME is not set)"))
                })?;
            let files =
                toolmesh_core::tls::TlsFiles { cert: dir.join("operator.pem"), key: dir.join("operator.key"), ca: dir.join("ca.pem") };
            Identity::load(&files)
                .map_err(|e| Failure::usage(e.context(format!("the operator identity of the --tls-auto registry in {}", dir.display()))))?
        } else {
            self.tls.load("operator")?
        };
        Ok((RegistryClient::new(url, &identity)?, identity))
    }
}

#[derive(Args)]
pub struct ListArgs {
    /// Print the registry's JSON answer instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub access: RegistryAccess,
}

pub async fn list(args: ListArgs) -> Result<(), Failure> {
    let (registry, _) = args.access.connect()?;
    let list = registry.list_agents().await?;
    if args.json {
        println!("{}", to_json(&list)?);
    } else if list.agents.is_empty() {
        println!("no agents are registered at {}", registry.url());
    } else {
        print!("{}", table(&list));
    }
    Ok(())
}

/// One row per tool; the agent's columns are filled on its first row only. Every cell is
/// registry-provided text, escaped by [`align`].
fn table(list: &AgentList) -> String {
    let header = ["AGENT", "ID", "ENTITY", "HEALTH", "ENDPOINT", "TOOLS"].map(String::from);
    let mut rows = vec![header];
    for agent in &list.agents {
        let health = format!("{} ({})", agent.status, seconds_ago(agent.last_seen_ms));
        let entity = agent.entity.clone().unwrap_or_else(|| "(mesh)".to_owned());
        let mut first = [agent.name.clone(), agent.agent_id.clone(), entity, health, agent.endpoint.clone()];
        let tools: Vec<String> = agent
            .tools
            .iter()
            .map(|tool| {
                let tags = if tool.tags.is_empty() { String::new() } else { format!(" [{}]", tool.tags.join(",")) };
                format!("{}: {}@{}{tags}", tool.name, tool.capability, tool.version)
            })
            .collect();
        if tools.is_empty() {
            rows.push(append(first, "-".to_owned()));
            continue;
        }
        for described in tools {
            rows.push(append(std::mem::take(&mut first), described));
        }
    }
    align(&rows)
}

/// Left-aligned columns two spaces apart, trailing spaces trimmed. Cells are text from the
/// registry (names, ids, endpoints, tags, entities): each is escaped ([`toolmesh_core::text`]), so
/// a control character shows as `\u{1b}` and cannot drive the terminal or forge a row.
pub fn align<R: AsRef<[String]>>(rows: &[R]) -> String {
    let rows: Vec<Vec<std::borrow::Cow<'_, str>>> = rows.iter().map(|r| r.as_ref().iter().map(|cell| escape(cell)).collect()).collect();
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> =
        (0..columns).map(|c| rows.iter().map(|r| r.get(c).map_or(0, |cell| cell.chars().count())).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in &rows {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(cell, width)| format!("{cell:width$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn append(first: [String; 5], last: String) -> [String; 6] {
    let [a, b, c, d, e] = first;
    [a, b, c, d, e, last]
}

fn seconds_ago(ms: u64) -> String {
    format!("{:.1}s ago", ms as f64 / 1000.0)
}

#[derive(Args)]
pub struct CallArgs {
    /// CAPABILITY (the registry picks the best provider), or AGENT:TOOL where AGENT is an agent name or id.
    target: String,
    /// The tool's arguments, a JSON object.
    #[arg(default_value = "{}", value_name = "JSON")]
    arguments: String,
    /// A header for the called tool, repeatable. The handler it reaches sees it (toolmesh.headers()
    /// in every language); it goes on to further agents only where their TOOLMESH_PROPAGATE_HEADERS
    /// names it. authorization and cookie reach a handler only if its agent's list names them.
    #[arg(long = "header", value_name = "NAME=VALUE")]
    headers: Vec<String>,
    /// How long to wait for the result.
    #[arg(long, default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..), value_name = "MS")]
    timeout_ms: u64,
    /// Start the call as a task (MCP's tasks extension) and print it rather than wait: its
    /// "agent" and "taskId" are what `toolmesh task get|wait|cancel` take. A tool that answers at
    /// once is printed with status "completed" and its result.
    #[arg(long)]
    task: bool,
    #[command(flatten)]
    access: RegistryAccess,
}

/// Calls the tool and prints its result on stdout, and the progress its callee reports on
/// stderr as it arrives. Ctrl-C (SIGINT) abandons the call: its stream closes, which cancels the
/// callee's request and every call made for it down the chain.
pub async fn call(args: CallArgs) -> Result<(), Failure> {
    // Listened for from the start, so that Ctrl-C at any step cancels rather than kills.
    let mut interrupt = Interrupt::listen()?;
    let (display, observer) = ProgressDisplay::start(std::io::stderr().is_terminal());
    let outcome = tokio::select! {
        outcome = call_showing_progress(&args, observer) => Some(outcome),
        () = interrupt.recv() => None,
    };
    // The call (its stream with it) is dropped by now; what it reported is printed first.
    display.finish().await;
    match outcome {
        Some(result) => {
            let result = result?;
            println!("{}", to_json(&result)?);
            if let (true, Some(agent), Some(task_id)) = (args.task, result["agent"].as_str(), result["taskId"].as_str()) {
                let (agent, task_id) = (escape(agent), escape(task_id));
                eprintln!("toolmesh: the task runs at agent {agent}; `toolmesh task wait {agent} {task_id}` waits for its result");
            }
            Ok(())
        }
        None => Err(Failure::interrupted(Error::new(
            ErrorKind::Cancelled,
            format!("interrupted (Ctrl-C): the call to {} was cancelled, and with it every call made for it down the chain", args.target),
        ))),
    }
}

async fn call_showing_progress(args: &CallArgs, observer: NotificationObserver) -> Result<Value, Failure> {
    let arguments: Value = serde_json::from_str(&args.arguments)
        .map_err(|e| usage(format!("the arguments are not valid JSON ({e}); pass an object like '{{\"a\": 1}}'")))?;
    if !arguments.is_object() {
        return Err(usage(format!("the arguments must be a JSON object, not {arguments}")));
    }
    let timeout = Duration::from_millis(args.timeout_ms);
    let context = RequestContext {
        headers: args.headers.iter().map(|h| parse_header(h)).collect::<Result<_, _>>()?,
        headers_set_by_caller: true,
        deadline: Some(tokio::time::Instant::now() + timeout),
        on_notification: Some(observer),
        ..RequestContext::default()
    };
    let (registry, identity) = args.access.connect()?;
    let candidates = match args.target.split_once(':') {
        Some((agent, tool)) => vec![agent_tool(&registry, agent, tool).await?],
        None => providers(&registry, &args.target).await?,
    };
    let client = McpClient::new(&identity)?;
    let transport: &dyn Transport = if args.task { &StartTask(&client) } else { &Mcp(&client) };
    let result = tokio::time::timeout(timeout, call_first_reachable(transport, &candidates, arguments, &context, timeout))
        .await
        .map_err(|_| Error::new(ErrorKind::Timeout, format!("{} did not answer within {} ms", args.target, args.timeout_ms)))??;
    Ok(result)
}

/// SIGINT, listened for from creation on (on Unix; elsewhere Ctrl-C as the platform reports it).
struct Interrupt {
    #[cfg(unix)]
    signal: tokio::signal::unix::Signal,
}

impl Interrupt {
    fn listen() -> Result<Self, Error> {
        #[cfg(unix)]
        {
            let signal = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
                .map_err(|e| Error::new(ErrorKind::Internal, format!("cannot listen for Ctrl-C (SIGINT): {e}")))?;
            Ok(Interrupt { signal })
        }
        #[cfg(not(unix))]
        Ok(Interrupt {})
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        self.signal.recv().await;
        #[cfg(not(unix))]
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await
        }
    }
}

/// The tool `tool` of the agent whose id (or else name) is `agent`, healthy agents first.
async fn agent_tool(registry: &RegistryClient, agent: &str, tool: &str) -> Result<Provider, Error> {
    let agents = registry.list_agents().await?.agents;
    let by_id = agents.iter().find(|a| a.agent_id == agent);
    let mut by_name: Vec<&AgentInfo> = agents.iter().filter(|a| a.name == agent).collect();
    by_name.sort_by_key(|a| a.status != "healthy");
    let found = by_id.or(by_name.first().copied()).ok_or_else(|| {
        Error::new(
            ErrorKind::UnknownAgent,
            format!("no agent named '{agent}' or with that id is registered at {}; `toolmesh list` shows the agents", registry.url()),
        )
    })?;
    let info = found.tools.iter().find(|t| t.name == tool).ok_or_else(|| {
        let names: Vec<&str> = found.tools.iter().map(|t| t.name.as_str()).collect();
        Error::new(
            ErrorKind::UnknownTool,
            format!("agent '{}' ({}) has no tool '{tool}'; its tools: {}", found.name, found.agent_id, names.join(", ")),
        )
    })?;
    Ok(Provider::of(&found.agent_id, &found.name, &found.endpoint, info))
}

/// The providers of `capability`, best first.
async fn providers(registry: &RegistryClient, capability: &str) -> Result<Vec<Provider>, Error> {
    let providers = registry.resolve(&DependencySpec::capability(capability)).await?.providers;
    if providers.is_empty() {
        return Err(Error::new(
            ErrorKind::DependencyUnresolved,
            format!("no agent registered at {} provides capability '{capability}'", registry.url()),
        ));
    }
    Ok(providers)
}

/// Calls the candidates through core's call policy, as an agent's dependency call would: the
/// next provider when one cannot be reached (and, for a read-only or idempotent tool, when the
/// connection breaks after delivery); errors name the agent, the tool and the address.
async fn call_first_reachable(
    transport: &dyn Transport,
    candidates: &[Provider],
    arguments: Value,
    context: &RequestContext,
    timeout: Duration,
) -> Result<Value, Error> {
    let capability = candidates.first().map_or("", |p| p.capability.as_str());
    let target = Target { key: capability, capability, providers: candidates, timeout };
    Pipeline::new().call(transport, target, arguments, context).await
}

/// Sends each attempt as an MCP call over mTLS.
struct Mcp<'c>(&'c McpClient);

impl Transport for Mcp<'_> {
    fn send<'a>(
        &'a self,
        provider: &'a Provider,
        arguments: &'a Value,
        context: &'a RequestContext,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Value, RequestError>> + Send + 'a>> {
        Box::pin(self.0.call_provider(provider, arguments, context, toolmesh_core::mcp::ResultShape::Value))
    }
}

/// Starts each attempt as a task: the task with the id of the agent that holds it, or the
/// result it answered at once.
struct StartTask<'c>(&'c McpClient);

impl Transport for StartTask<'_> {
    fn send<'a>(
        &'a self,
        provider: &'a Provider,
        arguments: &'a Value,
        context: &'a RequestContext,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Value, RequestError>> + Send + 'a>> {
        Box::pin(async move {
            let started = self.0.start_task(provider, arguments, context, toolmesh_core::mcp::ResultShape::Value).await?;
            let mut printed = serde_json::json!({"agent": provider.agent_id});
            match started {
                StartedTask::Created(task) => {
                    if let Value::Object(fields) = task {
                        printed.as_object_mut().expect("an object").extend(fields);
                    }
                }
                StartedTask::Answered(result) => {
                    printed["status"] = Value::from("completed");
                    printed["result"] = result;
                }
            }
            Ok(printed)
        })
    }
}

/// `NAME=VALUE` with an HTTP token as the name; names are lowercased as the mesh carries them.
fn parse_header(header: &str) -> Result<(String, String), Failure> {
    let (name, value) = header.split_once('=').ok_or_else(|| usage(format!("--header '{header}' is not NAME=VALUE")))?;
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(token) {
        return Err(usage(format!("--header name '{name}' is not a valid HTTP header name")));
    }
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(usage(format!("--header value for '{name}' contains control characters")));
    }
    Ok((name.to_ascii_lowercase(), value.to_owned()))
}

pub fn to_json(value: &impl serde::Serialize) -> Result<String, Error> {
    serde_json::to_string_pretty(value).map_err(|e| Error::new(ErrorKind::Internal, format!("cannot print JSON: {e}")))
}

fn usage(message: String) -> Failure {
    Failure::usage(Error::new(ErrorKind::InvalidConfig, message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use toolmesh_core::registry_api::ToolInfo;

    #[test]
    fn headers_are_checked_and_lowercased() {
        assert_eq!(parse_header("X-Tenant=a=b").expect("valid"), ("x-tenant".to_owned(), "a=b".to_owned()));
        for bad in ["novalue", "=v", "bad name=v", "x=\u{7}"] {
            assert_eq!(parse_header(bad).expect_err(bad).exit_code, 2, "{bad}");
        }
    }

    #[test]
    fn the_table_has_a_row_per_tool_and_aligned_columns() {
        let tool = |name: &str, tags: &[&str]| {
            let mut t: ToolInfo = serde_json::from_value(serde_json::json!({"name": name, "capability": name})).expect("tool");
            t.tags = tags.iter().map(|s| s.to_string()).collect();
            t
        };
        let agent = |name: &str, tools| AgentInfo {
            agent_id: format!("{name}-1"),
            name: name.into(),
            endpoint: format!("https://{name}:1/mcp"),
            tools,
            status: "healthy".into(),
            last_seen_ms: 1500,
            identity: String::new(),
            entity: (name == "idle").then(|| "partner".to_owned()),
        };
        let list = AgentList { agents: vec![agent("calc", vec![tool("add", &["math", "fast"]), tool("sub", &[])]), agent("idle", vec![])] };
        let expected = "\
AGENT  ID      ENTITY   HEALTH              ENDPOINT            TOOLS
calc   calc-1  (mesh)   healthy (1.5s ago)  https://calc:1/mcp  add: add@1.0.0 [math,fast]
                                                                sub: sub@1.0.0
idle   idle-1  partner  healthy (1.5s ago)  https://idle:1/mcp  -
";
        assert_eq!(table(&list), expected);
    }

    #[test]
    fn registry_text_is_printed_escaped() {
        let mut tool: ToolInfo = serde_json::from_value(serde_json::json!({"name": "t", "capability": "c"})).expect("tool");
        tool.tags = vec!["x\u{7}".into()];
        let agent = AgentInfo {
            agent_id: "id\u{9b}1".into(),
            name: "evil\u{1b}[2J\nINFO forged".into(),
            endpoint: "https://h:1/mcp".into(),
            tools: vec![tool],
            status: "healthy".into(),
            last_seen_ms: 0,
            identity: String::new(),
            entity: Some("p\u{202e}q".into()),
        };
        let printed = table(&AgentList { agents: vec![agent] });
        assert!(!printed.chars().any(|c| c != '\n' && toolmesh_core::text::is_escaped(c)), "{printed:?}");
        assert_eq!(printed.lines().count(), 2, "one header and one row: {printed}");
        assert!(printed.contains("evil\\u{1b}[2J\\u{a}INFO forged  id\\u{9b}1  p\\u{202e}q"), "{printed}");
        assert!(printed.contains("t: c@1.0.0 [x\\u{7}]"), "{printed}");
    }
}
