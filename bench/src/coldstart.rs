//! Row 4 (and the start of row 3): launches an agent process and measures launch → registered
//! (it appears, new, in its registry's agent list) → callable (a `tools/call` to the endpoint
//! the registry gives answers right). The same probe serves toolmesh and MCP Mesh: both are
//! asked over mTLS with the same plain client, every 10 ms.

use crate::common::*;
use crate::http::{check_tool_result, connect, Sender};
use crate::transport::TlsFilesArgs;
use bytes::Bytes;
use http_body_util::Full;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Toolmesh,
    Mcpmesh,
}

#[derive(clap::Args)]
pub struct ColdStartArgs {
    /// The client certificate the probe presents (to the registry and the agent).
    #[command(flatten)]
    tls: TlsFilesArgs,
    #[arg(long, value_enum)]
    kind: Kind,
    /// https://HOST:PORT of the registry (loopback).
    #[arg(long)]
    registry: String,
    /// The agent's name in the registry.
    #[arg(long)]
    name: String,
    #[arg(long, default_value = "add")]
    tool: String,
    #[arg(long, default_value = r#"{"a":20,"b":22}"#)]
    arguments: String,
    #[arg(long, default_value = "42")]
    expect: String,
    #[arg(long, default_value_t = 90.0)]
    timeout: f64,
    /// Where the agent's output goes.
    #[arg(long)]
    log: std::path::PathBuf,
    /// Leave the agent running (its pid is in the answer); otherwise it is stopped with SIGTERM.
    #[arg(long)]
    keep: bool,
    /// The agent's command line.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

struct Client {
    tls: Arc<rustls::ClientConfig>,
    sender: Option<(String, Sender)>,
}

impl Client {
    async fn request(&mut self, method: http::Method, url: &str, body: Option<String>) -> Result<(http::StatusCode, Bytes), String> {
        let uri: http::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
        let authority = uri.authority().ok_or("no host")?;
        let host = if authority.host() == "localhost" { "127.0.0.1" } else { authority.host() };
        let addr = format!("{host}:{}", authority.port_u16().unwrap_or(443));
        if self.sender.as_ref().is_none_or(|(a, _)| *a != addr) {
            let sender = connect(&addr, "localhost", self.tls.clone(), false).await.map_err(|e| e.to_string())?;
            self.sender = Some((addr.clone(), sender));
        }
        let mut request = http::Request::builder().method(method).uri(uri.clone()).header(http::header::HOST, authority.as_str());
        if body.is_some() {
            request = request
                .header(http::header::CONTENT_TYPE, "application/json")
                .header(http::header::ACCEPT, "application/json, text/event-stream")
                .header("mcp-protocol-version", "2025-06-18");
        }
        let request = request.body(Full::new(Bytes::from(body.unwrap_or_default()))).map_err(|e| e.to_string())?;
        let sender = &mut self.sender.as_mut().expect("connected").1;
        let answer = sender.send(request).await;
        if answer.is_err() {
            self.sender = None;
        }
        answer
    }
}

/// (id, endpoint of `/mcp`) of every agent named `name` that the registry lists as healthy.
async fn listed(client: &mut Client, kind: Kind, registry: &str, name: &str) -> Result<Vec<(String, String)>, String> {
    let url = match kind {
        Kind::Toolmesh => format!("{registry}/v1/agents"),
        Kind::Mcpmesh => format!("{registry}/agents"),
    };
    let (status, body) = client.request(http::Method::GET, &url, None).await?;
    if status != http::StatusCode::OK {
        return Err(format!("registry answered {status}"));
    }
    let list: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    let agents = list.get("agents").and_then(Value::as_array).cloned().unwrap_or_default();
    Ok(agents
        .iter()
        .filter(|a| a.get("name").and_then(Value::as_str) == Some(name))
        .filter(|a| a.get("status").and_then(Value::as_str).is_none_or(|s| s == "healthy"))
        .filter_map(|a| {
            let id = a.get("agent_id").or_else(|| a.get("id"))?.as_str()?.to_owned();
            let endpoint = a.get("endpoint")?.as_str()?.trim_end_matches('/').to_owned();
            let endpoint = if endpoint.ends_with("/mcp") { endpoint } else { format!("{endpoint}/mcp") };
            Some((id, endpoint))
        })
        .collect())
}

pub async fn coldstart(args: ColdStartArgs) -> Result<(), AnyError> {
    let tls = Arc::new(plain_client_config(&args.tls.cert, &args.tls.key, &args.tls.ca, &[b"http/1.1"])?);
    let mut client = Client { tls: tls.clone(), sender: None };
    let registry = args.registry.trim_end_matches('/').to_owned();
    // Agents of the same name already listed (a previous run not yet evicted) do not count.
    let before: HashSet<String> = listed(&mut client, args.kind, &registry, &args.name).await?.into_iter().map(|(id, _)| id).collect();
    let log = std::fs::File::create(&args.log)?;
    let t0 = Instant::now();
    let mut child = tokio::process::Command::new(&args.command[0])
        .args(&args.command[1..])
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    let pid = child.id().ok_or("the agent exited at once")?;
    let deadline = t0 + Duration::from_secs_f64(args.timeout);
    let (mut registered, mut callable, mut last_error, mut found_endpoint) = (None, None, String::new(), String::new());
    let mut agent_client = Client { tls, sender: None };
    let mut ids = 1u64;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("the agent exited with {status} before it was callable; see {}", args.log.display()).into());
        }
        match listed(&mut client, args.kind, &registry, &args.name).await {
            Ok(found) => {
                if let Some((_, endpoint)) = found.into_iter().find(|(id, _)| !before.contains(id)) {
                    registered.get_or_insert(t0.elapsed());
                    found_endpoint.clone_from(&endpoint);
                    let body = json!({"jsonrpc": "2.0", "id": ids, "method": "tools/call", "params": {"name": args.tool, "arguments": serde_json::from_str::<Value>(&args.arguments)?}});
                    ids += 1;
                    match agent_client.request(http::Method::POST, &endpoint, Some(body.to_string())).await {
                        Ok((status, body)) => match check_tool_result(status, &body, Some(&args.expect)) {
                            Ok(()) => {
                                callable = Some(t0.elapsed());
                                break;
                            }
                            Err(e) => last_error = e,
                        },
                        Err(e) => last_error = e,
                    }
                }
            }
            Err(e) => last_error = e,
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let rss = rss_mib(pid);
    if !args.keep {
        stop(pid, &mut child).await;
    }
    let Some(callable) = callable else {
        return Err(format!(
            "not callable within {} s (registered: {registered:?}; last error: {last_error}); see {}",
            args.timeout,
            args.log.display()
        )
        .into());
    };
    print_json(&json!({
        "pid": pid,
        "registered_ms": registered.map(|d| d.as_secs_f64() * 1000.0),
        "callable_ms": callable.as_secs_f64() * 1000.0,
        "rss_mib_when_callable": rss,
        "kept": args.keep,
        "endpoint": found_endpoint,
    }));
    Ok(())
}

/// SIGTERM, then SIGKILL after 10 s.
async fn stop(pid: u32, child: &mut tokio::process::Child) {
    // SAFETY: kill has no memory-safety preconditions; pid is our own child's.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    if tokio::time::timeout(Duration::from_secs(10), child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
}
