//! The outbound call policy: spread calls across the best providers, fail over when a request
//! was not delivered (with bounded backoff), keep recently failed providers at the back, and
//! never outlive the deadline.
//!
//! A provider whose certificate fails our verification (another CA, a name it does not carry,
//! expired, an identity we do not allow) is skipped like an unreachable one: the call goes on to
//! the next provider, so one bad or impostor provider is never a dead end for every dependent.
//! Such a provider is not tried again within the call (its certificate will not change in
//! milliseconds) and is tried last for a while after.

use crate::client::RequestError;
use crate::context::RequestContext;
use crate::error::{Error, ErrorKind, Result};
use crate::registry_api::Provider;
use serde_json::Value;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Sends one call to one provider.
pub trait Transport: Send + Sync {
    fn send<'a>(
        &'a self,
        provider: &'a Provider,
        arguments: &'a Value,
        context: &'a RequestContext,
    ) -> Pin<Box<dyn Future<Output = Result<Value, RequestError>> + Send + 'a>>;
}

/// At most this many attempts per call (each provider is still tried once when there are more).
const MIN_ATTEMPTS: usize = 3;
const BACKOFF_BASE: Duration = Duration::from_millis(25);
const BACKOFF_MAX: Duration = Duration::from_millis(500);
/// How long a provider that refused a connection is tried only after the others.
const COOLDOWN: Duration = Duration::from_secs(2);
/// How long a provider whose certificate failed our verification is tried only after the others
/// (it is tried again then: its certificate may have been reissued).
const REFUSED_COOLDOWN: Duration = Duration::from_secs(30);

/// One dependency call's target: the resolution key, the capability (for messages), the
/// providers ranked best first, and the time budget.
pub struct Target<'a> {
    pub key: &'a str,
    pub capability: &'a str,
    pub providers: &'a [Provider],
    pub timeout: Duration,
}

/// Per-agent call policy state: round-robin cursors, provider cool-downs and failover counts.
#[derive(Default)]
pub struct Pipeline {
    cursors: Mutex<HashMap<String, std::sync::Arc<AtomicUsize>>>,
    cooling: Mutex<HashMap<String, Instant>>,
    unreachable: AtomicU64,
    refused_certificate: AtomicU64,
}

/// How often a call went on to another provider, by why, since the agent started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Failovers {
    /// Attempts that could not reach a provider (connection refused or lost before the request
    /// left).
    pub unreachable: u64,
    /// Attempts whose provider failed TLS: its certificate failed our verification (or it
    /// refused ours, or the handshake failed).
    pub refused_certificate: u64,
}

impl Pipeline {
    pub fn new() -> Self {
        Self::default()
    }

