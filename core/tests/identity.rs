//! Verification modes, certificate rotation under load, and the health listener.

mod common;

use common::*;
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use toolmesh_core::context::RequestContext;
use toolmesh_core::mcp::McpClient;
use toolmesh_core::pki::{spiffe_id, write_pair, LeafRequest, Role, DEFAULT_TRUST_DOMAIN};
use toolmesh_core::tls::{Identity, VerifyMode, VerifyPolicy};
use toolmesh_core::ErrorKind;
use rustls::pki_types::pem::PemObject;

fn client_with(pki: &Pki, name: &str, policy: VerifyPolicy) -> McpClient {
    McpClient::new(&Identity::load_with(&pki.issue(name), policy).unwrap()).unwrap()
}

async fn add(client: &McpClient, endpoint: &str) -> Result<serde_json::Value, toolmesh_core::Error> {
    client.call_tool(endpoint, "add", json!({"a": 1, "b": 2}), &RequestContext::default()).await.map_err(|e| e.error)
}

#[tokio::test]
async fn spiffe_mode_checks_the_identity_instead_of_the_host_name() {
    let pki = Pki::new();
    // Reached at 127.0.0.1, but the certificate names only a DNS name and its SPIFFE ID.
    let files = pki.issue_with("b", |r| {
        r.dns_names = vec!["b.internal.example".into()];
        r.ip_addresses.clear();
    });
    let agent = start_agent("b", &files, standard_tools(), |_| {}).await;
    let ep = agent.endpoint();

    let hostname = client_with(&pki, "h", VerifyPolicy::default());
    assert_eq!(add(&hostname, ep).await.unwrap_err().kind(), ErrorKind::PeerHostnameMismatch);

    let spiffe = client_with(&pki, "s", VerifyPolicy { mode: VerifyMode::Spiffe, allowed: vec![] });
    assert_eq!(add(&spiffe, ep).await.unwrap(), json!(3));

    let exact = VerifyPolicy { mode: VerifyMode::Spiffe, allowed: vec![spiffe_id(DEFAULT_TRUST_DOMAIN, Role::Agent, "b")] };
    assert_eq!(add(&client_with(&pki, "x", exact), ep).await.unwrap(), json!(3));

    let elsewhere = VerifyPolicy { mode: VerifyMode::Spiffe, allowed: vec!["spiffe://other.example".into()] };
    let e = add(&client_with(&pki, "y", elsewhere), ep).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PeerIdentityNotAllowed, "{e}");
    assert!(e.message().contains("spiffe://toolmesh.local/agent/b"), "{e}");

    // Without a URI SAN there is nothing to check in SPIFFE mode.
    let anonymous = pki.issue_with("anon", |r| r.uris.clear());
    let anon_agent = start_agent("anon", &anonymous, standard_tools(), |_| {}).await;
    let e = add(&spiffe, anon_agent.endpoint()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PeerIdentityNotAllowed, "{e}");
    assert!(e.message().contains("no spiffe:// URI SAN"), "{e}");
    agent.shutdown().await;
    anon_agent.shutdown().await;
}

#[tokio::test]
async fn allowed_identities_limit_who_may_call() {
    let pki = Pki::new();
    let agent = start_agent("b", &pki.issue("b"), standard_tools(), |c| {
        c.set("tls_allowed_ids", "spiffe://toolmesh.local/agent/a").unwrap();
    })
    .await;
    let a = client_with(&pki, "a", VerifyPolicy::default());
    assert_eq!(add(&a, agent.endpoint()).await.unwrap(), json!(3));
    let e = add(&client_with(&pki, "c", VerifyPolicy::default()), agent.endpoint()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PeerRejectedCertificate, "{e}");
    agent.shutdown().await;
}

/// The certificate the server presents on a fresh connection.
async fn presented_certificate(addr: std::net::SocketAddr, client: &Arc<Identity>) -> Vec<u8> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = tokio_rustls::TlsConnector::from(client.client_config().unwrap()).connect(name, tcp).await.unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_certificate_is_used_without_a_restart_and_no_call_fails() {
    let pki = Pki::new();
    let files = pki.issue("b");
    let agent = start_agent("b", &files, standard_tools(), |c| c.set("tls_reload_interval_ms", "50").unwrap()).await;
    let operator = pki.identity("operator");
    let before = presented_certificate(agent.local_addr(), &operator).await;

    let (ok, failed, stop) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (ok, failed, stop) = (ok.clone(), failed.clone(), stop.clone());
        let endpoint = agent.endpoint().to_owned();
        let operator = operator.clone();
        load.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                // A new pool now and then, so handshakes happen throughout the rotation.
                let client = McpClient::new(&operator).unwrap();
                for _ in 0..5 {
                    match add(&client, &endpoint).await {
                        Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            eprintln!("call failed during rotation: {e}");
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                    n += 1;
                }
            }
            n
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let renewed = pki.ca.issue(&LeafRequest::new("b", Role::Agent, DEFAULT_TRUST_DOMAIN, 30)).unwrap();
    write_pair(files.cert.parent().unwrap(), "b", &renewed, true).unwrap();

    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut after = presented_certificate(agent.local_addr(), &operator).await;
    while after == before {
        assert!(std::time::Instant::now() < deadline, "the rotated certificate was never presented");
        tokio::time::sleep(Duration::from_millis(25)).await;
        after = presented_certificate(agent.local_addr(), &operator).await;
    }
    let pem_der = rustls::pki_types::CertificateDer::from_pem_slice(renewed.cert_pem.as_bytes()).unwrap();
    assert_eq!(after, pem_der.to_vec());
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0, "calls failed across the rotation");
    assert!(ok.load(Ordering::Relaxed) > 20, "too little load to prove anything: {}", ok.load(Ordering::Relaxed));
    agent.shutdown().await;
}

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut text = String::new();
    tcp.read_to_string(&mut text).await.unwrap();
    let status = text[9..12].parse().unwrap();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(serde_json::Value::Null))
}

