//! `toolmesh`: the operator's command. Runs the registry, creates certificates, lists the mesh
//! and calls tools. Every failure is printed as `toolmesh: error [CODE NAME]: message` and
//! exits 2 for configuration and usage errors, 130 when Ctrl-C cancelled a call, 1 otherwise.

#![forbid(unsafe_code)]

mod audit;
mod certs;
mod entity;
mod ops;
mod policy;
mod progress;
mod registry;
mod task;
mod trace;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use toolmesh_core::tls::{Identity, TlsFiles};
use toolmesh_core::{Error, ErrorKind};

#[derive(Parser)]
#[command(name = "toolmesh", version, about = "toolmesh: a service mesh for MCP agents")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a CA, issue, check and rotate certificates.
    #[command(subcommand)]
    Certs(certs::CertsCommand),
    /// Run the registry (HTTPS with mandatory client certificates) until SIGINT/SIGTERM.
    Registry(Box<registry::RegistryArgs>),
    /// List the agents registered at the registry.
    List(ops::ListArgs),
    /// Call a tool, found through the registry, directly over mutual TLS.
    Call(ops::CallArgs),
    /// Trust, list and revoke other organisations' CAs (needs an operator certificate).
    #[command(subcommand)]
    Entity(entity::EntityCommand),
    /// Show the registry's recent denials (needs an operator certificate).
    Audit(audit::AuditArgs),
    /// Show a trace's call tree, or list the recent traces, from the registry's trace store
    /// (needs an operator certificate).
    Trace(trace::TraceArgs),
    /// Apply, list and test the access policy the registry pushes to every agent (apply and
    /// test need an operator certificate).
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Follow, wait for or cancel a task that `toolmesh call --task` started, at the agent that holds it.
    #[command(subcommand)]
    Task(task::TaskCommand),
}

/// The certificate, key and CA bundle of the identity this command acts with.
#[derive(Args)]
pub struct TlsArgs {
    /// PEM certificate (chain) of this identity.
    #[arg(long, env = "TOOLMESH_TLS_CERT", value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of the certificate.
    #[arg(long, env = "TOOLMESH_TLS_KEY", value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// PEM CA bundle peers must chain to (the mesh CA).
    #[arg(long, env = "TOOLMESH_TLS_CA", value_name = "FILE")]
    tls_ca: Option<PathBuf>,
}

impl TlsArgs {
    /// Loads and checks the identity; `role` names the certificate to use in the hint.
    pub fn load(&self, role: &str) -> Result<Arc<Identity>, Failure> {
        let (Some(cert), Some(key), Some(ca)) = (&self.tls_cert, &self.tls_key, &self.tls_ca) else {
            let missing: Vec<&str> = [
                (self.tls_cert.is_none(), "--tls-cert/TOOLMESH_TLS_CERT"),
                (self.tls_key.is_none(), "--tls-key/TOOLMESH_TLS_KEY"),
                (self.tls_ca.is_none(), "--tls-ca/TOOLMESH_TLS_CA"),
            ]
            .into_iter()
            .filter_map(|(missing, name)| missing.then_some(name))
            .collect();
            return Err(Failure::usage(Error::new(
                ErrorKind::CertificateFile,
                format!(
                    "no TLS identity: set {} to the {role} certificate, its key and the mesh CA; \
                     `toolmesh certs init --dir DIR` creates a development set",
                    missing.join(", ")
                ),
            )));
        };
        let files = TlsFiles { cert: cert.clone(), key: key.clone(), ca: ca.clone() };
        Identity::load(&files).map_err(Failure::usage)
    }
}

/// A failed command: the error to print and the exit code.
#[derive(Debug)]
pub struct Failure {
    error: Error,
    exit_code: u8,
}

impl Failure {
    /// A configuration or usage error (exit code 2), whatever its kind.
    pub fn usage(error: Error) -> Self {
        Failure { error, exit_code: 2 }
    }

    /// A call the user cancelled with Ctrl-C: 130, as a shell reports a command SIGINT stopped.
    pub fn interrupted(error: Error) -> Self {
        Failure { error, exit_code: 130 }
    }
}

impl From<Error> for Failure {
    /// Configuration errors (1xxx) exit 2; everything that went wrong while working exits 1.
    fn from(error: Error) -> Self {
        let exit_code = if (1000..2000).contains(&error.code()) { 2 } else { 1 };
        Failure { error, exit_code }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help, --version, and the help shown for a bare `toolmesh`.
        Err(e) if !e.use_stderr() || e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
        Err(e) => {
            let rendered = e.render().to_string();
            let message = rendered.trim_start_matches("error: ").trim_end();
            return report(&Failure::usage(Error::new(ErrorKind::InvalidConfig, message)));
        }
    };
    init_tracing(matches!(cli.command, Command::Registry(_)));
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => return report(&Failure::from(Error::new(ErrorKind::Internal, format!("cannot start the runtime: {e}")))),
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::Certs(command) => certs::run(command),
            Command::Registry(args) => registry::run(*args).await,
            Command::List(args) => ops::list(args).await,
            Command::Call(args) => ops::call(args).await,
            Command::Entity(command) => entity::run(command).await,
            Command::Audit(args) => audit::run(args).await,
            Command::Trace(args) => trace::run(args).await,
            Command::Policy(command) => policy::run(command).await,
            Command::Task(command) => task::run(command).await,
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => report(&failure),
    }
}

fn report(failure: &Failure) -> ExitCode {
    let e = &failure.error;
    // Messages quote what the registry, a peer or a certificate said: escaped, line breaks kept.
    // A tool's own error also names its application code (as core prints it), and its data.
    let app_code = e.app_code().map(|code| format!(" {code}")).unwrap_or_default();
    let message = toolmesh_core::text::escape_keeping_newlines(e.message());
    eprintln!("toolmesh: error [{} {}{app_code}]: {message}", e.code(), e.kind().name());
    if let Some(data) = e.data() {
        eprintln!("toolmesh: error data: {data}");
    }
    ExitCode::from(failure.exit_code)
}

/// Core's subscriber (stderr; `TOOLMESH_LOG`, then `RUST_LOG`, override the default), at `info`
/// for the long-running registry and `warn` for one-shot commands.
fn init_tracing(long_running: bool) {
    toolmesh_core::logging::init_with_default(if long_running { "info" } else { "warn" });
}
