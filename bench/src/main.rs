//! `toolmesh-bench`: the measuring half of `bench/run.sh`. Each subcommand measures one thing
//! and prints its raw figures as one JSON line; `bench/harness.py` starts the processes,
//! alternates baseline and toolmesh, and writes the table. See bench/README.md.

mod coldstart;
mod common;
mod handshake;
mod http;
mod load;
mod long_calls;
mod policy;
mod registry_scale;
mod stream_calls;
mod transport;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "toolmesh-bench", about = "toolmesh benchmarks (run them with bench/run.sh)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The raw baseline server: hyper + rustls mTLS echo.
    ServeRaw(transport::ServeRawArgs),
    /// A Rust toolmesh agent serving `add` with a core-level handler (TOOLMESH_* environment).
    ServeAgent(transport::ServeAgentArgs),
    /// Raw echo against agent-to-agent `tools/call`, alternately.
    Transport(transport::TransportArgs),
    /// Full and resumed mTLS handshakes per core, core's configurations and plain rustls.
    Handshakes(handshake::HandshakeArgs),
    /// Closed-loop MCP `tools/call` load against one agent.
    Load(load::LoadArgs),
    /// Progress notifications per second and cancel-to-stop time, three hops against one.
    LongCalls(long_calls::LongCallsArgs),
    /// Streamed `tools/call`s (progress notifications read as they arrive), and cancellations.
    StreamCalls(stream_calls::StreamCallsArgs),
    /// Launch an agent and time it to registered and callable.
    Coldstart(coldstart::ColdStartArgs),
    /// N simulated agents against one registry.
    RegistryScale(registry_scale::RegistryScaleArgs),
    /// The cost of a policy decision (1 and 100 rules) and of the callee's whole gate per call.
    PolicyDecide(policy::PolicyArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Two workers, as core's shared runtime has on this machine (min(cores, 4)).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(std::thread::available_parallelism().map(|n| n.get().min(4)).unwrap_or(2))
        .enable_all()
        .build()
        .expect("tokio runtime");
    let outcome = match cli.command {
        Command::ServeRaw(args) => runtime.block_on(transport::serve_raw(args)),
        Command::ServeAgent(args) => runtime.block_on(transport::serve_agent(args)),
        Command::Transport(args) => runtime.block_on(transport::transport(args)),
        Command::Handshakes(args) => handshake::handshakes(args),
        Command::Load(args) => runtime.block_on(load::load(args)),
        Command::LongCalls(args) => runtime.block_on(long_calls::long_calls(args)),
        Command::StreamCalls(args) => runtime.block_on(stream_calls::stream_calls(args)),
        Command::Coldstart(args) => runtime.block_on(coldstart::coldstart(args)),
        Command::RegistryScale(args) => runtime.block_on(registry_scale::registry_scale(args)),
        Command::PolicyDecide(args) => policy::policy_decide(args),
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("toolmesh-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
