//! Row 5: mTLS handshakes per second per core, full and resumed, with core's rustls
//! configurations (`Identity::server_config` / `client_config`) and, beside them, plain rustls
//! configurations with the same certificates. Client and server run in memory on one thread,
//! each side's processing timed separately, so the figures are CPU per handshake.

use crate::common::*;
use crate::transport::TlsFilesArgs;
use rustls::client::Resumption;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, HandshakeKind, ServerConfig, ServerConnection};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// CPU time of this thread: what "per core" means, however busy the machine is.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a valid timespec for clock_gettime to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

use toolmesh_core::tls::{Identity, TlsFiles};

#[derive(clap::Args)]
pub struct HandshakeArgs {
    /// The server's identity.
    #[command(flatten)]
    server: TlsFilesArgs,
    /// The client's certificate and key (same CA).
    #[arg(long)]
    client_cert: PathBuf,
    #[arg(long)]
    client_key: PathBuf,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
}

#[derive(Serialize)]
struct Measured {
    round: usize,
    configs: &'static str,
    kind: &'static str,
    handshakes: u64,
    /// Handshakes per second of CPU: server side, client side, both sides together.
    server_per_core_s: f64,
    client_per_core_s: f64,
    pair_per_core_s: f64,
    resumed_fraction: f64,
}

fn move_bytes(from: &mut dyn FnMut(&mut Vec<u8>) -> bool, buf: &mut Vec<u8>) {
    buf.clear();
    while from(buf) {}
}

/// One handshake through memory; returns (server time, client time, resumed?).
fn handshake(client: &Arc<ClientConfig>, server: &Arc<ServerConfig>) -> Result<(Duration, Duration, bool), AnyError> {
    let mut buf = Vec::with_capacity(16 * 1024);
    let (mut server_time, mut client_time) = (Duration::ZERO, Duration::ZERO);
    let t = thread_cpu();
    let mut c = ClientConnection::new(client.clone(), ServerName::try_from("localhost")?)?;
    client_time += thread_cpu() - t;
    let t = thread_cpu();
    let mut s = ServerConnection::new(server.clone())?;
    server_time += thread_cpu() - t;
    for _ in 0..10 {
        // client -> server
        move_bytes(&mut |b| c.wants_write() && c.write_tls(b).map(|n| n > 0).unwrap_or(false), &mut buf);
        if !buf.is_empty() {
            let t = thread_cpu();
            let mut slice = &buf[..];
            while !slice.is_empty() {
                s.read_tls(&mut slice)?;
                s.process_new_packets()?;
            }
            server_time += thread_cpu() - t;
        }
        // server -> client
        move_bytes(&mut |b| s.wants_write() && s.write_tls(b).map(|n| n > 0).unwrap_or(false), &mut buf);
        if !buf.is_empty() {
            let t = thread_cpu();
            let mut slice = &buf[..];
            while !slice.is_empty() {
                c.read_tls(&mut slice)?;
                c.process_new_packets()?;
            }
            client_time += thread_cpu() - t;
        }
        if !c.is_handshaking() && !s.is_handshaking() && !s.wants_write() && !c.wants_write() {
            let resumed = c.handshake_kind() == Some(HandshakeKind::Resumed);
            return Ok((server_time, client_time, resumed));
        }
    }
    Err("the handshake did not finish in 10 flights".into())
}

pub fn handshakes(args: HandshakeArgs) -> Result<(), AnyError> {
    let ca = args.server.ca.clone();
    let server_identity = Identity::load(&TlsFiles { cert: args.server.cert.clone(), key: args.server.key.clone(), ca: ca.clone() })?;
    let client_identity = Identity::load(&TlsFiles { cert: args.client_cert.clone(), key: args.client_key.clone(), ca: ca.clone() })?;
    let alpn: &[&[u8]] = &[b"h2", b"http/1.1"];
    let core_server = server_identity.server_config()?;
    let core_client = client_identity.client_config()?;
    let plain_server = Arc::new(plain_server_config(&args.server.cert, &args.server.key, &ca, alpn)?);
    let plain_client = Arc::new(plain_client_config(&args.client_cert, &args.client_key, &ca, alpn)?);
    let no_resumption = |config: &Arc<ClientConfig>| {
        let mut c = (**config).clone();
        c.resumption = Resumption::disabled();
        Arc::new(c)
    };
    let variants: Vec<(&'static str, &'static str, Arc<ClientConfig>, Arc<ServerConfig>)> = vec![
        ("core", "full", no_resumption(&core_client), core_server.clone()),
        ("plain", "full", no_resumption(&plain_client), plain_server.clone()),
        ("core", "resumed", core_client.clone(), core_server.clone()),
        ("plain", "resumed", plain_client.clone(), plain_server.clone()),
    ];
    let mut results = Vec::new();
    for round in 0..args.rounds {
        for (configs, kind, client, server) in &variants {
            // A first handshake fills the resumption cache (and is not counted).
            handshake(client, server)?;
            let (mut server_time, mut client_time, mut n, mut resumed) = (Duration::ZERO, Duration::ZERO, 0u64, 0u64);
            let end = Instant::now() + Duration::from_secs_f64(args.seconds);
            while Instant::now() < end && n < 1_000_000 {
                let (s, c, r) = handshake(client, server)?;
                server_time += s;
                client_time += c;
                n += 1;
                resumed += u64::from(r);
            }
            let m = Measured {
                round,
                configs,
                kind,
                handshakes: n,
                server_per_core_s: n as f64 / server_time.as_secs_f64(),
                client_per_core_s: n as f64 / client_time.as_secs_f64(),
                pair_per_core_s: n as f64 / (server_time + client_time).as_secs_f64(),
                resumed_fraction: resumed as f64 / n as f64,
            };
            eprintln!(
                "handshakes round {round} {configs} {kind}: server {:.0}/core-s, client {:.0}/core-s, resumed {:.2}",
                m.server_per_core_s, m.client_per_core_s, m.resumed_fraction
            );
            results.push(m);
        }
    }
    print_json(&serde_json::json!({"runs": results}));
    Ok(())
}
