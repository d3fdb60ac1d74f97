//! The load generator for agents written in other languages (row 2): closed-loop MCP
//! `tools/call` POSTs over mTLS, one keep-alive HTTP/1.1 connection per worker, loopback only,
//! bounded in time and count. It reports its own CPU use, to show it is not the bottleneck.

use crate::common::*;
use crate::http::{connect, McpCallCaller};
use crate::transport::TlsFilesArgs;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

/// The agent a client subcommand talks to, and the certificate it presents.
#[derive(clap::Args)]
pub struct AgentArgs {
    /// The client certificate presented to the agent.
    #[command(flatten)]
    tls: TlsFilesArgs,
    /// https://127.0.0.1:PORT/mcp (loopback only).
    #[arg(long)]
    url: String,
    /// The name the server certificate must carry.
    #[arg(long, default_value = "localhost")]
    server_name: String,
}

impl AgentArgs {
    /// The URL, the address to dial (`localhost` as 127.0.0.1), and the client's TLS config (HTTP/1.1).
    pub fn resolve(&self) -> Result<(http::Uri, String, Arc<rustls::ClientConfig>), AnyError> {
        let uri: http::Uri = self.url.parse()?;
        let authority = uri.authority().ok_or("the URL has no host")?;
        let host = authority.host();
        let addr = format!("{}:{}", if host == "localhost" { "127.0.0.1" } else { host }, authority.port_u16().unwrap_or(443));
        let tls = Arc::new(plain_client_config(&self.tls.cert, &self.tls.key, &self.tls.ca, &[b"http/1.1"])?);
        Ok((uri, addr, tls))
    }

    pub fn server_name(&self) -> &str {
        &self.server_name
    }
}

#[derive(clap::Args)]
pub struct LoadArgs {
    #[command(flatten)]
    agent: AgentArgs,
    #[arg(long)]
    tool: String,
    #[arg(long, default_value = "{}")]
    arguments: String,
    /// The text the result must be.
    #[arg(long)]
    expect: Option<String>,
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    #[arg(long, default_value_t = 1_000_000)]
    max_calls: u64,
    #[arg(long, default_value_t = 30.0)]
    call_timeout: f64,
    /// pids whose CPU use during the run is reported (the agents under load).
    #[arg(long, value_delimiter = ',')]
    pids: Vec<u32>,
}

pub async fn load(args: LoadArgs) -> Result<(), AnyError> {
    let (uri, addr, tls) = args.agent.resolve()?;
    let ids = Arc::new(AtomicU64::new(1));
    let mut callers = Vec::new();
    for _ in 0..args.concurrency {
        callers.push(McpCallCaller {
            sender: connect(&addr, args.agent.server_name(), tls.clone(), false).await?,
            uri: uri.clone(),
            tool: args.tool.clone(),
            arguments: args.arguments.clone(),
            expect: args.expect.clone(),
            ids: ids.clone(),
        });
    }
    let limits = Limits {
        warmup: Duration::from_secs_f64(args.warmup),
        duration: Duration::from_secs_f64(args.seconds),
        max_calls: args.max_calls,
        call_timeout: Duration::from_secs_f64(args.call_timeout),
    };
    let me = CpuWindow::start(std::process::id());
    let others: Vec<(u32, CpuWindow)> = args.pids.iter().filter_map(|p| Some((*p, CpuWindow::start(*p)?))).collect();
    let stats = closed_loop(callers, limits).await;
    let pid_cores: serde_json::Map<String, serde_json::Value> =
        others.iter().map(|(pid, w)| (pid.to_string(), serde_json::json!(w.cores()))).collect();
    print_json(&serde_json::json!({
        "stats": stats,
        "loadgen_cores": me.and_then(|w| w.cores()),
        "pid_cores": pid_cores,
    }));
    Ok(())
}
