//! What every benchmark shares: plain rustls configurations (the baselines' and the load
//! generator's, independent of toolmesh's), the closed-loop driver, latency statistics and
//! process accounting from /proc.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use serde::Serialize;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

pub type AnyError = Box<dyn std::error::Error + Send + Sync>;

pub fn ring() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, AnyError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate", path.display()).into());
    }
    Ok(certs)
}

pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, AnyError> {
    Ok(PrivateKeyDer::from_pem_file(path).map_err(|e| format!("{}: {e}", path.display()))?)
}

fn roots(ca: &Path) -> Result<Arc<RootCertStore>, AnyError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(ca)? {
        roots.add(cert)?;
    }
    Ok(Arc::new(roots))
}

/// A plain rustls client: verifies the server's chain and name against `ca`, presents `cert`.
pub fn plain_client_config(cert: &Path, key: &Path, ca: &Path, alpn: &[&[u8]]) -> Result<ClientConfig, AnyError> {
    let mut config = ClientConfig::builder_with_provider(ring())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(ca)?)
        .with_client_auth_cert(read_certs(cert)?, read_key(key)?)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// A plain rustls server that requires a client certificate chaining to `ca`.
pub fn plain_server_config(cert: &Path, key: &Path, ca: &Path, alpn: &[&[u8]]) -> Result<ServerConfig, AnyError> {
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(roots(ca)?, ring()).build()?;
    let mut config = ServerConfig::builder_with_provider(ring())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(read_certs(cert)?, read_key(key)?)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// Latency and throughput of one measured run.
#[derive(Debug, Clone, Serialize)]
pub struct RunStats {
    pub concurrency: usize,
    pub calls: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub seconds: f64,
    pub throughput: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

pub fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

pub fn summarize(concurrency: usize, mut micros: Vec<u64>, errors: u64, first_error: Option<String>, seconds: f64) -> RunStats {
    micros.sort_unstable();
    let calls = micros.len() as u64;
    let mean = if micros.is_empty() { f64::NAN } else { micros.iter().sum::<u64>() as f64 / micros.len() as f64 / 1000.0 };
    RunStats {
        concurrency,
        calls,
        errors,
        first_error,
        seconds,
        throughput: if seconds > 0.0 { calls as f64 / seconds } else { 0.0 },
        mean_ms: mean,
        p50_ms: percentile(&micros, 50.0),
        p90_ms: percentile(&micros, 90.0),
        p99_ms: percentile(&micros, 99.0),
        max_ms: micros.last().map_or(f64::NAN, |m| *m as f64 / 1000.0),
    }
}

/// One closed-loop worker: issues a call, waits for its answer, issues the next.
pub trait Caller: Send + 'static {
    fn call(&mut self) -> impl Future<Output = Result<(), String>> + Send;
}

/// Bounds of a closed-loop run: every loop stops at `warmup + duration` or after `max_calls`
/// calls (whichever comes first), and each call is abandoned after `call_timeout`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub warmup: Duration,
    pub duration: Duration,
    pub max_calls: u64,
    pub call_timeout: Duration,
}

/// Runs one worker per caller; only calls started after the warm-up are recorded.
pub async fn closed_loop<C: Caller>(callers: Vec<C>, limits: Limits) -> RunStats {
    let concurrency = callers.len();
    let start = Instant::now();
    let measure_from = start + limits.warmup;
    let end = measure_from + limits.duration;
    let issued = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for mut caller in callers {
        let issued = issued.clone();
        workers.push(tokio::spawn(async move {
            let mut micros = Vec::new();
            let (mut errors, mut first_error, mut last_done) = (0u64, None, measure_from);
            loop {
                let began = Instant::now();
                if began >= end {
                    break;
                }
                let measured = began >= measure_from;
                if measured && issued.fetch_add(1, Ordering::Relaxed) >= limits.max_calls {
                    break;
                }
                let outcome = match tokio::time::timeout(limits.call_timeout, caller.call()).await {
                    Ok(outcome) => outcome,
                    Err(_) => Err(format!("no answer within {:?}", limits.call_timeout)),
                };
                let done = Instant::now();
                if !measured {
                    if outcome.is_err() {
                        // A failing warm-up is not measured, but it is not hidden either.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    continue;
                }
                last_done = last_done.max(done);
                match outcome {
                    Ok(()) => micros.push((done - began).as_micros() as u64),
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert(e);
                        // Do not spin on a failing target.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            (micros, errors, first_error, last_done)
        }));
    }
    let (mut micros, mut errors, mut first_error, mut last_done) = (Vec::new(), 0, None, measure_from);
    for worker in workers {
        if let Ok((m, e, f, l)) = worker.await {
            micros.extend(m);
            errors += e;
            if first_error.is_none() {
                first_error = f;
            }
            last_done = last_done.max(l);
        }
    }
    let seconds = (last_done - measure_from).as_secs_f64();
    summarize(concurrency, micros, errors, first_error, seconds)
}

/// CPU time (user + system) a process has used so far, in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

pub fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// Resident set size of a process, in MiB.
pub fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Measures the CPU a process spends over a window, as a fraction of one core.
pub struct CpuWindow {
    pid: u32,
    cpu: f64,
    at: std::time::Instant,
}

impl CpuWindow {
    pub fn start(pid: u32) -> Option<Self> {
        Some(CpuWindow { pid, cpu: cpu_seconds(pid)?, at: std::time::Instant::now() })
    }

    /// Cores used since `start` (1.0 = one core busy all the time).
    pub fn cores(&self) -> Option<f64> {
        let used = cpu_seconds(self.pid)? - self.cpu;
        Some(used / self.at.elapsed().as_secs_f64())
    }
}

/// The system's 1-minute load average.
pub fn loadavg() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

pub fn print_json(value: &impl Serialize) {
    println!("{}", serde_json::to_string(value).expect("results serialize"));
}
