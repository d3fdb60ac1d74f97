//! Verification modes, certificate rotation under load, and the health listener.

mod common;

use common::*;
use rustls::pki_types::pem::PemObject;
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use toolmesh_ca::{spiffe_id, write_pair, CertificateAuthority, LeafRequest, Role, DEFAULT_TRUST_DOMAIN};
use toolmesh_core::context::RequestContext;
use toolmesh_core::mcp::McpClient;
use toolmesh_core::registry_api::{TrustAnchor, TrustBundle};
use toolmesh_core::registry_client::RegistryClient;
use toolmesh_core::tls::{Identity, VerifyMode, VerifyPolicy};
use toolmesh_core::ErrorKind;

fn client_with(pki: &Pki, name: &str, policy: VerifyPolicy) -> McpClient {
    McpClient::new(&Identity::load_with(&pki.issue(name), policy).unwrap()).unwrap()
}

async fn add(client: &McpClient, endpoint: &str) -> Result<serde_json::Value, toolmesh_core::Error> {
    client.call_tool(endpoint, "add", &json!({"a": 1, "b": 2}), &RequestContext::default()).await.map_err(|e| e.error)
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
    wait_until("10 calls answered before the rotation", Duration::from_secs(10), || ok.load(Ordering::Relaxed) >= 10).await;
    let renewed = pki.ca.issue(&LeafRequest::new("b", Role::Agent, DEFAULT_TRUST_DOMAIN, 30)).unwrap();
    write_pair(files.cert.parent().unwrap(), "b", &renewed, true).unwrap();

    let after = eventually("the rotated certificate was presented", Duration::from_secs(5), async || {
        let presented = presented_certificate(agent.local_addr(), &operator).await;
        if presented == before {
            Err("the old one is".to_owned())
        } else {
            Ok(presented)
        }
    })
    .await;
    let pem_der = rustls::pki_types::CertificateDer::from_pem_slice(renewed.cert_pem.as_bytes()).unwrap();
    assert_eq!(after, pem_der.to_vec());
    let at_rotation = ok.load(Ordering::Relaxed);
    wait_until("20 more calls answered after the rotation", Duration::from_secs(10), || ok.load(Ordering::Relaxed) >= at_rotation + 20)
        .await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0, "calls failed across the rotation");
    assert!(ok.load(Ordering::Relaxed) > 20, "too little load to prove anything: {}", ok.load(Ordering::Relaxed));
    agent.shutdown().await;
}

/// A server that answers with the fingerprint of the client certificate and the client's port,
/// verifying open connections' peers again when its trust anchors change.
async fn who_is_calling(identity: &Arc<Identity>) -> toolmesh_core::server::HttpsServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    toolmesh_core::server::HttpsServer::spawn_checked(listener, identity.server_config().unwrap(), identity.clone(), |_, peer| async move {
        let seen = format!("{} {}", toolmesh_ca::fingerprint(&peer.chain[0]), peer.remote.port());
        toolmesh_core::server::text_response(http::StatusCode::OK, seen)
    })
    .unwrap()
}

async fn get_text(client: &toolmesh_core::client::HttpsClient, url: &str) -> (u16, String) {
    let request = http::Request::get(url).body(http_body_util::Full::default()).unwrap();
    let response = client.send(request).await.unwrap();
    (response.status().as_u16(), String::from_utf8(response.into_body().to_vec()).unwrap())
}

