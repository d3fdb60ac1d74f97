//! The registry's listener takes the connection limits of its configuration (`--max-connections`,
//! `--idle-timeout-ms`…): the same core listener as the agents', over real mTLS.

mod common;

use common::{eventually, Mesh};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use toolmesh_ca::Role;
use toolmesh_core::registry_client::RegistryClient;
use toolmesh_core::tls::Identity;
use toolmesh_registry::RegistryConfig;

async fn connect(addr: std::net::SocketAddr, identity: &Arc<Identity>) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("an IP is a server name");
    let config = identity.registry_client_config().expect("client config");
    tokio_rustls::TlsConnector::from(config).connect(name, tcp).await
}

#[tokio::test]
async fn the_registry_caps_its_connections_and_closes_idle_ones() {
    let mesh = Mesh::new();
    let mut config = RegistryConfig::new("127.0.0.1", 0, mesh.identity("registry", Role::Registry));
    config.limits.set("max_connections", "4").expect("a valid limit");
    config.limits.set("idle_timeout_ms", "1000").expect("a valid limit");
    let registry = toolmesh_registry::start(config).await.expect("start registry");
    let operator = mesh.identity("operator", Role::Operator);

    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(connect(registry.local_addr(), &operator).await.expect("within the cap"));
    }
    // The server counts a connection once it ends the TLS 1.3 handshake, after the client did: a
    // fifth connection made before it counted the fourth gets through. Until one is closed at
    // accept (never, were the cap not enforced), each such one is dropped at once.
    let deadline = Instant::now() + Duration::from_secs(5);
    while let Ok(early) = connect(registry.local_addr(), &operator).await {
        drop(early);
        assert!(Instant::now() < deadline, "a fifth connection is still not closed at accept after 5 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Idle connections are closed after a second, and the slots they free serve again.
    let started = Instant::now();
    for tls in &mut held {
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut buf)).await.expect("closed by the registry");
        assert!(matches!(read, Ok(0) | Err(_)), "nothing but the close arrives");
    }
    assert!(started.elapsed() < Duration::from_secs(5), "closed after {:?}", started.elapsed());
    let client = RegistryClient::new(&registry.url(), &operator).expect("registry client");
    eventually("the registry served again", Duration::from_secs(5), async || client.list_agents().await.map_err(|e| e.to_string())).await;
    registry.shutdown().await;
}
