//! The registry's HTTP API from the agent's (and the operator's) side.

use crate::client::{HttpsClient, RequestError};
use crate::error::{Error, ErrorKind, Result};
use crate::registry_api::*;
use crate::registry_endpoints::{self, Registries};
use crate::tls::Identity;
use bytes::Bytes;
use http_body_util::Full;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::Duration;

/// What a heartbeat learned.
#[derive(Debug, Clone, PartialEq)]
pub enum HeartbeatOutcome {
    /// Registered; carries the topology when it changed.
    Alive(Option<Topology>),
    /// The registry does not know us (it restarted, or evicted us): register again.
    Unknown,
}

/// How long a registry request may take, unless set otherwise ([`RegistryClient::set_timeout`]):
/// a half-open connection must not hang a heartbeat, or the command line, for ever.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How much longer than its wait a topology long poll may take.
const WATCH_MARGIN: Duration = Duration::from_secs(5);

/// A client for the registry, speaking HTTPS with our certificate: for one registry, or for
/// replicas of one, moving on to the next when the one it uses does not answer (see
/// [`crate::registry_endpoints`]).
#[derive(Clone)]
pub struct RegistryClient {
    registries: Arc<Registries>,
    http: HttpsClient,
    /// The bound on every request but the long poll (which gets its wait plus a margin).
    timeout: Duration,
}

impl RegistryClient {
    /// `url` is the registry's base URL, e.g. `https://127.0.0.1:8443`, or several,
    /// comma-separated (replicas); each must be https.
    pub fn new(url: &str, identity: &Arc<Identity>) -> Result<Self> {
        let registries = Arc::new(Registries::new(registry_endpoints::parse(url)?));
        Ok(RegistryClient { registries, http: HttpsClient::for_registry(identity)?, timeout: DEFAULT_REQUEST_TIMEOUT })
    }

    /// Uses the replica that `agent_id` spreads to (see [`Registries::home`]).
    pub fn home(&self, agent_id: &str) {
        self.registries.home(agent_id);
    }

    /// Bounds every request but the long poll: past it, the registry counts as unreachable.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// The URL of the registry in use.
    pub fn url(&self) -> &str {
        self.registries.current().1
    }

    pub async fn register(&self, request: &RegisterRequest) -> Result<RegisterResponse> {
        self.json(http::Method::POST, &format!("{API_PREFIX}/agents"), Some(request)).await
    }

    pub async fn heartbeat(&self, agent_id: &str, topology_version: u64) -> Result<HeartbeatOutcome> {
        Ok(match self.beat(agent_id, topology_version).await? {
            Some(response) => HeartbeatOutcome::Alive(response.topology),
            None => HeartbeatOutcome::Unknown,
        })
    }

    /// A heartbeat with the whole answer (topology and trust bundle version); `None` when the
    /// registry does not know the agent.
    pub async fn beat(&self, agent_id: &str, topology_version: u64) -> Result<Option<HeartbeatResponse>> {
        let beat = HeartbeatRequest { topology_version, denials: Vec::new(), unreachable: Vec::new(), calls: Vec::new() };
        self.beat_reporting(agent_id, &beat).await
    }

