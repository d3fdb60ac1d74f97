//! Logs for every process the core runs in: the CLI and each language binding install the same
//! subscriber, so `TOOLMESH_LOG=debug` shows the same lines from a Python, Node, Java or C agent.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Read first; `RUST_LOG` only when it is unset, so a host program's own `RUST_LOG` can be
/// overridden for the mesh alone.
pub const LOG_ENV: &str = "TOOLMESH_LOG";

/// Warnings from the toolmesh crates (a failing heartbeat, a renewal that cannot happen) and
/// errors from everything else: visible in production, silent when all is well.
pub const DEFAULT_FILTER: &str = "error,toolmesh=warn";

/// Installs the stderr subscriber with [`DEFAULT_FILTER`] unless `TOOLMESH_LOG` or `RUST_LOG`
/// says otherwise. Safe to call more than once: a process keeps the first subscriber installed
/// (its own, or one the host program set up).
pub fn init_from_env() {
    init_with_default(DEFAULT_FILTER);
}

/// As [`init_from_env`] with another default filter (the CLI's registry logs at `info`).
/// Logs go to stderr (stdout carries results), coloured only when stderr is a terminal.
pub fn init_with_default(default: &str) {
    let chosen = [LOG_ENV, "RUST_LOG"].into_iter().find_map(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()));
    // Lossy: a mistyped directive is dropped (and reported on stderr by the filter) rather than
    // silencing every log or stopping the agent.
    let filter = EnvFilter::builder().parse_lossy(chosen.as_deref().unwrap_or(default));
    let colored = std::io::stderr().is_terminal();
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colored).try_init();
}

/// The current time as RFC 3339 in UTC, as audit events carry it.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_else(|_| "unknown".to_owned())
}