#[tokio::test]
async fn a_resumed_tls_session_does_not_let_a_peer_of_a_removed_ca_back_in() {
    let pki = Pki::new();
    let partner = CertificateAuthority::generate("partner CA", 30).unwrap();
    let ours = pki.identity("server");
    ours.replace_trust_bundle(&bundle(&[], &[("partner", &partner)])).unwrap();
    let server = who_is_calling(&ours).await;
    let theirs = partner.issue(&LeafRequest::new("theirs", Role::Agent, "partner", 1)).unwrap();
    let theirs = Identity::from_pem(&theirs.cert_pem, &theirs.key_pem, &format!("{}{}", partner.cert_pem(), pki.ca.cert_pem())).unwrap();
    // Two pools over one TLS configuration: the second connection resumes the first's session.
    let tls = theirs.client_config().unwrap();
    let url = format!("https://{}/", server.local_addr());
    assert_eq!(get_text(&toolmesh_core::client::HttpsClient::with_tls(tls.clone()), &url).await.0, 200);

    ours.replace_trust_bundle(&bundle(&[], &[])).unwrap();
    let (status, text) = get_text(&toolmesh_core::client::HttpsClient::with_tls(tls), &url).await;
    assert_eq!(status, 403, "a resumed session skipped the new trust anchors: {text}");
    assert!(text.contains("no longer verifies against the mesh trust bundle"), "{text}");
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_renewed_client_certificate_is_presented_on_the_next_call_and_old_connections_are_retired() {
    let pki = Pki::new();
    let server = who_is_calling(&pki.identity("server")).await;
    let issue = || pki.ca.issue(&LeafRequest::new("client", Role::Agent, DEFAULT_TRUST_DOMAIN, 1)).unwrap();
    let (first, renewed) = (issue(), issue());
    let identity = Identity::from_pem(&first.cert_pem, &first.key_pem, pki.ca.cert_pem()).unwrap();
    let client = toolmesh_core::client::HttpsClient::new(&identity).unwrap();
    let url = format!("https://{}/", server.local_addr());
    let seen = || async { get_text(&client, &url).await.1 };
    let der = |pem: &str| toolmesh_ca::fingerprint(&rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap());

    let before = seen().await;
    assert!(before.starts_with(&der(&first.cert_pem)), "{before}");
    assert_eq!(seen().await, before, "the connection is reused while the certificate stays");
    identity.replace_pem(&renewed.cert_pem, &renewed.key_pem, pki.ca.cert_pem()).unwrap();
    let after = seen().await;
    assert!(after.starts_with(&der(&renewed.cert_pem)), "the old certificate was presented after the renewal: {after} (before: {before})");
    assert_ne!(after.split(' ').nth(1), before.split(' ').nth(1), "a new connection");
    // A new trust bundle alone keeps the connections: only our certificate retires them.
    identity.replace_trust_bundle(&bundle(&[&pki.ca], &[])).unwrap();
    assert_eq!(seen().await, after);
    server.shutdown(Duration::from_secs(1)).await;
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
    let signing_only = |r: &mut LeafRequest| r.extended_key_usages = vec![toolmesh_ca::ExtendedKeyUsagePurpose::CodeSigning];
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

// Rotation under load, seen from a connection that was open before it.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_opened_before_a_servers_rotation_is_still_used_after_it_and_no_call_fails() {
    let pki = Pki::new();
    let files = pki.issue("server");
    let identity = Identity::load(&files).unwrap();
    let reloader = identity.spawn_reloader(Duration::from_millis(50));
    let server = who_is_calling(&identity).await;
    let url = format!("https://{}/", server.local_addr());
    let caller = pki.identity("caller");
    let before = presented_certificate(server.local_addr(), &caller).await;

    // A client that keeps its connection, calling throughout; it records the port the server saw.
    let kept = toolmesh_core::client::HttpsClient::new(&caller).unwrap();
    let (ports, failed, stop) =
        (Arc::new(std::sync::Mutex::new(Vec::new())), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
    let load = {
        let (ports, failed, stop, url) = (ports.clone(), failed.clone(), stop.clone(), url.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let request = http::Request::get(&url).body(http_body_util::Full::default()).unwrap();
                match kept.send(request).await {
                    Ok(answer) => {
                        let seen = String::from_utf8(answer.into_body().to_vec()).unwrap();
                        ports.lock().unwrap().push(seen.split(' ').nth(1).unwrap().to_owned());
                    }
                    Err(e) => {
                        eprintln!("call failed during the rotation: {}", e.error);
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    wait_until("6 calls answered before the rotation", Duration::from_secs(10), || ports.lock().unwrap().len() > 5).await;
    let calls_before = ports.lock().unwrap().len();
    let renewed = pki.ca.issue(&LeafRequest::new("server", Role::Agent, DEFAULT_TRUST_DOMAIN, 30)).unwrap();
    write_pair(files.cert.parent().unwrap(), "server", &renewed, true).unwrap();

    eventually("the rotated certificate was presented", Duration::from_secs(5), async || {
        if presented_certificate(server.local_addr(), &caller).await == before {
            Err("the old one is".to_owned())
        } else {
            Ok(())
        }
    })
    .await;
    let calls_at_rotation = ports.lock().unwrap().len();
    wait_until("6 more calls answered after the rotation", Duration::from_secs(10), || ports.lock().unwrap().len() > calls_at_rotation + 5)
        .await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    let ports = ports.lock().unwrap().clone();
    assert_eq!(failed.load(Ordering::Relaxed), 0, "calls failed across the rotation");
    assert!(
        calls_before > 5 && ports.len() > calls_at_rotation + 5,
        "too few calls on each side of the rotation: {calls_before}, {calls_at_rotation}, {}",
        ports.len()
    );
    let first = &ports[0];
    assert!(ports.iter().all(|p| p == first), "the connection opened before the rotation was replaced: ports {:?}", {
        let mut distinct = ports.clone();
        distinct.dedup();
        distinct
    });
    if let Some(reloader) = reloader {
        reloader.abort();
    }
    server.shutdown(Duration::from_secs(1)).await;
}

/// A distributed trust bundle as the registry builds it: mesh CAs, then entities (name, CA), each
/// entity vouching for the trust domain of its name.
fn bundle(mesh: &[&CertificateAuthority], entities: &[(&str, &CertificateAuthority)]) -> TrustBundle {
    let mut anchors: Vec<TrustAnchor> = mesh
        .iter()
        .map(|ca| TrustAnchor { ca_cert: ca.cert_pem().to_owned(), entity: None, trust_domains: vec![DEFAULT_TRUST_DOMAIN.to_owned()] })
        .collect();
    for (name, ca) in entities {
        anchors.push(TrustAnchor {
            ca_cert: ca.cert_pem().to_owned(),
            entity: Some((*name).to_owned()),
            trust_domains: vec![(*name).to_owned()],
        });
    }
    TrustBundle { version: 1, pem: anchors.iter().map(|a| a.ca_cert.as_str()).collect(), anchors }
}

/// An identity with a certificate from `ca` for `name` in `trust_domain` with `role`, trusting
/// `ca` and `trusted` (which its own certificate may not chain to).
fn identity_from(
    ca: &CertificateAuthority,
    name: &str,
    role: Role,
    trust_domain: &str,
    trusted: &[&CertificateAuthority],
    policy: VerifyPolicy,
) -> Arc<Identity> {
    let leaf = ca.issue(&LeafRequest::new(name, role, trust_domain, 1)).unwrap();
    let roots: String = std::iter::once(ca).chain(trusted.iter().copied()).map(|c| c.cert_pem()).collect();
    Identity::from_pem_with(&leaf.cert_pem, &leaf.key_pem, &roots, policy).unwrap()
}

/// A server that answers every request with an empty entity list: enough of a registry for
/// [`RegistryClient::list_entities`].
async fn fake_registry(identity: &Arc<Identity>) -> toolmesh_core::server::HttpsServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    toolmesh_core::server::HttpsServer::spawn(listener, identity.server_config().unwrap(), |_, _| async move {
        toolmesh_core::server::text_response(http::StatusCode::OK, r#"{"entities": []}"#.to_owned())
    })
    .unwrap()
}

fn spiffe_policy() -> VerifyPolicy {
    VerifyPolicy { mode: VerifyMode::Spiffe, allowed: vec![] }
}

#[tokio::test]
async fn only_the_mesh_ca_vouches_for_the_registry() {
    let mesh = CertificateAuthority::generate("test mesh CA", 30).unwrap();
    let partner = CertificateAuthority::generate("partner CA", 30).unwrap();
    let trusted = bundle(&[&mesh], &[("partner", &partner)]);
    let servers = [
        ("the mesh's registry", identity_from(&mesh, "registry", Role::Registry, DEFAULT_TRUST_DOMAIN, &[], VerifyPolicy::default()), None),
        // Every one of these names 127.0.0.1 (the address dialled) and chains to an anchor the agent trusts.
        (
            "a partner's registry",
            identity_from(&partner, "registry", Role::Registry, "partner", &[&mesh], VerifyPolicy::default()),
            Some((ErrorKind::PeerCertificateUntrusted, "is not the mesh's registry: its certificate chains to the CA of entity 'partner'")),
        ),
        // Refused before it could be taken for the registry: the partner's CA may not vouch for that ID at all.
        (
            "a partner claiming the mesh's registry ID",
            identity_from(&partner, "registry", Role::Registry, DEFAULT_TRUST_DOMAIN, &[&mesh], VerifyPolicy::default()),
            Some((ErrorKind::PeerIdentityNotAllowed, "chains to the CA of entity 'partner'")),
        ),
        (
            "a mesh agent",
            identity_from(&mesh, "calc", Role::Agent, DEFAULT_TRUST_DOMAIN, &[], VerifyPolicy::default()),
            Some((
                ErrorKind::PeerCertificateUntrusted,
                "is not the mesh's registry: its certificate names 'spiffe://toolmesh.local/agent/calc', not a registry",
            )),
        ),
    ];
    for policy in [VerifyPolicy::default(), spiffe_policy()] {
        let agent = identity_from(&mesh, "agent", Role::Agent, DEFAULT_TRUST_DOMAIN, &[], policy.clone());
        agent.replace_trust_bundle(&trusted).unwrap();
        for (what, server_identity, refused) in &servers {
            server_identity.replace_trust_bundle(&trusted).unwrap();
            let server = fake_registry(server_identity).await;
            let client = RegistryClient::new(&format!("https://{}", server.local_addr()), &agent).unwrap();
            let answer = client.list_entities().await;
            match refused {
                None => assert!(answer.is_ok(), "{what} ({:?}): {answer:?}", policy.mode),
                Some((kind, why)) => {
                    let e = answer.expect_err(what);
                    assert_eq!(e.kind(), *kind, "{what} ({:?}): {e}", policy.mode);
                    assert!(e.message().contains(why), "{what}: {e}");
                }
            }
            server.shutdown(Duration::from_secs(1)).await;
        }
    }
}

/// A server of the mesh CA presenting its CA in its chain (as the registry does for bootstrap),
/// its certificate made by `request`.
fn server_of(mesh: &CertificateAuthority, request: LeafRequest) -> Arc<Identity> {
    let leaf = mesh.issue(&request).unwrap();
    Identity::from_pem(&format!("{}{}", leaf.cert_pem, mesh.cert_pem()), &leaf.key_pem, mesh.cert_pem()).unwrap()
}

#[tokio::test]
async fn bootstrap_and_later_registry_clients_apply_one_registry_name_rule() {
    let mesh = CertificateAuthority::generate("test mesh CA", 30).unwrap();
    let agent = identity_from(&mesh, "agent", Role::Agent, DEFAULT_TRUST_DOMAIN, &[], VerifyPolicy::default());
    let without_spiffe_id = {
        let mut request = LeafRequest::new("registry", Role::Registry, DEFAULT_TRUST_DOMAIN, 1);
        request.uris.clear();
        request
    };
    let servers = [
        ("the registry", LeafRequest::new("registry", Role::Registry, DEFAULT_TRUST_DOMAIN, 1), None),
        // Both name 127.0.0.1, the address dialled, and chain to the mesh CA the token pins.
        (
            "a certificate without a SPIFFE ID",
            without_spiffe_id,
            Some("its certificate names 'registry', which is no SPIFFE ID, so not a registry"),
        ),
        (
            "a mesh agent",
            LeafRequest::new("calc", Role::Agent, DEFAULT_TRUST_DOMAIN, 1),
            Some("its certificate names 'spiffe://toolmesh.local/agent/calc', not a registry"),
        ),
    ];
    for (what, request, refused) in servers {
        // As a registry that issues certificates: clients without one get through the handshake.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let config = server_of(&mesh, request).server_config_optional_client_auth().unwrap();
        let server = toolmesh_core::server::HttpsServer::spawn(listener, config, |_, _| async move {
            toolmesh_core::server::text_response(http::StatusCode::OK, r#"{"entities": []}"#.to_owned())
        })
        .unwrap();
        let url = format!("https://{}", server.local_addr());
        let after_bootstrap =
            RegistryClient::new(&url, &agent).unwrap().list_entities().await.map(|_| ()).map_err(|e| (e.kind(), e.message().to_owned()));
        let pinned = toolmesh_core::client::HttpsClient::with_tls(toolmesh_core::tls::pinned_registry_config(&mesh.fingerprint()).unwrap());
        let request = http::Request::get(format!("{url}/v1/entities")).body(http_body_util::Full::default()).unwrap();
        let at_bootstrap = pinned.send(request).await.map(|_| ()).map_err(|e| e.error.message().to_owned());
        match refused {
            None => {
                assert!(after_bootstrap.is_ok(), "{what}: {after_bootstrap:?}");
                assert!(at_bootstrap.is_ok(), "{what}: {at_bootstrap:?}");
            }
            Some(why) => {
                let (kind, message) = after_bootstrap.expect_err(what);
                assert_eq!(kind, ErrorKind::PeerCertificateUntrusted, "{what}: {message}");
                assert!(message.contains("is not the mesh's registry") && message.contains(why), "{what}: {message}");
                let message = at_bootstrap.expect_err(what);
                assert!(message.contains(why), "{what} at bootstrap: {message}");
            }
        }
        server.shutdown(Duration::from_secs(1)).await;
    }
}

#[tokio::test]
async fn an_entity_ca_cannot_vouch_for_the_mesh_trust_domain() {
    let mesh = CertificateAuthority::generate("test mesh CA", 30).unwrap();
    let partner = CertificateAuthority::generate("partner CA", 30).unwrap();
    let trusted = bundle(&[&mesh], &[("partner", &partner)]);
    for policy in [VerifyPolicy::default(), spiffe_policy()] {
        let ours = identity_from(&mesh, "ours", Role::Agent, DEFAULT_TRUST_DOMAIN, &[], policy.clone());
        ours.replace_trust_bundle(&trusted).unwrap();
        let our_server = who_is_calling(&ours).await;
        let our_client = toolmesh_core::client::HttpsClient::new(&ours).unwrap();
        // The partner's agents trust both CAs; the impostor names spiffe://toolmesh.local/agent/x.
        let impostor = identity_from(&partner, "x", Role::Agent, DEFAULT_TRUST_DOMAIN, &[&mesh], policy.clone());
        let honest = identity_from(&partner, "y", Role::Agent, "partner", &[&mesh], policy.clone());
        for (partner_identity, accepted) in [(&impostor, false), (&honest, true)] {
            // They call us.
            let client = toolmesh_core::client::HttpsClient::new(partner_identity).unwrap();
            let url = format!("https://{}/", our_server.local_addr());
            let request = http::Request::get(&url).body(http_body_util::Full::default()).unwrap();
            let called = client.send(request).await.map(|r| r.status().as_u16());
            assert_eq!(
                called.as_ref().ok(),
                accepted.then_some(&200),
                "{} calling us ({:?}): {called:?}",
                partner_identity.name(),
                policy.mode
            );
            // We call them.
            let server = who_is_calling(partner_identity).await;
            let request = http::Request::get(format!("https://{}/", server.local_addr())).body(http_body_util::Full::default()).unwrap();
            match our_client.send(request).await {
                Ok(response) => assert!(accepted, "we accepted {} ({:?}): {}", partner_identity.name(), policy.mode, response.status()),
                Err(e) => {
                    assert!(!accepted, "we refused {}: {}", partner_identity.name(), e.error);
                    assert_eq!(e.error.kind(), ErrorKind::PeerIdentityNotAllowed, "{}", e.error);
                    assert!(
                        e.error.message().contains("chains to the CA of entity 'partner', which may vouch only for spiffe://partner"),
                        "{}",
                        e.error
                    );
                }
            }
            server.shutdown(Duration::from_secs(1)).await;
        }
        our_server.shutdown(Duration::from_secs(1)).await;
    }
}

#[tokio::test]
async fn spiffe_mode_refuses_a_matching_id_from_a_foreign_ca() {
    let pki = Pki::new();
    let foreign = CertificateAuthority::generate("foreign CA", 30).unwrap();
    // The same SPIFFE ID a mesh agent has, from a CA nobody added.
    let theirs = identity_from(&foreign, "b", Role::Agent, DEFAULT_TRUST_DOMAIN, &[&pki.ca], spiffe_policy());
    let server = who_is_calling(&theirs).await;
    let exact = VerifyPolicy { mode: VerifyMode::Spiffe, allowed: vec![spiffe_id(DEFAULT_TRUST_DOMAIN, Role::Agent, "b")] };
    let ours = Identity::load_with(&pki.issue("a"), exact).unwrap();
    let client = toolmesh_core::client::HttpsClient::new(&ours).unwrap();
    let request = http::Request::get(format!("https://{}/", server.local_addr())).body(http_body_util::Full::default()).unwrap();
    let e = client.send(request).await.expect_err("the chain leads to no anchor of ours").error;
    assert_eq!(e.kind(), ErrorKind::PeerCertificateUntrusted, "{e}");
    server.shutdown(Duration::from_secs(1)).await;
}

/// A client that presents whatever certificate it is given: rustls checks nothing of its own.
fn raw_client(ca: &CertificateAuthority, cert_pem: &str, key_pem: &str) -> toolmesh_core::client::HttpsClient {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls::pki_types::CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).unwrap()).unwrap();
    let chain = vec![rustls::pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap()];
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(toolmesh_core::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    toolmesh_core::client::HttpsClient::with_tls(Arc::new(config))
}

#[tokio::test]
async fn a_client_certificate_without_client_auth_is_refused_over_the_wire() {
    let pki = Pki::new();
    let server = who_is_calling(&pki.identity("server")).await;
    let url = format!("https://{}/", server.local_addr());
    for (usages, accepted) in
        [(vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth], false), (vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth], true)]
    {
        let mut request = LeafRequest::new("client", Role::Agent, DEFAULT_TRUST_DOMAIN, 1);
        request.extended_key_usages = usages.clone();
        let leaf = pki.ca.issue(&request).unwrap();
        let client = raw_client(&pki.ca, &leaf.cert_pem, &leaf.key_pem);
        let answer = client.send(http::Request::get(&url).body(http_body_util::Full::default()).unwrap()).await;
        match answer {
            Ok(response) => assert!(accepted && response.status() == 200, "{usages:?}: {}", response.status()),
            Err(e) => {
                assert!(!accepted, "{usages:?}: {}", e.error);
                assert_eq!(e.error.kind(), ErrorKind::PeerRejectedCertificate, "{}", e.error);
            }
        }
    }
    server.shutdown(Duration::from_secs(1)).await;
}

/// A leaf of the mesh CA, named like an agent, whose keyUsage is only keyEncipherment.
fn leaf_that_may_not_sign(pki: &Pki, name: &str) -> (String, String) {
    let issuer = rcgen::Issuer::from_ca_cert_pem(pki.ca.cert_pem(), rcgen::KeyPair::from_pem(pki.ca.key_pem()).unwrap()).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    params.subject_alt_names.push(rcgen::SanType::IpAddress([127, 0, 0, 1].into()));
    params.subject_alt_names.push(rcgen::SanType::URI(spiffe_id(DEFAULT_TRUST_DOMAIN, Role::Agent, name).try_into().unwrap()));
    params.key_usages = vec![rcgen::KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth, rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let key = rcgen::KeyPair::generate().unwrap();
    (params.signed_by(&key, &issuer).unwrap().pem(), key.serialize_pem())
}

#[tokio::test]
async fn a_leaf_whose_key_usage_forbids_signing_is_refused_both_ways() {
    let pki = Pki::new();
    let (cert, key) = leaf_that_may_not_sign(&pki, "nosign");
    let nosign = Identity::from_pem(&cert, &key, pki.ca.cert_pem()).unwrap();
    let ours = pki.identity("ours");
    // As a server.
    let server = who_is_calling(&nosign).await;
    let client = toolmesh_core::client::HttpsClient::new(&ours).unwrap();
    let e =
        client.send(http::Request::get(format!("https://{}/", server.local_addr())).body(http_body_util::Full::default()).unwrap()).await;
    let e = e.expect_err("keyUsage without digitalSignature").error;
    assert_eq!(e.kind(), ErrorKind::PeerCertificateUntrusted, "{e}");
    assert!(e.message().contains("keyUsage without digitalSignature"), "{e}");
    server.shutdown(Duration::from_secs(1)).await;
    // As a client.
    let server = who_is_calling(&ours).await;
    let client = raw_client(&pki.ca, &cert, &key);
    let e =
        client.send(http::Request::get(format!("https://{}/", server.local_addr())).body(http_body_util::Full::default()).unwrap()).await;
    assert_eq!(e.expect_err("refused by the server").error.kind(), ErrorKind::PeerRejectedCertificate);
    server.shutdown(Duration::from_secs(1)).await;
}

#[test]
fn key_files_readable_by_others_are_flagged() {
    let pki = Pki::new();
    let files = pki.issue("a");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(toolmesh_core::tls::key_file_exposure(&files.key), None, "written 0600");
    std::fs::set_permissions(&files.key, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(toolmesh_core::tls::key_file_exposure(&files.key), Some(0o644));
    // Loaded anyway (with a warning): a readable key is a risk, not a broken identity.
    Identity::load(&files).unwrap();
}

#[tokio::test]
async fn a_bundle_without_anchors_vouches_for_no_spiffe_id() {
    // What an older registry sends: PEM only. Its CAs that the configured file does not hold
    // are trusted for no SPIFFE identity; the configured (mesh) CA keeps vouching for everything.
    let mesh = CertificateAuthority::generate("test mesh CA", 30).unwrap();
    let partner = CertificateAuthority::generate("partner CA", 30).unwrap();
    let ours = identity_from(&mesh, "ours", Role::Agent, DEFAULT_TRUST_DOMAIN, &[], VerifyPolicy::default());
    let legacy = TrustBundle { version: 1, pem: format!("{}{}", mesh.cert_pem(), partner.cert_pem()), anchors: vec![] };
    ours.replace_trust_bundle(&legacy).unwrap();
    let server = who_is_calling(&ours).await;
    let url = format!("https://{}/", server.local_addr());
    for (identity, accepted) in [
        (identity_from(&partner, "y", Role::Agent, "partner", &[&mesh], VerifyPolicy::default()), false),
        (identity_from(&mesh, "z", Role::Agent, DEFAULT_TRUST_DOMAIN, &[], VerifyPolicy::default()), true),
    ] {
        let client = toolmesh_core::client::HttpsClient::new(&identity).unwrap();
        let called =
            client.send(http::Request::get(&url).body(http_body_util::Full::default()).unwrap()).await.map(|r| r.status().as_u16());
        assert_eq!(called.as_ref().ok(), accepted.then_some(&200), "{}: {called:?}", identity.name());
    }
    server.shutdown(Duration::from_secs(1)).await;
}