    /// A heartbeat that also reports what the agent saw since the last one: the calls it
    /// refused, the providers it could not reach, the calls it made.
    pub async fn beat_reporting(&self, agent_id: &str, beat: &HeartbeatRequest) -> Result<Option<HeartbeatResponse>> {
        let path = format!("{API_PREFIX}/agents/{}/heartbeat", encode(agent_id));
        match self.json::<HeartbeatResponse>(http::Method::POST, &path, Some(beat)).await {
            Ok(response) => Ok(Some(response)),
            Err(e) if e.kind() == ErrorKind::UnknownAgent => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The mesh trust bundle (mesh CA and entity CAs).
    pub async fn trust_bundle(&self) -> Result<TrustBundle> {
        self.json::<TrustBundle>(http::Method::GET, &format!("{API_PREFIX}/trust-bundle"), None::<&()>).await
    }

    /// The access policy applied at the registry.
    pub async fn policy(&self) -> Result<StoredPolicy> {
        self.json::<StoredPolicy>(http::Method::GET, &format!("{API_PREFIX}/policy"), None::<&()>).await
    }

    /// The access policy applied at the registry; `None` when none has been applied.
    pub async fn applied_policy(&self) -> Result<Option<StoredPolicy>> {
        let response = self.send(http::Method::GET, &format!("{API_PREFIX}/policy"), None).await?;
        if response.status() == http::StatusCode::NOT_FOUND {
            let api: Option<ApiError> = serde_json::from_slice(response.body()).ok();
            if api.is_some_and(|a| a.error == "no_policy") {
                return Ok(None);
            }
        }
        self.decode(response).map(Some)
    }

    /// Applies a new access policy (admin only); the answer carries its version.
    pub async fn apply_policy(&self, policy: &crate::policy::PolicyDocument) -> Result<StoredPolicy> {
        self.json(http::Method::PUT, &format!("{API_PREFIX}/policy"), Some(policy)).await
    }

    /// What the registry's policy decides for one request (admin only).
    pub async fn test_policy(&self, request: &PolicyTestRequest) -> Result<PolicyTestResponse> {
        self.json(http::Method::POST, &format!("{API_PREFIX}/policy/test"), Some(request)).await
    }

    pub async fn list_entities(&self) -> Result<EntityList> {
        self.json::<EntityList>(http::Method::GET, &format!("{API_PREFIX}/entities"), None::<&()>).await
    }

    pub async fn add_entity(&self, request: &EntityRequest) -> Result<Entity> {
        self.json(http::Method::POST, &format!("{API_PREFIX}/entities"), Some(request)).await
    }

    pub async fn revoke_entity(&self, name: &str) -> Result<()> {
        let response = self.send(http::Method::DELETE, &format!("{API_PREFIX}/entities/{}", encode(name)), None).await?;
        match response.status() {
            s if s.is_success() => Ok(()),
            _ => self.decode::<serde_json::Value>(response).map(|_| ()),
        }
    }

    /// Long-polls for a topology different from `since`; `Ok(None)` when nothing changed in `wait`.
    /// `Err(UnknownAgent)` means: register again.
    pub async fn watch(&self, agent_id: &str, since: u64, wait: Duration) -> Result<Option<Topology>> {
        let path = format!("{API_PREFIX}/agents/{}/topology?since={since}&wait_ms={}", encode(agent_id), wait.as_millis());
        let response = self.send_within(http::Method::GET, &path, None, wait + WATCH_MARGIN).await?;
        match response.status() {
            http::StatusCode::NO_CONTENT => Ok(None),
            _ => Ok(Some(self.decode(response)?)),
        }
    }

    pub async fn deregister(&self, agent_id: &str) -> Result<()> {
        let path = format!("{API_PREFIX}/agents/{}", encode(agent_id));
        let response = self.send(http::Method::DELETE, &path, None).await?;
        match response.status() {
            s if s.is_success() => Ok(()),
            _ => self.decode::<serde_json::Value>(response).map(|_| ()),
        }
    }

    pub async fn list_agents(&self) -> Result<AgentList> {
        self.json::<AgentList>(http::Method::GET, &format!("{API_PREFIX}/agents"), None::<&()>).await
    }

    /// The registry's most recent denials (admin only), oldest first: at most `limit`, of
    /// `kind` if given.
    pub async fn audit(&self, limit: Option<usize>, kind: Option<&str>) -> Result<AuditList> {
        let mut query = Vec::new();
        if let Some(limit) = limit {
            query.push(format!("limit={limit}"));
        }
        if let Some(kind) = kind {
            query.push(format!("kind={}", encode(kind)));
        }
        let path = match query.is_empty() {
            true => format!("{API_PREFIX}/audit"),
            false => format!("{API_PREFIX}/audit?{}", query.join("&")),
        };
        self.json::<AuditList>(http::Method::GET, &path, None::<&()>).await
    }

    /// Posts an OTLP `ExportTraceServiceRequest` (protobuf) to the registry's trace store.
    pub async fn export_spans(&self, body: Bytes) -> Result<()> {
        let response = self.send_typed(http::Method::POST, &format!("{API_PREFIX}/traces"), Some((body, "application/x-protobuf"))).await?;
        match response.status() {
            s if s.is_success() => Ok(()),
            _ => self.decode::<serde_json::Value>(response).map(|_| ()),
        }
    }

    /// The most recent traces of the registry's trace store (operator only), newest first.
    pub async fn recent_traces(&self, last: usize) -> Result<TraceList> {
        self.json(http::Method::GET, &format!("{API_PREFIX}/traces?last={last}"), None::<&()>).await
    }

    /// One trace of the registry's trace store (operator only); `None` when it keeps no span of it.
    pub async fn trace(&self, trace_id: &str) -> Result<Option<TraceDetail>> {
        let response = self.send(http::Method::GET, &format!("{API_PREFIX}/traces/{}", encode(trace_id)), None).await?;
        if response.status() == http::StatusCode::NOT_FOUND {
            let api: Option<ApiError> = serde_json::from_slice(response.body()).ok();
            if api.is_some_and(|a| a.error == "unknown_trace") {
                return Ok(None);
            }
        }
        self.decode(response).map(Some)
    }

    pub async fn resolve(&self, spec: &DependencySpec) -> Result<ResolveResponse> {
        self.json(http::Method::POST, &format!("{API_PREFIX}/resolve"), Some(spec)).await
    }

    async fn json<T: DeserializeOwned>(&self, method: http::Method, path: &str, body: Option<&impl serde::Serialize>) -> Result<T> {
        let body = body.map(|b| Bytes::from(serde_json::to_vec(b).expect("request bodies always serialize")));
        let response = self.send(method, path, body).await?;
        self.decode(response)
    }

    async fn send(&self, method: http::Method, path: &str, body: Option<Bytes>) -> Result<http::Response<Bytes>> {
        self.send_typed(method, path, body.map(|b| (b, "application/json"))).await
    }

    /// [`Self::send`] with a body of the given content type.
    async fn send_typed(&self, method: http::Method, path: &str, body: Option<(Bytes, &'static str)>) -> Result<http::Response<Bytes>> {
        self.send_within(method, path, body, self.timeout).await
    }

    /// Sends to the registry in use; when it does not answer, the next one is used from then on,
    /// and the request goes to it at once when the unanswering one cannot have seen it (a
    /// request it may have seen is not repeated: the caller decides, as on any outage).
    async fn send_within(
        &self,
        method: http::Method,
        path: &str,
        body: Option<(Bytes, &'static str)>,
        timeout: Duration,
    ) -> Result<http::Response<Bytes>> {
        let mut tries = self.registries.len();
        loop {
            let (index, base) = self.registries.current();
            let (error, delivered) = match self.send_to(base, method.clone(), path, body.clone(), timeout).await {
                Ok(response) => return Ok(response),
                Err(failed) => failed,
            };
            tries -= 1;
            if error.kind() != ErrorKind::RegistryUnavailable {
                return Err(error);
            }
            let Some(next) = self.registries.fail_over(index) else { return Err(error) };
            tracing::warn!(from = base, to = next, "the registry does not answer: using the next one ({})", error.message());
            if delivered || tries == 0 {
                return Err(error);
            }
        }
    }

    /// One request to the registry at `base`; a failure comes with whether it may have been seen.
    async fn send_to(
        &self,
        base: &str,
        method: http::Method,
        path: &str,
        body: Option<(Bytes, &'static str)>,
        timeout: Duration,
    ) -> std::result::Result<http::Response<Bytes>, (Error, bool)> {
        let mut builder = http::Request::builder().method(method).uri(format!("{base}{path}"));
        if let Some((_, content_type)) = &body {
            builder = builder.header(http::header::CONTENT_TYPE, *content_type);
        }
        let request = builder
            .body(Full::new(body.map(|(bytes, _)| bytes).unwrap_or_default()))
            .map_err(|e| (Error::new(ErrorKind::InvalidConfig, format!("bad registry request {path}: {e}")), false))?;
        let Ok(sent) = tokio::time::timeout(timeout, self.http.send(request)).await else {
            let error = Error::new(
                ErrorKind::RegistryUnavailable,
                format!(
                    "the registry at {base} did not answer within {} ms; agents keep calling each other from the cached topology and re-register when it answers",
                    timeout.as_millis()
                ),
            );
            return Err((error, true));
        };
        sent.map_err(|RequestError { error, delivered }| match error.kind() {
            ErrorKind::ConnectFailed | ErrorKind::ConnectionLost | ErrorKind::Timeout => (Error::new(
                ErrorKind::RegistryUnavailable,
                format!("the registry at {base} is unreachable ({}); agents keep calling each other from the cached topology and re-register when it returns", error.message()),
            ), delivered),
            _ => (error.context(format!("registry {base}")), delivered),
        })
    }

    fn decode<T: DeserializeOwned>(&self, response: http::Response<Bytes>) -> Result<T> {
        let status = response.status();
        let body = response.into_body();
        if status.is_success() {
            return serde_json::from_slice(&body)
                .map_err(|e| Error::new(ErrorKind::Protocol, format!("the registry at {} sent an unreadable answer: {e}", self.url())));
        }
        let api: Option<ApiError> = serde_json::from_slice(&body).ok();
        let message = api.as_ref().map(|a| a.message.clone()).unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        let kind = refusal_kind(status, api.as_ref().map(|a| a.error.as_str()));
        Err(Error::new(kind, format!("registry {} answered {status}: {message}", self.url())))
    }
}

/// The error kind of a registry answer that is not a success, by its status and the `error` code
/// of its body.
fn refusal_kind(status: http::StatusCode, error: Option<&str>) -> ErrorKind {
    match (status, error) {
        (http::StatusCode::NOT_FOUND, Some("unknown_agent")) => ErrorKind::UnknownAgent,
        (http::StatusCode::FORBIDDEN, Some("revoked")) => ErrorKind::PeerRejectedCertificate,
        // The registry refused the registration itself (a name the certificate does not carry,
        // a name or agent id held by another identity, a per-identity quota, a provide the
        // policy denies): one code in every language, 7004, rather than a permission or
        // protocol error.
        (http::StatusCode::FORBIDDEN, Some("name_not_in_certificate" | "provide_denied"))
        | (http::StatusCode::CONFLICT, Some("name_held_by_another_identity" | "identity_conflict"))
        | (http::StatusCode::TOO_MANY_REQUESTS, Some("quota_exceeded")) => ErrorKind::RegistrationRefused,
        // Authenticated but not permitted (not an admin, not the agent's owner): a permission
        // problem, not a protocol one; the registry's message says which identity it needs.
        (http::StatusCode::FORBIDDEN, _) => ErrorKind::PeerIdentityNotAllowed,
        (s, _) if s.is_server_error() => ErrorKind::RegistryUnavailable,
        _ => ErrorKind::Protocol,
    }
}

/// Checks a registry URL and strips trailing slashes: only https is accepted.
pub fn check_registry_url(url: &str) -> Result<String> {
    let trimmed = url.trim().trim_end_matches('/');
    let uri: http::Uri = trimmed.parse().map_err(|e| {
        Error::new(ErrorKind::InvalidConfig, format!("the registry URL '{url}' is not a URL ({e}); write it like https://127.0.0.1:8443"))
    })?;
    if uri.scheme_str() != Some("https") {
        return Err(Error::new(
            ErrorKind::RegistryUrlNotHttps,
            format!("the registry URL '{url}' is not https://; toolmesh talks to the registry over mutual TLS only (write it like https://127.0.0.1:8443)"),
        ));
    }
    if uri.host().is_none() {
        return Err(Error::new(ErrorKind::InvalidConfig, format!("the registry URL '{url}' has no host")));
    }
    Ok(trimmed.to_owned())
}

/// Percent-encodes a path segment.
fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_url_must_be_https() {
        assert_eq!(check_registry_url("https://127.0.0.1:8443/").unwrap(), "https://127.0.0.1:8443");
        let e = check_registry_url("http://127.0.0.1:8443").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::RegistryUrlNotHttps);
        assert!(e.message().contains("not https://"));
        assert_eq!(check_registry_url("not a url").unwrap_err().kind(), ErrorKind::InvalidConfig);
    }

    #[test]
    fn a_refused_registration_is_registration_refused_and_other_refusals_keep_their_kinds() {
        use http::StatusCode as S;
        for (status, error) in [
            (S::FORBIDDEN, "name_not_in_certificate"),
            (S::CONFLICT, "name_held_by_another_identity"),
            (S::CONFLICT, "identity_conflict"),
            (S::TOO_MANY_REQUESTS, "quota_exceeded"),
        ] {
            assert_eq!(refusal_kind(status, Some(error)), ErrorKind::RegistrationRefused, "{status} {error}");
        }
        assert_eq!(refusal_kind(S::FORBIDDEN, Some("forbidden")), ErrorKind::PeerIdentityNotAllowed);
        assert_eq!(refusal_kind(S::FORBIDDEN, Some("revoked")), ErrorKind::PeerRejectedCertificate);
        assert_eq!(refusal_kind(S::NOT_FOUND, Some("unknown_agent")), ErrorKind::UnknownAgent);
        assert_eq!(refusal_kind(S::BAD_GATEWAY, None), ErrorKind::RegistryUnavailable);
        assert_eq!(refusal_kind(S::BAD_REQUEST, Some("invalid")), ErrorKind::Protocol);
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(encode("calc-1a2b"), "calc-1a2b");
        assert_eq!(encode("a/b c"), "a%2Fb%20c");
    }
}
