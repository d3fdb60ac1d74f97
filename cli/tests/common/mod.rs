//! Runs the real `toolmesh` binary: a development certificate set in a temporary directory, a
//! registry process, and one-shot commands with their output and exit code.
#![allow(dead_code)] // each test binary uses its own part of this module

// One harness for the registry's and the CLI's tests.
#[path = "../../../registry/tests/common/postgres.rs"]
pub mod postgres;

use std::borrow::BorrowMut;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long a registry process may take to print its ready line.
const STARTUP: Duration = Duration::from_secs(15);

/// A `toolmesh` command with no TOOLMESH_* settings inherited from the caller's environment.
pub fn toolmesh(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_toolmesh"));
    command.args(args);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("TOOLMESH_") {
            command.env_remove(name);
        }
    }
    command
}

/// A finished command.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Self {
        Run {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// Runs a command to completion (an owned one, or one built in place with `&mut`).
pub fn run(mut command: impl BorrowMut<Command>) -> Run {
    command.borrow_mut().stdin(Stdio::null()).output().expect("run toolmesh").into()
}

impl Run {
    pub fn success(self) -> Self {
        assert_eq!(self.code, Some(0), "expected success\nstdout: {}\nstderr: {}", self.stdout, self.stderr);
        self
    }

    /// Asserts the failure's exit code and its `toolmesh: error [CODE NAME]: ...` line.
    pub fn failure(self, exit_code: i32, error_name: &str, message_part: &str) -> Self {
        assert_eq!(self.code, Some(exit_code), "stdout: {}\nstderr: {}", self.stdout, self.stderr);
        let line = self.stderr.lines().find(|l| l.starts_with("toolmesh: error [")).unwrap_or_else(|| {
            panic!("no `toolmesh: error [..]` line in stderr: {}", self.stderr);
        });
        assert!(line.contains(&format!(" {error_name}]: ")), "expected {error_name}: {line}");
        assert!(self.stderr.contains(message_part), "expected {message_part:?} in: {}", self.stderr);
        self
    }
}

/// A policy that lets only `calc` provide `add`: operator-made state the store tests expect back.
pub const CALC_PROVIDES_ADD: &str = "\
default: deny
rules:
  - name: calc-provides-add
    phases: [provide]
    source: { agents: [calc] }
    target: { capabilities: [add] }
";

/// A development certificate set made by `toolmesh certs init`.
pub struct Certs {
    pub dir: tempfile::TempDir,
}

impl Certs {
    pub fn init(agents: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().to_str().expect("utf-8 path").to_owned();
        run(toolmesh(&["certs", "init", "--dir", &path, "--agents", agents])).success();
        Certs { dir }
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// The TLS flags for the identity `name` (its certificate, its key and the mesh CA).
    pub fn tls_args(&self, name: &str) -> Vec<String> {
        self.tls_args_with(&self.path(&format!("{name}.pem")), &self.path(&format!("{name}.key")), &self.path("ca.pem"))
    }

    /// The configuration of an in-process agent `name` with its certificate, registered at
    /// `registry_url`.
    pub fn agent_config(&self, name: &str, registry_url: &str) -> toolmesh_core::config::AgentConfig {
        let mut config = toolmesh_core::config::AgentConfig::from_env(name).expect("agent config");
        for (key, value) in [
            ("registry_url", registry_url.to_owned()),
            ("tls_cert", self.path(&format!("{name}.pem")).display().to_string()),
            ("tls_key", self.path(&format!("{name}.key")).display().to_string()),
            ("tls_ca", self.path("ca.pem").display().to_string()),
        ] {
            config.set(key, &value).expect("agent option");
        }
        config
    }

    pub fn tls_args_with(&self, cert: &Path, key: &Path, ca: &Path) -> Vec<String> {
        [("--tls-cert", cert), ("--tls-key", key), ("--tls-ca", ca)]
            .into_iter()
            .flat_map(|(flag, path)| [flag.to_owned(), path.display().to_string()])
            .collect()
    }
}

/// A `toolmesh registry` process; killed on drop unless stopped.
pub struct RegistryProcess {
    child: Child,
    pub url: String,
    stderr_lines: mpsc::Receiver<String>,
}

impl RegistryProcess {
    /// Starts the registry on a free port with the `registry` identity of `certs`.
    pub fn start(certs: &Certs, extra: &[&str]) -> Self {
        let mut command = toolmesh(&["registry", "--port", "0"]);
        command.args(certs.tls_args("registry")).args(extra);
        Self::spawn(command)
    }

    /// Runs `command` (a `toolmesh registry ...`) and waits for its ready line.
    pub fn spawn(command: Command) -> Self {
        Self::try_spawn(command).unwrap_or_else(|logs| panic!("{logs}"))
    }

    /// [`RegistryProcess::spawn`], answering what the registry logged when it printed no ready line.
    pub fn try_spawn(mut command: Command) -> Result<Self, String> {
        let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn registry");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let (ready_tx, ready) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = ready_tx.send(line);
            }
        });
        let (stderr_tx, stderr_lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = stderr_tx.send(line);
            }
        });
        let Ok(line) = ready.recv_timeout(STARTUP) else {
            let _ = child.kill();
            let _ = child.wait();
            // The process is gone: its stderr pipe closes and the reader thread sends the rest.
            let logs: Vec<String> = std::iter::from_fn(|| stderr_lines.recv_timeout(Duration::from_secs(2)).ok()).collect();
            return Err(format!("the registry printed no ready line within {STARTUP:?}; stderr:\n{}", logs.join("\n")));
        };
        let url =
            line.strip_prefix("toolmesh registry listening on ").unwrap_or_else(|| panic!("unexpected ready line: {line}")).to_owned();
        Ok(RegistryProcess { child, url, stderr_lines })
    }

    /// Sends SIGTERM and returns the exit code and everything the registry logged.
    pub fn terminate(mut self) -> (Option<i32>, String) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().expect("run kill");
        assert!(sent.success(), "kill -TERM {pid} failed");
        let deadline = std::time::Instant::now() + STARTUP;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for registry") {
                break status;
            }
            assert!(std::time::Instant::now() < deadline, "the registry did not stop after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        };
        // Give the reader thread the last lines (the pipe is closed once the process exited).
        let mut logs = Vec::new();
        while let Ok(line) = self.stderr_lines.recv_timeout(Duration::from_secs(2)) {
            logs.push(line);
        }
        (status.code(), logs.join("\n"))
    }
}

