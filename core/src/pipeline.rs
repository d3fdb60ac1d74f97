//! The outbound call policy: spread calls across the best providers, fail over when a request
//! was not delivered (with bounded backoff), take providers that cannot be reached out of the
//! rotation until they answer again, and never outlive the deadline.
//!
//! A provider whose certificate fails our verification (another CA, a name it does not carry,
//! expired, an identity we do not allow) is skipped like an unreachable one: the call goes on to
//! the next provider, so one bad or impostor provider is never a dead end for every dependent.
//! Such a provider is not tried again within the call (its certificate will not change in
//! milliseconds) and is tried last for a while after.
//!
//! A provider that could not be reached (refused or dropped a connection) is *down* at once:
//! later calls skip it while any other provider is up. It comes back when a call gets through to
//! it: after a pause (1 s, doubling on each failure up to 30 s) one call tries it first (a
//! trial), and when every provider is down they are all still tried. A trial is the only proof
//! that *this* caller reaches it again (the registry's view may differ, across a partition), and
//! it costs at most one undelivered attempt per pause. A provider restarted under a new agent id
//! is a new provider, never down.
//!
//! A call is only ever sent again when the provider cannot have acted on it (it was not
//! delivered), or when the tool declares MCP's `readOnlyHint` or `idempotentHint`: then a
//! connection lost after delivery fails over too.

use crate::client::RequestError;
use crate::context::RequestContext;
use crate::error::{Error, ErrorKind, Result};
use crate::fx_hash::FxHashMap;
use crate::metrics::{ClientMetrics, Outcome};
use crate::registry_api::Provider;
use serde_json::Value;
use std::collections::HashMap;
use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
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
/// How long a provider that could not be reached is skipped before a call tries it again; each
/// failed trial doubles it, up to [`DOWN_MAX`].
const DOWN_FIRST: Duration = Duration::from_secs(1);
const DOWN_MAX: Duration = Duration::from_secs(30);
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

/// Per-agent call policy state: round-robin cursors, providers that are down or cooling down,
/// and the calls' metrics (failover counts among them).
#[derive(Default)]
pub struct Pipeline {
    cursors: Mutex<FxHashMap<String, Arc<AtomicUsize>>>,
    cooling: Mutex<HashMap<String, Instant>>,
    /// Providers that could not be reached, by endpoint.
    down: Mutex<HashMap<String, Down>>,
    metrics: Arc<ClientMetrics>,
    reports: UnreachableReports,
}

/// The agents this agent could not reach, for its next heartbeat to report (the registry then
/// probes them, and lists those it cannot reach either as `unreachable`). Clones share one list.
#[derive(Clone, Default)]
pub struct UnreachableReports(std::sync::Arc<Reports>);

#[derive(Default)]
struct Reports {
    agent_ids: Mutex<std::collections::BTreeSet<String>>,
    /// Wakes the heartbeat: a report goes out at once, not an interval later.
    added: tokio::sync::Notify,
}

impl UnreachableReports {
    /// Most agents one heartbeat reports; the registry probes no more.
    pub const MAX: usize = 16;

    pub fn report(&self, agent_id: &str) {
        let mut reports = self.0.agent_ids.lock().expect("reports lock");
        if reports.len() < Self::MAX && reports.insert(agent_id.to_owned()) {
            self.0.added.notify_one();
        }
    }

    /// The agents reported since the last take.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.agent_ids.lock().expect("reports lock")).into_iter().collect()
    }

    /// Returns once an agent was reported (at once if one was since the last call).
    pub async fn reported(&self) {
        self.0.added.notified().await;
    }
}

/// A provider that could not be reached, and when a call may try it again.
#[derive(Debug)]
struct Down {
    /// The agent that was down: another agent at the same endpoint (a restart) is not.
    agent_id: String,
    /// When a trial is due.
    retry_at: Instant,
    /// The pause before the next trial, should this one fail.
    pause: Duration,
    /// A call is trying it now: the others keep skipping it.
    on_trial: bool,
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
    /// Calls to a read-only or idempotent tool sent again after their connection broke once the
    /// provider had them.
    pub retried_after_delivery: u64,
}

impl Pipeline {
    pub fn new() -> Self {
        Self::default()
    }

