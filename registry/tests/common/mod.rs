//! What the registry's integration tests share: a mesh CA with identities issued in memory, an
//! in-process registry with real mutual TLS, and a raw HTTPS client for it.
#![allow(dead_code)] // each test binary uses its own part of this module

pub mod postgres;

use bytes::Bytes;
use http_body_util::Full;
use std::sync::Arc;
use std::time::Duration;
use toolmesh_ca::{CertificateAuthority, Issued, LeafRequest, Role, DEFAULT_TRUST_DOMAIN};
use toolmesh_core::client::HttpsClient;
use toolmesh_core::registry_api::{RegisterRequest, ToolInfo};
use toolmesh_core::tls::{pinned_registry_config, Identity};
use toolmesh_registry::{AutoIssuer, RegistryConfig, RunningRegistry};

/// A throwaway mesh CA.
pub struct Mesh {
    pub ca: CertificateAuthority,
}

impl Mesh {
    pub fn new() -> Self {
        Self::named("toolmesh test CA")
    }

    /// Two CAs with the same name are told apart only by their signatures (a TLS peer then
    /// reports a bad signature rather than an unknown CA), so tests of a foreign CA name it.
    pub fn named(ca_name: &str) -> Self {
        Mesh { ca: CertificateAuthority::generate(ca_name, 1).expect("generate CA") }
    }

    /// The configuration of an in-process agent `name`: a certificate issued now, written with the
    /// CA's to `dir`, registering at `registry` every `heartbeat`, on any free port.
    pub fn agent_config(
        &self,
        dir: &std::path::Path,
        name: &str,
        registry: &str,
        heartbeat: Duration,
    ) -> toolmesh_core::config::AgentConfig {
        let leaf = self.issue(name, Role::Agent);
        let (cert, key, ca) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")), dir.join("ca.pem"));
        std::fs::write(&cert, &leaf.cert_pem).unwrap();
        std::fs::write(&key, &leaf.key_pem).unwrap();
        std::fs::write(&ca, self.ca.cert_pem()).unwrap();
        let mut config = toolmesh_core::config::AgentConfig::from_env(name).unwrap();
        let heartbeat = heartbeat.as_millis().to_string();
        for (setting, value) in [
            ("tls_cert", cert.to_str().unwrap()),
            ("tls_key", key.to_str().unwrap()),
            ("tls_ca", ca.to_str().unwrap()),
            ("registry_url", registry),
            ("heartbeat_interval_ms", heartbeat.as_str()),
            ("port", "0"),
        ] {
            config.set(setting, value).unwrap();
        }
        config
    }

    pub fn issue(&self, name: &str, role: Role) -> Issued {
        self.issue_in(name, role, DEFAULT_TRUST_DOMAIN)
    }

    /// A leaf naming `spiffe://<trust_domain>/<role>/<name>` (an entity's agents use their own).
    pub fn issue_in(&self, name: &str, role: Role, trust_domain: &str) -> Issued {
        self.ca.issue(&LeafRequest::new(name, role, trust_domain, 1)).expect("issue leaf")
    }

    pub fn identity(&self, name: &str, role: Role) -> Arc<Identity> {
        let leaf = self.issue(name, role);
        Identity::from_pem(&leaf.cert_pem, &leaf.key_pem, self.ca.cert_pem()).expect("load identity")
    }

    /// A `--tls-auto` registry: its CA in `state_dir` (also the CA of the returned mesh), the
    /// bootstrap route open, entities kept there. Agent certificates live `agent_lifetime`. It is
    /// reached at 127.0.0.1 and named `registry.example` too.
    pub async fn start_auto(
        state_dir: &std::path::Path,
        agent_lifetime: Duration,
        heartbeat_interval: Duration,
    ) -> (Mesh, Arc<AutoIssuer>, RunningRegistry) {
        Self::start_auto_with(state_dir, agent_lifetime, heartbeat_interval, toolmesh_registry::REGISTRY_CERT_LIFETIME).await
    }

    /// [`Mesh::start_auto`] with the lifetime of the registry's own certificate.
    pub async fn start_auto_with(
        state_dir: &std::path::Path,
        agent_lifetime: Duration,
        heartbeat_interval: Duration,
        registry_lifetime: Duration,
    ) -> (Mesh, Arc<AutoIssuer>, RunningRegistry) {
        let issuer = AutoIssuer::prepare(
            state_dir,
            DEFAULT_TRUST_DOMAIN,
            agent_lifetime,
            vec!["127.0.0.1".to_owned(), "registry.example".to_owned()],
        )
        .expect("prepare");
        let issuer = Arc::new(issuer.with_registry_cert_lifetime(registry_lifetime));
        let stored: serde_json::Value =
            serde_json::from_slice(&std::fs::read(state_dir.join(toolmesh_registry::STATE_FILE)).expect("the registry's state"))
                .expect("JSON");
        let pem = |field: &str| stored["auto_tls"][field].as_str().expect("the auto-TLS CA is stored").to_owned();
        let ca = CertificateAuthority::from_pem(&pem("ca_cert"), &pem("ca_key"), "ca_cert", "ca_key").expect("the registry's CA");
        let mut config = RegistryConfig::new("127.0.0.1", 0, issuer.registry_identity().expect("registry identity"));
        config.heartbeat_interval = heartbeat_interval;
        config.issuer = Some(issuer.clone());
        config.state_dir = Some(state_dir.to_owned());
        let registry = toolmesh_registry::start(config).await.expect("start registry");
        (Mesh { ca }, issuer, registry)
    }