    /// Calls one of the target's providers.
    pub async fn call<T: Transport + ?Sized>(&self, transport: &T, target: Target<'_>, arguments: Value, context: &RequestContext) -> Result<Value> {
        let Target { key, capability, providers, timeout } = target;
        if providers.is_empty() {
            return Err(Error::new(
                ErrorKind::DependencyUnresolved,
                format!("no healthy provider of '{capability}' is registered; start an agent that provides it, or check `toolmesh list`"),
            ));
        }
        let budget_end = Instant::now() + timeout;
        let deadline = context.deadline.map_or(budget_end, |d| d.min(budget_end));
        let order = self.order(key, providers);
        let attempt_all = async {
            let attempts = order.len().max(MIN_ATTEMPTS);
            let mut last_error = None;
            // Providers whose TLS failed: not tried again in this call.
            let mut refused: HashSet<&str> = HashSet::new();
            // Undelivered transport failures so far: each later attempt backs off longer.
            let mut failures: u32 = 0;
            for attempt in 0..attempts {
                let provider = order[attempt % order.len()];
                if refused.contains(provider.endpoint.as_str()) {
                    continue;
                }
                if failures > 0 {
                    let backoff = BACKOFF_BASE.saturating_mul(1 << (failures - 1).min(8)).min(BACKOFF_MAX);
                    tokio::time::sleep(backoff).await;
                }
                match transport.send(provider, &arguments, context).await {
                    Ok(value) => {
                        let mut cooling = self.cooling.lock().expect("pipeline lock");
                        if !cooling.is_empty() {
                            cooling.remove(&provider.endpoint);
                        }
                        return Ok(value);
                    }
                    Err(RequestError { error, delivered: false }) if is_retryable(&error) => {
                        tracing::debug!(endpoint = %provider.endpoint, "not delivered, trying again: {error}");
                        self.unreachable.fetch_add(1, Ordering::Relaxed);
                        self.cool(&provider.endpoint, COOLDOWN);
                        failures += 1;
                        last_error = Some(error);
                    }
                    Err(RequestError { error, delivered: false }) if is_tls_failure(&error) => {
                        tracing::warn!(
                            provider = %provider.agent_id,
                            name = %provider.agent_name,
                            endpoint = %provider.endpoint,
                            capability,
                            code = error.code(),
                            "provider skipped, trying the next one: {error}"
                        );
                        self.refused_certificate.fetch_add(1, Ordering::Relaxed);
                        self.cool(&provider.endpoint, REFUSED_COOLDOWN);
                        refused.insert(provider.endpoint.as_str());
                        last_error = Some(error);
                    }
                    Err(RequestError { error, .. }) => return Err(error),
                }
            }
            Err(last_error.expect("at least one attempt ran"))
        };
        match tokio::time::timeout_at(deadline, attempt_all).await {
            Ok(result) => result,
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                format!("no answer from a provider of '{capability}' within {} ms", deadline_ms(timeout, context, budget_end)),
            )),
        }
    }

    /// How often calls went on to another provider since this pipeline was made.
    pub fn failovers(&self) -> Failovers {
        Failovers { unreachable: self.unreachable.load(Ordering::Relaxed), refused_certificate: self.refused_certificate.load(Ordering::Relaxed) }
    }

    /// Puts a provider at the back of the order for `period`.
    fn cool(&self, endpoint: &str, period: Duration) {
        self.cooling.lock().expect("pipeline lock").insert(endpoint.to_owned(), Instant::now() + period);
    }

    /// The order to try providers in: the best-scored group rotated round-robin, then the rest;
    /// providers cooling down after a failure go last.
    fn order<'p>(&self, key: &str, providers: &'p [Provider]) -> Vec<&'p Provider> {
        let cursor = {
            let mut cursors = self.cursors.lock().expect("pipeline lock");
            match cursors.get(key) {
                Some(cursor) => cursor.clone(),
                None => cursors.entry(key.to_owned()).or_default().clone(),
            }
        };
        let top = providers[0].score;
        let best = providers.iter().take_while(|p| p.score == top).count();
        let start = cursor.fetch_add(1, Ordering::Relaxed) % best;
        let mut order: Vec<&Provider> =
            providers[start..best].iter().chain(&providers[..start]).chain(&providers[best..]).collect();
        let now = Instant::now();
        let mut cooling = self.cooling.lock().expect("pipeline lock");
        cooling.retain(|_, until| *until > now);
        if !cooling.is_empty() {
            order.sort_by_key(|p| cooling.contains_key(&p.endpoint));
        }
        order
    }
}

fn is_retryable(error: &Error) -> bool {
    matches!(error.kind(), ErrorKind::ConnectFailed | ErrorKind::ConnectionLost | ErrorKind::Shutdown)
}

/// A TLS failure with one provider (2xxx): its certificate failed our verification, it refused
/// ours, or the handshake failed. Another provider may well do; the request never left.
fn is_tls_failure(error: &Error) -> bool {
    error.code() / 1000 == 2
}

