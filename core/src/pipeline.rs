//! The outbound call policy: spread calls across the best providers, fail over when a request
//! was not delivered (with bounded backoff), keep recently failed providers at the back, and
//! never outlive the deadline.

use crate::client::RequestError;
use crate::context::RequestContext;
use crate::error::{Error, ErrorKind, Result};
use crate::registry_api::Provider;
use serde_json::Value;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
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

/// One dependency call's target: the resolution key, the capability (for messages), the
/// providers ranked best first, and the time budget.
pub struct Target<'a> {
    pub key: &'a str,
    pub capability: &'a str,
    pub providers: &'a [Provider],
    pub timeout: Duration,
}

/// Per-agent call policy state: round-robin cursors and provider cool-downs.
#[derive(Default)]
pub struct Pipeline {
    cursors: Mutex<HashMap<String, std::sync::Arc<AtomicUsize>>>,
    cooling: Mutex<HashMap<String, Instant>>,
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
            for attempt in 0..attempts {
                if attempt > 0 {
                    let backoff = BACKOFF_BASE.saturating_mul(1 << (attempt - 1).min(8)).min(BACKOFF_MAX);
                    tokio::time::sleep(backoff).await;
                }
                let provider = order[attempt % order.len()];
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
                        self.cooling.lock().expect("pipeline lock").insert(provider.endpoint.clone(), Instant::now() + COOLDOWN);
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
