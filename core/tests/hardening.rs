//! Transport hardening of the mTLS listener (issue 12), against a real agent over real sockets:
//! slow and idle connections are cut by their timeouts while honest calls go on, the connection
//! cap and the per-peer share hold, a connection does not outlive its client certificate, and a
//! client that writes a too-large request before reading still reads the 413/431.

mod common;

use common::*;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::client::TlsStream;
use toolmesh_core::context::RequestContext;
use toolmesh_core::mcp::McpClient;
use toolmesh_core::tls::Identity;

/// Linux loopback answers every 127/8 address: attackers dial from here, honest callers from
/// 127.0.0.1, so the per-peer share tells them apart.
const ATTACKER: &str = "127.0.0.2";
const HONEST: &str = "127.0.0.1";

/// A client configuration that speaks HTTP/1.1 only, for requests written by hand.
fn http1(identity: &Arc<Identity>) -> Arc<rustls::ClientConfig> {
    let mut config = (*identity.client_config().unwrap()).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

async fn tcp_from(source: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source.parse().unwrap(), 0))?;
    socket.connect(to).await
}

async fn tls_from(source: &str, to: SocketAddr, config: &Arc<rustls::ClientConfig>) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = tcp_from(source, to).await?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    tokio_rustls::TlsConnector::from(config.clone()).connect(name, tcp).await
}

/// Reads until the server closes (EOF, a reset or a TLS error all count); what arrived and how
/// long it took, or `None` when it is still open after `patience`.
async fn until_closed(stream: &mut (impl AsyncRead + Unpin), patience: Duration) -> Option<(Vec<u8>, Duration)> {
    let started = Instant::now();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let reading = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(patience, reading).await.ok()?;
    Some((received, started.elapsed()))
}

fn status_of(response: &[u8]) -> Option<u16> {
    let line = response.split(|b| *b == b'\n').next()?;
    std::str::from_utf8(line).ok()?.split_whitespace().nth(1)?.parse().ok()
}

/// One response read by hand: the status and the body (by its content-length).
async fn read_response(stream: &mut (impl AsyncRead + Unpin)) -> std::io::Result<(u16, String)> {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&received[..end]).to_ascii_lowercase();
            let length: usize = head.lines().find_map(|l| l.strip_prefix("content-length:")).map_or(0, |v| v.trim().parse().unwrap());
            if received.len() >= end + 4 + length {
                let body = String::from_utf8_lossy(&received[end + 4..end + 4 + length]).into_owned();
                return Ok((status_of(&received).unwrap_or(0), body));
            }
        }
        match stream.read(&mut buf).await? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => received.extend_from_slice(&buf[..n]),
        }
    }
}