fn deadline_ms(timeout: Duration, context: &RequestContext, budget_end: Instant) -> u128 {
    match context.deadline {
        // The caller's own deadline came first: report what was left of it.
        Some(d) if d < budget_end => timeout.saturating_sub(budget_end - d).as_millis(),
        _ => timeout.as_millis(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn provider(id: &str, score: u32) -> Provider {
        Provider {
            agent_id: id.into(),
            agent_name: id.into(),
            endpoint: format!("https://{id}/mcp"),
            tool: "t".into(),
            capability: "c".into(),
            version: "1.0.0".into(),
            tags: vec![],
            score,
        }
    }

    /// Answers from a script: per endpoint, a list of outcomes (the last repeats), after a delay.
    struct Scripted {
        delay: Duration,
        script: HashMap<String, Vec<Result<Value, RequestError>>>,
        calls: Mutex<Vec<String>>,
    }

    impl Scripted {
        fn new(delay: Duration, script: &[(&str, Vec<Result<Value, RequestError>>)]) -> Arc<Self> {
            Arc::new(Scripted {
                delay,
                script: script.iter().map(|(id, s)| (format!("https://{id}/mcp"), s.clone())).collect(),
                calls: Mutex::new(vec![]),
            })
        }
        fn calls(&self) -> Vec<String> {
            self.calls.lock().unwrap().iter().map(|e| e.trim_start_matches("https://").trim_end_matches("/mcp").to_owned()).collect()
        }
    }

    impl Transport for Scripted {
        fn send<'a>(&'a self, p: &'a Provider, _: &'a Value, _: &'a RequestContext) -> Pin<Box<dyn Future<Output = Result<Value, RequestError>> + Send + 'a>> {
            Box::pin(async move {
                let n = {
                    let mut calls = self.calls.lock().unwrap();
                    calls.push(p.endpoint.clone());
                    calls.iter().filter(|e| **e == p.endpoint).count()
                };
                tokio::time::sleep(self.delay).await;
                let outcomes = &self.script[&p.endpoint];
                outcomes[(n - 1).min(outcomes.len() - 1)].clone()
            })
        }
    }

    fn refused() -> Result<Value, RequestError> {
        Err(RequestError { error: Error::new(ErrorKind::ConnectFailed, "refused"), delivered: false })
    }

    fn lost_after_delivery() -> Result<Value, RequestError> {
        Err(RequestError { error: Error::new(ErrorKind::ConnectionLost, "reset"), delivered: true })
    }

    const T: Duration = Duration::from_secs(30);

    fn target<'a>(capability: &'a str, providers: &'a [Provider]) -> Target<'a> {
        Target { key: "k", capability, providers, timeout: T }
    }

    #[tokio::test(start_paused = true)]
    async fn spreads_calls_across_the_best_providers() {
        let t = Scripted::new(Duration::ZERO, &[("a", vec![Ok(Value::from(1))]), ("b", vec![Ok(Value::from(2))]), ("c", vec![Ok(Value::from(3))])]);
        let pipeline = Pipeline::new();
        let providers = [provider("a", 1), provider("b", 1), provider("c", 0)];
        for _ in 0..4 {
            pipeline.call(&*t, target("c", &providers), Value::Null, &RequestContext::default()).await.unwrap();
        }
        assert_eq!(t.calls(), ["a", "b", "a", "b"], "the lower-scored provider is only a fallback");
    }

    #[tokio::test(start_paused = true)]
    async fn fails_over_when_not_delivered_and_backs_off() {
        let t = Scripted::new(Duration::ZERO, &[("a", vec![refused()]), ("b", vec![Ok(Value::from(2))])]);
        let pipeline = Pipeline::new();
        let start = Instant::now();
        let v = pipeline.call(&*t, target("c", &[provider("a", 0), provider("b", 0)]), Value::Null, &RequestContext::default()).await;
        assert_eq!(v.unwrap(), Value::from(2));
        assert_eq!(t.calls(), ["a", "b"]);
        assert_eq!(Instant::now() - start, BACKOFF_BASE);
        // "a" is cooling down now: the next call goes to "b" first even though it is a's turn.
        pipeline.call(&*t, target("c", &[provider("a", 0), provider("b", 0)]), Value::Null, &RequestContext::default()).await.unwrap();
        assert_eq!(t.calls(), ["a", "b", "b"]);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_a_single_provider_with_bounded_backoff_then_reports_the_failure() {
        let t = Scripted::new(Duration::ZERO, &[("a", vec![refused()])]);
        let start = Instant::now();
        let e = Pipeline::new().call(&*t, target("c", &[provider("a", 0)]), Value::Null, &RequestContext::default()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectFailed);
        assert_eq!(t.calls().len(), MIN_ATTEMPTS);
        assert_eq!(Instant::now() - start, BACKOFF_BASE + BACKOFF_BASE * 2);
    }

    fn untrusted() -> Result<Value, RequestError> {
        Err(RequestError { error: Error::new(ErrorKind::PeerCertificateUntrusted, "foreign CA"), delivered: false })
    }

    #[tokio::test(start_paused = true)]
    async fn a_provider_failing_verification_is_skipped_counted_and_not_retried() {
        let t = Scripted::new(Duration::ZERO, &[("bad", vec![untrusted()]), ("good", vec![Ok(Value::from(2))])]);
        let pipeline = Pipeline::new();
        let providers = [provider("bad", 0), provider("good", 0)];
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(pipeline.call(&*t, target("c", &providers), Value::Null, &RequestContext::default()).await.unwrap(), Value::from(2));
        }
        assert_eq!(t.calls(), ["bad", "good", "good", "good"], "tried last while cooling down");
        assert_eq!(Instant::now() - start, Duration::ZERO, "no backoff for a refused certificate");
        assert_eq!(pipeline.failovers(), Failovers { unreachable: 0, refused_certificate: 1 });

        let t = Scripted::new(Duration::ZERO, &[("bad", vec![untrusted()])]);
        let e = Pipeline::new().call(&*t, target("c", &[provider("bad", 0)]), Value::Null, &RequestContext::default()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PeerCertificateUntrusted);
        assert_eq!(t.calls(), ["bad"], "a refused certificate is not retried within the call");
    }

    #[tokio::test(start_paused = true)]
    async fn never_retries_a_delivered_request() {
        let t = Scripted::new(Duration::ZERO, &[("a", vec![lost_after_delivery()]), ("b", vec![Ok(Value::from(2))])]);
        let e = Pipeline::new().call(&*t, target("c", &[provider("a", 0), provider("b", 0)]), Value::Null, &RequestContext::default()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionLost);
        assert_eq!(t.calls(), ["a"]);
    }

    #[tokio::test(start_paused = true)]
    async fn times_out_at_the_dependency_timeout_or_the_callers_deadline() {
        let t = Scripted::new(Duration::from_secs(60), &[("a", vec![Ok(Value::from(1))])]);
        let start = Instant::now();
        let e = Pipeline::new().call(&*t, target("add", &[provider("a", 0)]), Value::Null, &RequestContext::default()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout);
        assert_eq!(e.message(), "no answer from a provider of 'add' within 30000 ms");
        assert_eq!(Instant::now() - start, T);

        let ctx = RequestContext { deadline: Some(Instant::now() + Duration::from_secs(2)), ..Default::default() };
        let start = Instant::now();
        let e = Pipeline::new().call(&*t, target("add", &[provider("a", 0)]), Value::Null, &ctx).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout);
        assert_eq!(Instant::now() - start, Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn no_providers_is_unresolved() {
        let t = Scripted::new(Duration::ZERO, &[]);
        let e = Pipeline::new().call(&*t, target("add", &[]), Value::Null, &RequestContext::default()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::DependencyUnresolved);
        assert!(e.message().contains("'add'"));
    }
}