    pub async fn start_registry(&self, port: u16, heartbeat_interval: Duration) -> RunningRegistry {
        let mut config = RegistryConfig::new("127.0.0.1", port, self.identity("registry", Role::Registry));
        config.heartbeat_interval = heartbeat_interval;
        toolmesh_registry::start(config).await.expect("start registry")
    }
}

/// A registration with one tool per `(tool, capability)` and the given dependencies on each.
pub fn registration(agent_id: &str, tools: &[(&str, &str)], dependencies: &[serde_json::Value]) -> RegisterRequest {
    let tools = tools
        .iter()
        .map(|(name, capability)| {
            serde_json::from_value::<ToolInfo>(serde_json::json!({
                "name": name,
                "capability": capability,
                "tags": ["test"],
                "dependencies": dependencies,
            }))
            .expect("test tool")
        })
        .collect();
    RegisterRequest {
        agent_id: agent_id.to_owned(),
        name: agent_id.split('-').next().unwrap_or(agent_id).to_owned(),
        endpoint: format!("https://127.0.0.1:9/{agent_id}/mcp"),
        tools,
    }
}

/// [`registration`] under `name` (the name the registering certificate carries).
pub fn registration_as(name: &str, agent_id: &str, tools: &[(&str, &str)], dependencies: &[serde_json::Value]) -> RegisterRequest {
    RegisterRequest { name: name.to_owned(), ..registration(agent_id, tools, dependencies) }
}

/// An answer as the wire carried it.
#[derive(Debug)]
pub struct Answer {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{} answer is not JSON ({e}): {}", self.status, String::from_utf8_lossy(&self.body)))
    }
}

/// Sends raw requests to the registry with one identity, over the core's mTLS client.
pub struct RawClient {
    base: String,
    http: HttpsClient,
    authorization: Option<String>,
}

impl RawClient {
    pub fn new(base: &str, identity: &Arc<Identity>) -> Self {
        RawClient { base: base.to_owned(), http: HttpsClient::new(identity).expect("https client"), authorization: None }
    }

    /// A client without a certificate that trusts the registry by the CA fingerprint a join
    /// token pins, sending `authorization` (a bearer token) if given.
    pub fn anonymous(base: &str, ca_fingerprint: &str, authorization: Option<String>) -> Self {
        let http = HttpsClient::with_tls(pinned_registry_config(ca_fingerprint).expect("pinned config"));
        RawClient { base: base.to_owned(), http, authorization }
    }

    pub async fn send(&self, method: &str, path: &str, body: Option<Bytes>) -> Answer {
        self.send_as(method, path, body, "application/json").await
    }

    /// [`RawClient::send`] with a body of `content_type`.
    pub async fn send_as(&self, method: &str, path: &str, body: Option<Bytes>, content_type: &str) -> Answer {
        let mut request = http::Request::builder().method(method).uri(format!("{}{path}", self.base));
        if body.is_some() {
            request = request.header(http::header::CONTENT_TYPE, content_type);
        }
        if let Some(authorization) = &self.authorization {
            request = request.header(http::header::AUTHORIZATION, format!("Bearer {authorization}"));
        }
        let request = request.body(Full::new(body.unwrap_or_default())).expect("valid request");
        let response = self.http.send(request).await.unwrap_or_else(|e| panic!("{method} {path}: {}", e.error));
        let (parts, body) = response.into_parts();
        Answer { status: parts.status, headers: parts.headers, body }
    }
}

/// `GET path` on a plain-HTTP listener: the status line's code, the content type and the body.
pub async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head[9..12].parse().unwrap();
    let content_type = head.lines().find_map(|l| l.strip_prefix("content-type: ")).unwrap_or_default().to_owned();
    (status, content_type, body.to_owned())
}

/// The value of the sample written exactly as `series` (name and labels), if there is one.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
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

/// Polls `probe` until it gives a value (`Err` says why not yet); panics saying `what` did not
/// happen, with the last reason, if none came within `within`.
pub async fn eventually<T>(what: &str, within: Duration, mut probe: impl std::ops::AsyncFnMut() -> Result<T, String>) -> T {
    let deadline = std::time::Instant::now() + within;
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(why) => assert!(std::time::Instant::now() < deadline, "waited {within:?}, yet never: {what} (last: {why})"),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