#[tokio::test]
async fn health_and_readiness_are_served_in_plain_http_on_loopback() {
    let pki = Pki::new();
    let standalone = start_agent("a", &pki.issue("a"), standard_tools(), |_| {}).await;
    let health = standalone.health_addr().unwrap();
    assert!(health.ip().is_loopback());
    assert_ne!(health.port(), standalone.local_addr().port());
    assert_eq!(get(health, "/health").await, (200, json!({"status": "ok"})));
    assert_eq!(get(health, "/ready").await, (200, json!({"status": "ready"})));
    assert_eq!(get(health, "/nope").await.0, 404);

    // Registered nowhere yet (the registry is down): alive, but not ready.
    let dead_registry = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let waiting = start_agent("w", &pki.issue("w"), standard_tools(), |c| {
        c.set("registry_url", &format!("https://{dead_registry}")).unwrap();
    })
    .await;
    let (status, body) = get(waiting.health_addr().unwrap(), "/ready").await;
    assert_eq!((status, body["reason"].clone()), (503, json!("not registered with the registry yet")));
    assert_eq!(get(waiting.health_addr().unwrap(), "/health").await.0, 200);

    // A fixed mTLS port puts health on port + 1000; 'off' turns it off.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let fixed = start_agent("f", &pki.issue("f"), standard_tools(), |c| c.set("port", &port.to_string()).unwrap()).await;
    assert_eq!(fixed.health_addr().unwrap().port(), port + 1000);
    let off = start_agent("o", &pki.issue("o"), standard_tools(), |c| c.set("health_port", "off").unwrap()).await;
    assert!(off.health_addr().is_none());
    for agent in [standalone, waiting, fixed, off] {
        agent.shutdown().await;
    }
}

#[test]
fn an_expired_or_not_yet_valid_certificate_is_refused_at_load_saying_which_and_when() {
    let pki = Pki::new();
    let e = Identity::load(&pki.issue_expired("old")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::CertificateExpired, "{e}");
    assert!(e.message().contains("expired at 20"), "says when: {e}");
    let future = pki.issue_with("early", |r| {
        r.not_before = time::OffsetDateTime::now_utc() + time::Duration::days(2);
        r.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(9);
    });
    let e = Identity::load(&future).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::CertificateExpired, "{e}");
    assert!(e.message().contains("is not valid until 20"), "says when: {e}");
}

#[tokio::test]
async fn peers_without_the_tls_key_usages_are_refused() {
    let pki = Pki::new();
    // Signed by the mesh CA, but for code signing only: neither serverAuth nor clientAuth.
    let signing_only = |r: &mut LeafRequest| r.extended_key_usages = vec![toolmesh_core::pki::ExtendedKeyUsagePurpose::CodeSigning];
    let agent = start_agent("b", &pki.issue("b"), standard_tools(), |_| {}).await;
    let files = pki.issue_with("codesigner", signing_only);
    let e = match Identity::load(&files) {
        Err(e) => e,
        Ok(identity) => add(&McpClient::new(&identity).unwrap(), agent.endpoint()).await.unwrap_err(),
    };
    assert!(
        matches!(e.kind(), ErrorKind::CertificateUntrusted | ErrorKind::PeerRejectedCertificate),
        "a client certificate without clientAuth is refused: {e}"
    );

    let server_files = pki.issue_with("noserver", signing_only);
    let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    // A server presenting it: the client refuses the handshake and says why.
    let server_identity = {
        let cert = read(&server_files.cert);
        let key = read(&server_files.key);
        // Build the server side by hand: the identity loader itself would refuse this certificate.
        let chain = rustls::pki_types::CertificateDer::pem_slice_iter(cert.as_bytes()).collect::<Result<Vec<_>, _>>().unwrap();
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
        rustls::ServerConfig::builder_with_provider(toolmesh_core::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap()
    };
    tokio::spawn(async move {
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_identity));
        while let Ok((tcp, _)) = server.accept().await {
            let _ = acceptor.accept(tcp).await;
        }
    });
    let client = McpClient::new(&pki.identity("caller")).unwrap();
    let e = add(&client, &format!("https://{addr}/mcp")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PeerCertificateUntrusted, "{e}");
    assert!(e.message().contains("extended key usage"), "{e}");
    agent.shutdown().await;
}