    /// A pipeline that adds each provider it finds unreachable to `reports`.
    pub fn reporting(reports: UnreachableReports) -> Self {
        Pipeline { reports, ..Self::default() }
    }

    /// Calls one of the target's providers.
    pub async fn call<T: Transport + ?Sized>(
        &self,
        transport: &T,
        target: Target<'_>,
        arguments: Value,
        context: &RequestContext,
    ) -> Result<Value> {
        let Target { key, capability, providers, timeout } = target;
        let mut operation = self.metrics.start(providers);
        if providers.is_empty() {
            operation.ended(Outcome::Error(ErrorKind::DependencyUnresolved));
            return Err(Error::new(
                ErrorKind::DependencyUnresolved,
                format!("no healthy provider of '{capability}' is registered; start an agent that provides it, or check `toolmesh list`"),
            ));
        }
        let budget_end = Instant::now() + timeout;
        let deadline = context.deadline.map_or(budget_end, |d| d.min(budget_end));
        let (order, trial) = self.order(key, providers);
        // A trial claimed by a call that ends early (its deadline) must not stay claimed.
        let _trial = TrialGuard { pipeline: self, endpoint: trial };
        let attempt_all = async {
            let attempts = order.len().max(MIN_ATTEMPTS);
            let mut last_error = None;
            // Providers whose TLS failed: not tried again in this call.
            let mut refused: HashSet<&str> = HashSet::new();
            // Transport failures so far: each later attempt backs off longer.
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
                operation.trying(provider);
                match transport.send(provider, &arguments, context).await {
                    Ok(value) => {
                        self.answered(&provider.endpoint);
                        return Ok(value);
                    }
                    Err(RequestError { error, delivered }) if error.is_unreachable() => {
                        let error = name_the_provider(error, provider);
                        self.mark_down(provider);
                        if delivered && !provider.annotations.safe_to_repeat() {
                            // The provider may have acted on it: sending it again could do it twice.
                            return Err(error);
                        }
                        tracing::debug!(endpoint = %provider.endpoint, delivered, "provider unreachable, trying another: {error}");
                        let counter = if delivered { &self.metrics.retried_after_delivery } else { &self.metrics.unreachable };
                        counter.inc();
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
                        self.metrics.refused_certificate.inc();
                        self.cool(&provider.endpoint, REFUSED_COOLDOWN);
                        refused.insert(provider.endpoint.as_str());
                        last_error = Some(error);
                    }
                    Err(RequestError { error, delivered }) => {
                        if delivered {
                            // The provider answered (with an error of its own): it is up.
                            self.answered(&provider.endpoint);
                        }
                        return Err(error);
                    }
                }
            }
            Err(last_error.expect("at least one attempt ran"))
        };
        let result = match tokio::time::timeout_at(deadline, attempt_all).await {
            Ok(result) => result,
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                format!("no answer from a provider of '{capability}' within {} ms", deadline_ms(timeout, context, budget_end)),
            )),
        };
        operation.ended(result.as_ref().map_or_else(|e| Outcome::Error(e.kind()), |_| Outcome::Ok));
        result
    }

    /// The metrics of the calls made through this pipeline.
    pub fn metrics(&self) -> Arc<ClientMetrics> {
        self.metrics.clone()
    }

    /// How often calls went on to another provider since this pipeline was made.
    pub fn failovers(&self) -> Failovers {
        Failovers {
            unreachable: self.metrics.unreachable.get(),
            refused_certificate: self.metrics.refused_certificate.get(),
            retried_after_delivery: self.metrics.retried_after_delivery.get(),
        }
    }

    /// The endpoints this pipeline holds down now (for diagnostics and tests).
    pub fn down_endpoints(&self) -> Vec<String> {
        let mut down: Vec<String> = self.down.lock().expect("pipeline lock").keys().cloned().collect();
        down.sort();
        down
    }

    /// Puts a provider at the back of the order for `period`.
    fn cool(&self, endpoint: &str, period: Duration) {
        self.cooling.lock().expect("pipeline lock").insert(endpoint.to_owned(), Instant::now() + period);
    }

    /// The provider answered: it is up (again).
    fn answered(&self, endpoint: &str) {
        {
            let mut cooling = self.cooling.lock().expect("pipeline lock");
            if !cooling.is_empty() {
                cooling.remove(endpoint);
            }
        }
        let mut down = self.down.lock().expect("pipeline lock");
        if !down.is_empty() && down.remove(endpoint).is_some() {
            tracing::info!(%endpoint, "provider answers again: back in rotation");
        }
    }

    /// The provider could not be reached: skipped from now on until a trial gets through.
    fn mark_down(&self, provider: &Provider) {
        self.reports.report(&provider.agent_id);
        let mut down = self.down.lock().expect("pipeline lock");
        let now = Instant::now();
        match down.get_mut(&provider.endpoint) {
            Some(d) if d.agent_id == provider.agent_id => {
                d.retry_at = now + d.pause;
                d.pause = (d.pause * 2).min(DOWN_MAX);
                d.on_trial = false;
            }
            _ => {
                tracing::warn!(
                    provider = %provider.agent_id,
                    name = %provider.agent_name,
                    endpoint = %provider.endpoint,
                    "provider unreachable: calls go to the other providers until it answers again"
                );
                let entry =
                    Down { agent_id: provider.agent_id.clone(), retry_at: now + DOWN_FIRST, pause: DOWN_FIRST * 2, on_trial: false };
                down.insert(provider.endpoint.clone(), entry);
            }
        }
    }

    /// The order to try providers in, and the endpoint of a down provider this call tries first
    /// as its trial, if any. The best-scored group is rotated round-robin, then the rest;
    /// providers cooling down after a refused certificate go last; providers that are down are
    /// left out (but for a trial that is due) unless every provider is down.
    fn order<'p>(&self, key: &str, providers: &'p [Provider]) -> (Vec<&'p Provider>, Option<String>) {
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
        let mut order: Vec<&Provider> = providers[start..best].iter().chain(&providers[..start]).chain(&providers[best..]).collect();
        let now = Instant::now();
        {
            let mut cooling = self.cooling.lock().expect("pipeline lock");
            cooling.retain(|_, until| *until > now);
            if !cooling.is_empty() {
                order.sort_by_key(|p| cooling.contains_key(&p.endpoint));
            }
        }
        let mut down = self.down.lock().expect("pipeline lock");
        if down.is_empty() {
            return (order, None);
        }
        let is_down = |down: &HashMap<String, Down>, p: &Provider| down.get(&p.endpoint).is_some_and(|d| d.agent_id == p.agent_id);
        let up: Vec<&Provider> = order.iter().copied().filter(|p| !is_down(&down, p)).collect();
        if up.is_empty() {
            // Every provider is down: try them all, the one longest down first (it may be back).
            order.sort_by_key(|p| down.get(&p.endpoint).map(|d| d.retry_at));
            return (order, None);
        }
        let trial = order
            .iter()
            .copied()
            .find(|p| down.get(&p.endpoint).is_some_and(|d| d.agent_id == p.agent_id && !d.on_trial && d.retry_at <= now));
        match trial {
            Some(p) => {
                down.get_mut(&p.endpoint).expect("found above").on_trial = true;
                (std::iter::once(p).chain(up).collect(), Some(p.endpoint.clone()))
            }
            None => (up, None),
        }
    }
}

