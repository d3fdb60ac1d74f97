//! The client's connection cache against real mTLS servers: keep-alive reuse, peers that close
//! kept connections, a restarted peer, HTTP/2-only peers, and the verified peer identity every
//! response carries.

mod common;

use common::Pki;
use http_body_util::Full;
use std::sync::Arc;
use std::time::Duration;
use toolmesh_core::client::{HttpsClient, PeerIdentity};
use toolmesh_core::server::{text_response, HttpsServer};
use toolmesh_core::tls::Identity;

/// Answers with the client's port, so a test sees which connection carried a request; closes
/// the connection after each answer when `close` is set.
async fn serve(identity: &Arc<Identity>, listener: tokio::net::TcpListener, alpn: &[&[u8]], close: bool) -> HttpsServer {
    let mut tls = (*identity.server_config().unwrap()).clone();
    tls.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    HttpsServer::spawn(listener, Arc::new(tls), move |_, peer| async move {
        let mut response = text_response(http::StatusCode::OK, peer.remote.port().to_string());
        if close {
            response.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
        }
        response
    })
    .unwrap()
}

async fn listener() -> tokio::net::TcpListener {
    tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()
}

/// The port the server saw the request come from.
async fn port(client: &HttpsClient, addr: std::net::SocketAddr) -> String {
    let request = http::Request::post(format!("https://{addr}/mcp")).body(Full::default()).unwrap();
    let response = client.send(request).await.unwrap_or_else(|e| panic!("request failed: {e:?}"));
    assert_eq!(response.status(), 200);
    String::from_utf8(response.into_body().to_vec()).unwrap()
}