impl Drop for RegistryProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `condition` holds, polling it; panics saying `what` did not happen if it does not
/// within `within` (so a regression fails instead of hanging the run).
pub async fn wait_until(what: &str, within: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + within;
    while !condition() {
        assert!(std::time::Instant::now() < deadline, "waited {within:?}, yet never: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// An in-process agent `name` (its certificate from `certs`) that knows the registries
/// `registries` (a comma-separated list) and heartbeats every `heartbeat`, serving `tools`, each
/// of which answers `a + b`; started and registered.
pub async fn adding_agent(
    certs: &Certs,
    name: &str,
    registries: &str,
    heartbeat: Duration,
    tools: serde_json::Value,
) -> toolmesh_core::agent::Agent {
    use toolmesh_core::host::{Completion, FnHandler, ToolInvocation};
    let mut config = toolmesh_core::config::AgentConfig::from_env(name).expect("config");
    let (cert, key, ca) = (certs.path(&format!("{name}.pem")), certs.path(&format!("{name}.key")), certs.path("ca.pem"));
    for (k, v) in [
        ("tls_cert", cert.to_str().expect("utf-8")),
        ("tls_key", key.to_str().expect("utf-8")),
        ("tls_ca", ca.to_str().expect("utf-8")),
        ("registry_url", registries),
        ("heartbeat_interval_ms", &heartbeat.as_millis().to_string()),
    ] {
        config.set(k, v).expect("option");
    }
    let tools = serde_json::from_value(tools).expect("tools");
    let handler = FnHandler(|inv: ToolInvocation, done: Completion| {
        done.ok(serde_json::json!(inv.arguments["a"].as_i64().unwrap_or(0) + inv.arguments["b"].as_i64().unwrap_or(0)))
    });
    let agent = toolmesh_core::agent::Agent::start(config, tools, std::sync::Arc::new(handler)).await.expect("agent starts");
    assert!(agent.wait_registered(Duration::from_secs(5)).await, "{name} registered");
    agent
}