fn mcp_post(body: &str) -> Vec<u8> {
    format!(
        "POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

const ADD: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","arguments":{"a":2,"b":3}}}"#;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attack {
    /// Connects and never starts the TLS handshake.
    Silent,
    /// Completes the handshake, then sends a request head one byte at a time.
    TrickledHeaders,
    /// Completes the handshake and sends nothing.
    Idle,
    /// Sends a request head, then its body one byte at a time.
    TrickledBody,
}

struct Outcome {
    attack: Attack,
    /// Closed at accept: the listener or this peer's share was full.
    refused: bool,
    /// What the server answered before it closed, and when it closed.
    closed: Option<(Vec<u8>, Duration)>,
}

async fn attack(kind: Attack, target: SocketAddr, config: Arc<rustls::ClientConfig>, establishing: Arc<Semaphore>) -> Outcome {
    let patience = Duration::from_secs(15);
    let permit = establishing.acquire_owned().await.unwrap();
    if kind == Attack::Silent {
        let Ok(mut tcp) = tcp_from(ATTACKER, target).await else { return Outcome { attack: kind, refused: true, closed: None } };
        drop(permit);
        return Outcome { attack: kind, refused: false, closed: until_closed(&mut tcp, patience).await };
    }
    let Ok(tls) = tls_from(ATTACKER, target, &config).await else { return Outcome { attack: kind, refused: true, closed: None } };
    drop(permit);
    let (mut reader, mut writer) = tokio::io::split(tls);
    let (head, trickled): (&[u8], &[u8]) = match kind {
        Attack::TrickledHeaders => (b"", b"POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\nx-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
        Attack::TrickledBody => (
            b"POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\ncontent-length: 1000\r\n\r\n",
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"                                                     ",
        ),
        _ => (b"", b""),
    };
    let writing = tokio::spawn(async move {
        if writer.write_all(head).await.is_err() {
            return;
        }
        for byte in trickled {
            if writer.write_all(std::slice::from_ref(byte)).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        // Holds its half open: only the server may close this connection.
        std::future::pending::<()>().await;
    });
    let closed = until_closed(&mut reader, patience).await;
    writing.abort();
    Outcome { attack: kind, refused: false, closed }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_connections_are_cut_while_honest_calls_keep_working() {
    let pki = Pki::new();
    let agent = start_agent("target", &pki.issue("target"), standard_tools(), |c| {
        for (key, value) in [
            ("max_connections", "256"),
            ("max_connections_per_peer", "100"),
            ("handshake_timeout_ms", "2000"),
            ("header_timeout_ms", "1000"),
            ("body_timeout_ms", "1000"),
            ("idle_timeout_ms", "1500"),
        ] {
            c.set(key, value).unwrap();
        }
    })
    .await;
    let target = agent.local_addr();
    let attacker = http1(&pki.identity("attacker"));
    let honest = McpClient::new(&pki.identity("honest")).unwrap();

    let attacking = Arc::new(AtomicBool::new(true));
    let calls = {
        let (attacking, endpoint) = (attacking.clone(), agent.endpoint().to_owned());
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            while attacking.load(Ordering::Acquire) {
                let started = Instant::now();
                let sum = honest.call_tool(&endpoint, "add", &json!({"a": 2, "b": 3}), &RequestContext::default()).await;
                latencies.push(started.elapsed());
                assert_eq!(sum.map_err(|e| e.error.to_string()).unwrap(), json!(5), "an honest call failed during the attack");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            latencies
        })
    };

    // 300 connections from one address, a quarter of each kind, 16 opening at a time.
    let establishing = Arc::new(Semaphore::new(16));
    let kinds = [Attack::Silent, Attack::TrickledHeaders, Attack::Idle, Attack::TrickledBody];
    let attacks: Vec<_> = (0..300).map(|i| tokio::spawn(attack(kinds[i % 4], target, attacker.clone(), establishing.clone()))).collect();
    let mut outcomes = Vec::new();
    for attack in attacks {
        outcomes.push(attack.await.unwrap());
    }
    attacking.store(false, Ordering::Release);
    let mut latencies = calls.await.unwrap();

    let refused = outcomes.iter().filter(|o| o.refused).count();
    for kind in kinds {
        // The timeout that applies, plus the second a cut connection has to finish, plus slack
        // for a loaded machine.
        let timeout = match kind {
            Attack::Silent => 2000,
            Attack::TrickledHeaders | Attack::TrickledBody => 1000,
            Attack::Idle => 1500,
        };
        let bound = Duration::from_millis(timeout + 1000 + 3000);
        let served: Vec<&Outcome> = outcomes.iter().filter(|o| o.attack == kind && !o.refused).collect();
        let slowest = served.iter().map(|o| o.closed.as_ref().map(|(_, after)| *after)).max().flatten();
        println!("{kind:?}: {} not refused at accept, slowest closed after {slowest:?}", served.len());
        for outcome in &served {
            let (answer, after) = outcome.closed.as_ref().unwrap_or_else(|| panic!("a {kind:?} connection was still open after 15 s"));
            assert!(*after <= bound, "a {kind:?} connection was closed only after {after:?} (bound {bound:?})");
            if kind == Attack::TrickledBody {
                assert_eq!(status_of(answer), Some(408), "a slow body is answered 408: {}", String::from_utf8_lossy(answer));
            }
        }
    }
    latencies.sort();
    let slowest = latencies.last().copied().unwrap_or_default();
    println!(
        "{} honest calls during the attack: median {:?}, slowest {slowest:?}; {refused} attacker connections refused at accept",
        latencies.len(),
        latencies.get(latencies.len() / 2).copied().unwrap_or_default()
    );
    assert!(latencies.len() >= 5, "the honest caller kept calling throughout");
    assert!(slowest < Duration::from_secs(5), "an honest call took {slowest:?}");
    assert!(refused > 0, "300 connections from one address exceed its share of 100");
    agent.shutdown().await;
}

#[tokio::test]
async fn connections_past_the_cap_are_closed_at_once_and_accepting_goes_on() {
    let pki = Pki::new();
    let agent = start_agent("capped", &pki.issue("capped"), standard_tools(), |c| c.set("max_connections", "16").unwrap()).await;
    let config = http1(&pki.identity("client"));
    let mut held = Vec::new();
    for _ in 0..16 {
        let mut tls = tls_from(HONEST, agent.local_addr(), &config).await.unwrap();
        // A request served proves the server took the connection (in TLS 1.3 the client's
        // handshake ends before the server has checked its certificate).
        tls.write_all(&mcp_post(ADD)).await.unwrap();
        assert_eq!(read_response(&mut tls).await.unwrap().0, 200);
        held.push(tls);
    }
    for _ in 0..4 {
        let started = Instant::now();
        let extra = tokio::time::timeout(Duration::from_secs(5), tls_from(HONEST, agent.local_addr(), &config)).await;
        assert!(matches!(extra, Ok(Err(_))), "a connection past the cap of 16 must be closed at accept");
        assert!(started.elapsed() < Duration::from_secs(2), "refused promptly, not left to time out: {:?}", started.elapsed());
    }
    drop(held);
    // The held connections close; the listener took no harm and serves the next one.
    let client = McpClient::new(&pki.identity("later")).unwrap();
    let served = async || {
        client
            .call_tool(agent.endpoint(), "add", &json!({"a": 1, "b": 1}), &RequestContext::default())
            .await
            .map_err(|e| e.error.to_string())
    };
    let sum = eventually("accepting resumed after the held connections closed", Duration::from_secs(5), served).await;
    assert_eq!(sum, json!(2));
    agent.shutdown().await;
}

#[tokio::test]
async fn the_health_port_has_the_same_timeouts_and_a_small_cap() {
    let pki = Pki::new();
    let agent = start_agent("b", &pki.issue("b"), standard_tools(), |c| {
        c.set("health_port", "0").unwrap();
        c.set("idle_timeout_ms", "500").unwrap();
        c.set("header_timeout_ms", "500").unwrap();
    })
    .await;
    let health = agent.health_addr().unwrap();
    let mut idle = TcpStream::connect(health).await.unwrap();
    let mut slow = TcpStream::connect(health).await.unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nhost: x").await.unwrap();
    for (name, stream) in [("idle", &mut idle), ("slow headers", &mut slow)] {
        let (_, after) =
            until_closed(stream, Duration::from_secs(10)).await.unwrap_or_else(|| panic!("the {name} probe connection stayed open"));
        assert!(after < Duration::from_secs(4), "the {name} probe connection was closed only after {after:?}");
    }
    agent.shutdown().await;

    // Past its cap of 64 (the listener's own max_connections is larger), a probe is closed at once.
    let agent = start_agent("c", &pki.issue("c"), standard_tools(), |c| c.set("health_port", "0").unwrap()).await;
    let health = agent.health_addr().unwrap();
    let mut held = Vec::new();
    for _ in 0..64 {
        let mut probe = TcpStream::connect(health).await.unwrap();
        probe.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        assert_eq!(read_response(&mut probe).await.unwrap().0, 200);
        held.push(probe);
    }
    let mut extra = TcpStream::connect(health).await.unwrap();
    let (answer, _) = until_closed(&mut extra, Duration::from_secs(2)).await.expect("the 65th probe connection is closed at accept");
    assert!(answer.is_empty());
    agent.shutdown().await;
}

#[tokio::test]
async fn a_kept_connection_does_not_outlive_the_client_certificate() {
    let pki = Pki::new();
    let agent = start_agent("b", &pki.issue("b"), standard_tools(), |_| {}).await;
    let not_after = time::OffsetDateTime::now_utc() + time::Duration::seconds(3);
    let short_lived = pki.issue_with("short-lived", |r| r.not_after = not_after);
    let config = http1(&Identity::load(&short_lived).unwrap());
    let mut tls = tls_from(HONEST, agent.local_addr(), &config).await.unwrap();
    tls.write_all(&mcp_post(ADD)).await.unwrap();
    let (status, body) = read_response(&mut tls).await.unwrap();
    assert_eq!(status, 200, "{body}");
    // A control: a connection kept as long by a client whose certificate stays valid.
    let mut control = tls_from(HONEST, agent.local_addr(), &http1(&pki.identity("long-lived"))).await.unwrap();
    control.write_all(&mcp_post(ADD)).await.unwrap();
    assert_eq!(read_response(&mut control).await.unwrap().0, 200);

    // The certificate's last valid second passes (the wait is what is under test: a margin of
    // 1.5 s past it); the kept connection must not serve again.
    let remaining = (not_after - time::OffsetDateTime::now_utc()).whole_milliseconds().max(0) as u64;
    tokio::time::sleep(Duration::from_millis(remaining + 1500)).await;
    control.write_all(&mcp_post(ADD)).await.unwrap();
    let (status, body) = read_response(&mut control).await.expect("the control connection is still served");
    assert_eq!(status, 200, "the control connection (a valid certificate) is still served: {body}");
    let again = async {
        tls.write_all(&mcp_post(ADD)).await?;
        read_response(&mut tls).await
    };
    match tokio::time::timeout(Duration::from_secs(5), again).await {
        Ok(Ok((status, body))) => assert_ne!(status, 200, "an expired certificate was served on its kept connection: {body}"),
        Ok(Err(closed)) => println!("the connection was closed at expiry: {closed}"),
        Err(_) => panic!("no answer and no close after the certificate expired"),
    }
    // Closed first, so that the shutdown need not wait out its grace for them.
    drop((tls, control));
    agent.shutdown().await;
}

/// Writes all of `request` before reading, as simple HTTP/1.1 clients do, and returns the status.
async fn write_then_read(agent: SocketAddr, config: &Arc<rustls::ClientConfig>, request: &[u8]) -> Result<u16, String> {
    let mut tls = tls_from(HONEST, agent, config).await.map_err(|e| format!("connect: {e}"))?;
    tls.write_all(request).await.map_err(|e| format!("the server closed while the request was written: {e}"))?;
    tls.flush().await.map_err(|e| format!("flush: {e}"))?;
    let (received, _) = until_closed(&mut tls, Duration::from_secs(10)).await.ok_or("no close within 10 s")?;
    status_of(&received).ok_or_else(|| format!("no answer, {} bytes", received.len()))
}

#[tokio::test]
async fn a_client_writing_a_too_large_request_before_reading_gets_413_or_431() {
    let pki = Pki::new();
    let agent = start_agent("b", &pki.issue("b"), standard_tools(), |_| {}).await;
    let config = http1(&pki.identity("client"));

    // 8 MiB against the 4 MiB limit of the MCP endpoint.
    let body = vec![b' '; 8 * 1024 * 1024];
    let mut request = format!(
        "POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);
    for attempt in 0..3 {
        assert_eq!(write_then_read(agent.local_addr(), &config, &request).await, Ok(413), "attempt {attempt}");
    }

    // 4 MiB of headers, ten times what the server buffers for a request head: the client is
    // still writing when the 431 is sent.
    let mut request = b"POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\nx-big: ".to_vec();
    request.extend(std::iter::repeat_n(b'a', 4 * 1024 * 1024));
    request.extend_from_slice(b"\r\ncontent-length: 0\r\n\r\n");
    for attempt in 0..3 {
        assert_eq!(write_then_read(agent.local_addr(), &config, &request).await, Ok(431), "attempt {attempt}");
    }
    agent.shutdown().await;
}