#[tokio::test]
async fn requests_reuse_a_kept_connection_and_concurrent_ones_open_more() {
    let pki = Pki::new();
    let server = serve(&pki.identity("server"), listener().await, &[b"http/1.1"], false).await;
    let client = HttpsClient::new(&pki.identity("client")).unwrap();
    let addr = server.local_addr();
    let first = port(&client, addr).await;
    assert_eq!(port(&client, addr).await, first);
    let concurrent = futures_util::future::join_all((0..4).map(|_| port(&client, addr))).await;
    let distinct: std::collections::HashSet<_> = concurrent.iter().collect();
    assert_eq!(distinct.len(), 4, "HTTP/1.1 carries one request at a time per connection: {concurrent:?}");
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_peer_that_closes_connections_or_restarts_loses_no_request() {
    let pki = Pki::new();
    let identity = pki.identity("server");
    let closing = serve(&identity, listener().await, &[b"http/1.1"], true).await;
    let client = HttpsClient::new(&pki.identity("client")).unwrap();
    let ports: Vec<String> = futures_util::future::join_all((0..3).map(|_| port(&client, closing.local_addr()))).await;
    for _ in 0..3 {
        assert!(!ports.contains(&port(&client, closing.local_addr()).await), "a closed connection was reused");
    }
    closing.shutdown(Duration::from_secs(1)).await;

    // Kept connections to a peer that restarts on the same port are dead; the next request
    // goes on a new one.
    let first = listener().await;
    let addr = first.local_addr().unwrap();
    let server = serve(&identity, first, &[b"http/1.1"], false).await;
    let before = port(&client, addr).await;
    server.shutdown(Duration::from_millis(100)).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let rebound = loop {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => break listener,
            Err(e) => {
                assert!(std::time::Instant::now() < deadline, "{addr} was not free 5 s after the server shut down: {e}");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    let restarted = serve(&identity, rebound, &[b"http/1.1"], false).await;
    assert_ne!(port(&client, addr).await, before);
    restarted.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn an_http2_peer_gets_every_request_on_one_connection() {
    let pki = Pki::new();
    let server = serve(&pki.identity("server"), listener().await, &[b"h2"], false).await;
    let client = HttpsClient::new(&pki.identity("client")).unwrap();
    let addr = server.local_addr();
    let first = port(&client, addr).await;
    let concurrent = futures_util::future::join_all((0..8).map(|_| port(&client, addr))).await;
    assert!(concurrent.iter().all(|p| *p == first), "{first} then {concurrent:?}");
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn every_response_names_the_identity_its_connection_verified() {
    let pki = Pki::new();
    let identity = pki.identity("billing");
    let client = HttpsClient::new(&pki.identity("client")).unwrap();
    for alpn in [b"http/1.1".as_slice(), b"h2"] {
        let server = serve(&identity, listener().await, &[alpn], false).await;
        // A new connection, a kept one, and concurrent ones (more connections, or one shared).
        let request = || http::Request::post(format!("https://{}/mcp", server.local_addr())).body(Full::default()).unwrap();
        let mut requests = vec![client.send(request()).await, client.send(request()).await];
        requests.extend(futures_util::future::join_all((0..4).map(|_| client.send(request()))).await);
        for response in requests {
            let response = response.unwrap_or_else(|e| panic!("request failed: {e:?}"));
            assert_eq!(
                response.extensions().get::<PeerIdentity>().map(PeerIdentity::as_str),
                Some("spiffe://toolmesh.local/agent/billing"),
                "over {}",
                String::from_utf8_lossy(alpn)
            );
        }
        server.shutdown(Duration::from_secs(1)).await;
    }
}

/// In TLS 1.3 the server checks our certificate after our side of the handshake is done, so
/// its refusal races the first request on the new connection: whichever way the race goes, the
/// caller must hear that its certificate was refused, not that the connection closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_client_certificate_is_reported_as_such_every_time() {
    use toolmesh_ca::{spiffe_id, Role, DEFAULT_TRUST_DOMAIN};
    use toolmesh_core::tls::{VerifyMode, VerifyPolicy};
    let pki = Pki::new();
    let only_a = VerifyPolicy { mode: VerifyMode::Spiffe, allowed: vec![spiffe_id(DEFAULT_TRUST_DOMAIN, Role::Agent, "a")] };
    let identity = Identity::load_with(&pki.issue("server"), only_a).unwrap();
    for alpn in [&[b"http/1.1".as_slice()][..], &[b"h2"]] {
        let server = serve(&identity, listener().await, alpn, false).await;
        let client = HttpsClient::new(&pki.identity("c")).unwrap();
        for attempt in 0..50 {
            let request = http::Request::post(format!("https://{}/mcp", server.local_addr())).body(Full::default()).unwrap();
            let sent = tokio::time::timeout(Duration::from_secs(5), client.send(request)).await;
            let e = sent.unwrap_or_else(|_| panic!("{alpn:?} attempt {attempt}: send hung")).expect_err("the server allows only agent 'a'");
            assert_eq!(e.error.kind(), toolmesh_core::ErrorKind::PeerRejectedCertificate, "{alpn:?} attempt {attempt}: {}", e.error);
            assert!(e.error.message().contains("refused our client certificate"), "{alpn:?} attempt {attempt}: {}", e.error);
            assert!(!e.delivered, "a refused connection delivers nothing");
        }
        tokio::time::timeout(Duration::from_secs(5), server.shutdown(Duration::from_secs(1)))
            .await
            .unwrap_or_else(|_| panic!("{alpn:?}: shutdown hung"));
    }
}

/// A peer that restarts on the same port right after closing its connections: the kept
/// connection is dead though the client may not have processed the close yet, and the next
/// request must still go through, every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_right_after_the_peer_restarted_goes_on_a_new_connection() {
    let pki = Pki::new();
    let identity = pki.identity("server");
    let client = HttpsClient::new(&pki.identity("client")).unwrap();
    let mut server = serve(&identity, listener().await, &[b"http/1.1"], false).await;
    let addr = server.local_addr();
    for attempt in 0..50 {
        let before = port(&client, addr).await;
        server.shutdown(Duration::from_millis(100)).await;
        server = serve(&identity, tokio::net::TcpListener::bind(addr).await.unwrap(), &[b"http/1.1"], false).await;
        let request = http::Request::post(format!("https://{addr}/mcp")).body(Full::default()).unwrap();
        let response = client.send(request).await.unwrap_or_else(|e| panic!("attempt {attempt}: {e:?}"));
        assert_ne!(String::from_utf8(response.into_body().to_vec()).unwrap(), before, "attempt {attempt}: the dead connection carried it");
    }
    server.shutdown(Duration::from_secs(1)).await;
}

/// How many of this process's descriptors are TCP sockets connected to `port` on 127.0.0.1, the
/// client's side of its connections to that server (tests in this binary run side by side, so
/// the whole of /proc/self/fd would count their sockets too). A socket held through two
/// descriptors counts twice.
fn client_descriptors_to(port: u16) -> usize {
    // /proc/net/tcp: `sl local_address rem_address st ... uid timeout inode`, ports in hex.
    let tcp = std::fs::read_to_string("/proc/net/tcp").expect("Linux /proc/net/tcp");
    let to_port: std::collections::HashSet<String> = tcp
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let remote_port = u16::from_str_radix(fields.get(2)?.rsplit(':').next()?, 16).ok()?;
            let inode = *fields.get(9)?;
            (remote_port == port && inode != "0").then(|| format!("socket:[{inode}]"))
        })
        .collect();
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| to_port.contains(&target.to_string_lossy().into_owned()))
        .count()
}