/// Releases a call's claim on a trial however the call ends; a trial that neither answered nor
/// failed (the call ran out of time first) is due again at once for the next call.
struct TrialGuard<'a> {
    pipeline: &'a Pipeline,
    endpoint: Option<String>,
}

impl Drop for TrialGuard<'_> {
    fn drop(&mut self) {
        if let Some(endpoint) = &self.endpoint {
            if let Some(d) = self.pipeline.down.lock().expect("pipeline lock").get_mut(endpoint) {
                d.on_trial = false;
            }
        }
    }
}

/// A transport error names who the call was for: the agent, the tool and the address.
fn name_the_provider(error: Error, provider: &Provider) -> Error {
    error.context(format!("tool '{}' of agent '{}' ({}) at {}", provider.tool, provider.agent_name, provider.agent_id, provider.endpoint))
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
            annotations: Default::default(),
            param_headers: vec![],
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
        fn send<'a>(
            &'a self,
            p: &'a Provider,
            _: &'a Value,
            _: &'a RequestContext,
        ) -> Pin<Box<dyn Future<Output = Result<Value, RequestError>> + Send + 'a>> {
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
        let t = Scripted::new(
            Duration::ZERO,
            &[("a", vec![Ok(Value::from(1))]), ("b", vec![Ok(Value::from(2))]), ("c", vec![Ok(Value::from(3))])],
        );
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
        assert_eq!(pipeline.failovers(), Failovers { unreachable: 0, refused_certificate: 1, retried_after_delivery: 0 });

        let t = Scripted::new(Duration::ZERO, &[("bad", vec![untrusted()])]);
        let e = Pipeline::new().call(&*t, target("c", &[provider("bad", 0)]), Value::Null, &RequestContext::default()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PeerCertificateUntrusted);
        assert_eq!(t.calls(), ["bad"], "a refused certificate is not retried within the call");
    }

    #[tokio::test(start_paused = true)]
    async fn never_retries_a_delivered_request() {
        let t = Scripted::new(Duration::ZERO, &[("a", vec![lost_after_delivery()]), ("b", vec![Ok(Value::from(2))])]);
        let e = Pipeline::new()
            .call(&*t, target("c", &[provider("a", 0), provider("b", 0)]), Value::Null, &RequestContext::default())
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionLost);
        assert_eq!(t.calls(), ["a"]);
    }

    fn idempotent(mut p: Provider) -> Provider {
        p.annotations.idempotent_hint = Some(true);
        p
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_lost_after_delivery_fails_over_only_for_read_only_or_idempotent_tools() {
        let script = [("a", vec![lost_after_delivery()]), ("b", vec![Ok(Value::from(2))])];
        let t = Scripted::new(Duration::ZERO, &script);
        let pipeline = Pipeline::new();
        let providers = [idempotent(provider("a", 0)), idempotent(provider("b", 0))];
        assert_eq!(pipeline.call(&*t, target("c", &providers), Value::Null, &RequestContext::default()).await.unwrap(), Value::from(2));
        assert_eq!(t.calls(), ["a", "b"]);
        assert_eq!(pipeline.failovers().retried_after_delivery, 1);

        let t = Scripted::new(Duration::ZERO, &script);
        let mut read_only = provider("a", 0);
        read_only.annotations.read_only_hint = Some(true);
        let providers = [read_only, provider("b", 0)];
        assert_eq!(
            Pipeline::new().call(&*t, target("c", &providers), Value::Null, &RequestContext::default()).await.unwrap(),
            Value::from(2)
        );

        // Declared not idempotent (or not declared): the provider may have acted; never twice.
        let t = Scripted::new(Duration::ZERO, &script);
        let mut not_idempotent = provider("a", 0);
        not_idempotent.annotations.idempotent_hint = Some(false);
        let e = Pipeline::new()
            .call(&*t, target("c", &[not_idempotent, provider("b", 0)]), Value::Null, &RequestContext::default())
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionLost);
        assert_eq!(t.calls(), ["a"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_transport_error_names_the_agent_the_tool_and_the_address() {
        let t = Scripted::new(Duration::ZERO, &[("a", vec![refused()])]);
        let e = Pipeline::new().call(&*t, target("c", &[provider("a", 0)]), Value::Null, &RequestContext::default()).await.unwrap_err();
        assert_eq!(e.message(), "tool 't' of agent 'a' (a) at https://a/mcp: refused");
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreachable_provider_is_down_until_a_trial_gets_through() {
        let t = Scripted::new(Duration::ZERO, &[("a", vec![refused(), refused(), Ok(Value::from(1))]), ("b", vec![Ok(Value::from(2))])]);
        let pipeline = Pipeline::new();
        let providers = [provider("a", 0), provider("b", 0)];
        let context = RequestContext::default();
        let call = || pipeline.call(&*t, target("c", &providers), Value::Null, &context);
        assert_eq!(call().await.unwrap(), Value::from(2), "failed over at once");
        assert_eq!(pipeline.down_endpoints(), ["https://a/mcp"]);
        for _ in 0..4 {
            call().await.unwrap();
        }
        assert_eq!(t.calls(), ["a", "b", "b", "b", "b", "b"], "a is not tried while down, though it is its turn");
        // The pause is over: one call tries it first; it is still down, so the pause doubles.
        tokio::time::advance(DOWN_FIRST).await;
        assert_eq!(call().await.unwrap(), Value::from(2));
        assert_eq!(t.calls()[6..], ["a", "b"]);
        tokio::time::advance(DOWN_FIRST).await;
        call().await.unwrap();
        assert_eq!(t.calls()[8..], ["b"], "the second pause is twice as long");
        tokio::time::advance(DOWN_FIRST).await;
        assert_eq!(call().await.unwrap(), Value::from(1), "the trial got through");
        assert!(pipeline.down_endpoints().is_empty());
        call().await.unwrap();
        call().await.unwrap();
        assert_eq!(t.calls()[9..], ["a", "a", "b"], "back in rotation (the trial, then its turn and b's)");

        // A restarted agent at the same address (a new agent id) is not down.
        let t = Scripted::new(Duration::ZERO, &[("a", vec![refused(), Ok(Value::from(1))]), ("b", vec![Ok(Value::from(2))])]);
        let pipeline = Pipeline::new();
        pipeline.call(&*t, target("c", &providers), Value::Null, &RequestContext::default()).await.unwrap();
        let mut restarted = provider("a", 0);
        restarted.agent_id = "a-2".into();
        let providers = [restarted, provider("b", 0)];
        for _ in 0..2 {
            pipeline.call(&*t, target("c", &providers), Value::Null, &RequestContext::default()).await.unwrap();
        }
        assert_eq!(t.calls(), ["a", "b", "b", "a"], "the restarted a takes its turn");
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
    async fn the_backoff_between_attempts_doubles_up_to_its_maximum() {
        let names = ["p0", "p1", "p2", "p3", "p4", "p5", "p6", "p7"];
        let script: Vec<_> = names.iter().map(|n| (*n, vec![refused()])).collect();
        let t = Scripted::new(Duration::ZERO, &script);
        let providers: Vec<Provider> = names.iter().map(|n| provider(n, 0)).collect();
        let start = Instant::now();
        let e = Pipeline::new().call(&*t, target("c", &providers), Value::Null, &RequestContext::default()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectFailed);
        assert_eq!(t.calls(), names, "each provider is tried once");
        // 25, 50, 100, 200, 400 ms, then the cap (500 ms) twice.
        assert_eq!(Instant::now() - start, Duration::from_millis(25 + 50 + 100 + 200 + 400 + 500 + 500));
    }

    #[tokio::test(start_paused = true)]
    async fn the_pause_before_trying_a_down_provider_again_doubles_up_to_its_maximum() {
        let t = Scripted::new(Duration::ZERO, &[("a", vec![refused()]), ("b", vec![Ok(Value::from(2))])]);
        let pipeline = Pipeline::new();
        let providers = [provider("a", 0), provider("b", 0)];
        let context = RequestContext::default();
        let call = || pipeline.call(&*t, target("c", &providers), Value::Null, &context);
        call().await.unwrap();
        assert_eq!(t.calls(), ["a", "b"]);
        // a failed, then b was tried after one backoff: a's pause counts from its failure.
        let mut failed_at = Instant::now() - BACKOFF_BASE;
        for pause_s in [1, 2, 4, 8, 16, 30, 30] {
            let pause = Duration::from_secs(pause_s);
            tokio::time::advance(failed_at + pause - Duration::from_millis(1) - Instant::now()).await;
            let before = t.calls().len();
            call().await.unwrap();
            assert_eq!(t.calls()[before..], ["b"], "a was tried again before its pause of {pause_s} s was over");
            tokio::time::advance(Duration::from_millis(1)).await;
            call().await.unwrap();
            assert_eq!(t.calls()[before + 1..], ["a", "b"], "a was not tried again after its pause of {pause_s} s");
            failed_at = Instant::now() - BACKOFF_BASE;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_provider_that_failed_verification_takes_its_turn_again_after_the_cooldown() {
        let t = Scripted::new(Duration::ZERO, &[("bad", vec![untrusted(), Ok(Value::from(1))]), ("good", vec![Ok(Value::from(2))])]);
        let pipeline = Pipeline::new();
        let providers = [provider("bad", 0), provider("good", 0)];
        let context = RequestContext::default();
        let call = || pipeline.call(&*t, target("c", &providers), Value::Null, &context);
        assert_eq!(call().await.unwrap(), Value::from(2));
        assert_eq!(t.calls(), ["bad", "good"]);
        tokio::time::advance(REFUSED_COOLDOWN - Duration::from_millis(1)).await;
        for _ in 0..2 {
            assert_eq!(call().await.unwrap(), Value::from(2));
        }
        assert_eq!(t.calls()[2..], ["good", "good"], "tried last until the cooldown is over (and good always answers)");
        tokio::time::advance(Duration::from_millis(1)).await;
        let answers = [call().await.unwrap(), call().await.unwrap()];
        assert_eq!(t.calls()[4..], ["good", "bad"], "each takes its turn again once the cooldown is over");
        assert_eq!(answers, [Value::from(2), Value::from(1)]);
        assert_eq!(pipeline.failovers().refused_certificate, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_trial_is_tried_by_one_call_at_a_time_and_released_when_that_call_runs_out_of_time() {
        let pipeline = Pipeline::new();
        let providers = [provider("a", 0), provider("b", 0)];
        let fails = Scripted::new(Duration::ZERO, &[("a", vec![refused()]), ("b", vec![Ok(Value::from(2))])]);
        pipeline.call(&*fails, target("c", &providers), Value::Null, &RequestContext::default()).await.unwrap();
        assert_eq!(pipeline.down_endpoints(), ["https://a/mcp"]);
        tokio::time::advance(DOWN_FIRST).await;

        // The trial hangs past its caller's deadline; a call meanwhile leaves a to it.
        let hangs = Scripted::new(Duration::from_secs(60), &[("a", vec![Ok(Value::from(1))]), ("b", vec![Ok(Value::from(2))])]);
        let answers = Scripted::new(Duration::ZERO, &[("a", vec![Ok(Value::from(1))]), ("b", vec![Ok(Value::from(2))])]);
        let short = RequestContext { deadline: Some(Instant::now() + Duration::from_secs(1)), ..Default::default() };
        let (trial, meanwhile) = tokio::join!(pipeline.call(&*hangs, target("c", &providers), Value::Null, &short), async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            pipeline.call(&*answers, target("c", &providers), Value::Null, &RequestContext::default()).await
        });
        assert_eq!(trial.unwrap_err().kind(), ErrorKind::Timeout);
        assert_eq!(hangs.calls(), ["a"], "the due trial goes first");
        assert_eq!(meanwhile.unwrap(), Value::from(2));
        assert_eq!(answers.calls(), ["b"], "a provider on trial is left to that call");

        // The trial neither answered nor failed: the next call tries it at once.
        assert_eq!(
            pipeline.call(&*answers, target("c", &providers), Value::Null, &RequestContext::default()).await.unwrap(),
            Value::from(1)
        );
        assert_eq!(answers.calls()[1..], ["a"]);
        assert!(pipeline.down_endpoints().is_empty(), "the trial got through");
    }

    #[tokio::test(start_paused = true)]
    async fn when_every_provider_is_down_all_are_tried_the_one_due_soonest_first() {
        let t = Scripted::new(
            Duration::ZERO,
            &[("a", vec![refused(), refused(), Ok(Value::from(1))]), ("b", vec![refused(), Ok(Value::from(2))])],
        );
        let pipeline = Pipeline::new();
        // a goes down, then (a backoff later) b: both down, a the longer.
        let e = pipeline.call(&*t, target("c", &[provider("a", 0), provider("b", 0)]), Value::Null, &RequestContext::default()).await;
        assert_eq!(e.unwrap_err().kind(), ErrorKind::ConnectFailed);
        assert_eq!(t.calls(), ["a", "b", "a"]);
        assert_eq!(pipeline.down_endpoints(), ["https://a/mcp", "https://b/mcp"]);
        // No pause is over, yet the next call still tries them: b first, whose trial is due
        // sooner (a failed again last, and its pause doubled).
        let v = pipeline.call(&*t, target("c", &[provider("a", 0), provider("b", 0)]), Value::Null, &RequestContext::default()).await;
        assert_eq!(v.unwrap(), Value::from(2));
        assert_eq!(t.calls()[3..], ["b"]);
    }

    #[tokio::test(start_paused = true)]
    async fn no_providers_is_unresolved() {
        let t = Scripted::new(Duration::ZERO, &[]);
        let e = Pipeline::new().call(&*t, target("add", &[]), Value::Null, &RequestContext::default()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::DependencyUnresolved);
        assert!(e.message().contains("'add'"));
    }
}