/// Each kept connection costs the client one descriptor (not a second one to watch the socket
/// for the peer's close), and the descriptor closes when the peer closes the connection, while
/// the client (and its cache, which still holds the connection) lives on.
#[tokio::test]
async fn each_connection_holds_one_descriptor_until_it_ends() {
    const CONNECTIONS: usize = 64; // all kept idle: the cache keeps 64 per peer
    let pki = Pki::new();
    let server = serve(&pki.identity("server"), listener().await, &[b"http/1.1"], false).await;
    let client = HttpsClient::new(&pki.identity("client")).unwrap();
    let addr = server.local_addr();
    assert_eq!(client_descriptors_to(addr.port()), 0);
    let ports = futures_util::future::join_all((0..CONNECTIONS).map(|_| port(&client, addr))).await;
    let connections: std::collections::HashSet<_> = ports.iter().collect();
    assert_eq!(connections.len(), CONNECTIONS, "concurrent requests each open a connection");
    assert_eq!(client_descriptors_to(addr.port()), CONNECTIONS, "one descriptor per open connection");

    server.shutdown(Duration::from_secs(1)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while client_descriptors_to(addr.port()) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(client_descriptors_to(addr.port()), 0, "the peer closed every connection: their sockets must close with them");
    drop(client);
}

/// A peer that restarted while the client's thread was busy: the kept connection's task has not
/// run since, so only its socket shows the close, and checkout must look there (without reading)
/// rather than write the request into the dead connection. The peer runs on its own thread.
#[tokio::test]
async fn a_kept_connection_whose_peer_closed_while_the_client_was_busy_is_not_reused() {
    let pki = Pki::new();
    let identity = pki.identity("server");
    let (restart, restarts) = std::sync::mpsc::channel::<()>();
    let (tell_address, address) = std::sync::mpsc::channel();
    let peer = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let mut server = runtime.block_on(async { serve(&identity, listener().await, &[b"http/1.1"], false).await });
        let addr = server.local_addr();
        tell_address.send(addr).unwrap();
        while restarts.recv().is_ok() {
            server = runtime.block_on(async {
                server.shutdown(Duration::from_millis(100)).await;
                let restarted = serve(&identity, tokio::net::TcpListener::bind(addr).await.unwrap(), &[b"http/1.1"], false).await;
                // Let the close reach the client's socket.
                tokio::time::sleep(Duration::from_millis(20)).await;
                restarted
            });
            tell_address.send(addr).unwrap();
        }
        runtime.block_on(server.shutdown(Duration::from_secs(1)));
    });
    let addr = address.recv().unwrap();
    let client = HttpsClient::new(&pki.identity("client")).unwrap();
    for attempt in 0..5 {
        let before = port(&client, addr).await;
        restart.send(()).unwrap();
        // Blocks this (the client's only) thread, so that no connection task runs meanwhile.
        address.recv().unwrap();
        let request = http::Request::post(format!("https://{addr}/mcp")).body(Full::default()).unwrap();
        let response = client.send(request).await.unwrap_or_else(|e| panic!("attempt {attempt}: {e:?}"));
        let answered_from = String::from_utf8(response.into_body().to_vec()).unwrap();
        assert_ne!(answered_from, before, "attempt {attempt}: the dead connection carried it");
    }
    drop(restart);
    peer.join().unwrap();
}
