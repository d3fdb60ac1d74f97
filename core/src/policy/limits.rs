//! Per caller, per tool limits of an allowing rule: a token bucket for the rate and a count of
//! calls in flight. State is keyed by (rule, caller, tool), so a policy update that keeps a rule
//! keeps its buckets, and one caller's burst never spends another's.

use super::LimitsDocument;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Above this many tracked (rule, caller, tool) keys, full and idle entries are dropped.
const MAX_TRACKED: usize = 16_384;

#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Tokens per second and bucket size.
    rate: Option<(f64, f64)>,
    concurrency: Option<u32>,
}

impl Limits {
    pub(super) fn from_document(doc: &LimitsDocument) -> Result<Limits, String> {
        let rate = match doc.rate_per_second {
            Some(r) if !(r.is_finite() && r > 0.0) => return Err(format!("limits.ratePerSecond is {r}; give a number above 0")),
            Some(r) => Some((r, f64::from(doc.burst.unwrap_or_else(|| r.ceil().max(1.0) as u32)).max(1.0))),
            None if doc.burst.is_some() => return Err("limits.burst needs limits.ratePerSecond".to_owned()),
            None => None,
        };
        if doc.concurrency == Some(0) {
            return Err("limits.concurrency is 0, which allows nothing; give at least 1 (or deny with a rule)".to_owned());
        }
        if rate.is_none() && doc.concurrency.is_none() {
            return Err("limits is empty; give ratePerSecond and/or concurrency".to_owned());
        }
        Ok(Limits { rate, concurrency: doc.concurrency })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    rule: Arc<str>,
    caller: String,
    tool: String,
}

#[derive(Debug)]
struct Entry {
    tokens: f64,
    refilled: Instant,
    in_flight: u32,
}

/// Why a call was not admitted, and when to try again.
#[derive(Debug, Clone, PartialEq)]
pub struct Exceeded {
    pub message: String,
    pub retry_after: Duration,
}

/// The limit state of one agent.
#[derive(Debug, Default)]
pub struct Limiter {
    entries: Mutex<HashMap<Key, Entry>>,
}

/// Holds one call's place in its concurrency limit until dropped.
#[derive(Debug)]
pub struct Permit {
    release: Option<(Arc<Limiter>, Key)>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some((limiter, key)) = self.release.take() {
            let mut entries = limiter.entries.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(entry) = entries.get_mut(&key) {
                entry.in_flight = entry.in_flight.saturating_sub(1);
            }
        }
    }
}

impl Limiter {
    /// Admits a call of `caller` to `tool` under `rule`'s limits, or says when to retry.
    pub fn admit(self: &Arc<Self>, rule: &Arc<str>, limits: &Limits, caller: &str, tool: &str) -> Result<Permit, Exceeded> {
        let key = Key { rule: rule.clone(), caller: caller.to_owned(), tool: tool.to_owned() };
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_TRACKED && !entries.contains_key(&key) {
            entries.retain(|_, e| {
                e.in_flight > 0
                    || limits.rate.is_some_and(|(rate, burst)| e.tokens + rate * now.duration_since(e.refilled).as_secs_f64() < burst)
            });
        }
        let burst = limits.rate.map_or(0.0, |(_, burst)| burst);
        let entry = entries.entry(key.clone()).or_insert(Entry { tokens: burst, refilled: now, in_flight: 0 });
        if let Some(max) = limits.concurrency {
            if entry.in_flight >= max {
                return Err(Exceeded {
                    message: format!("{caller} has {max} calls to tool '{tool}' in flight, the most policy rule '{rule}' allows; retry when one finishes"),
                    retry_after: Duration::from_millis(100),
                });
            }
        }
        if let Some((rate, burst)) = limits.rate {
            entry.tokens = (entry.tokens + rate * now.duration_since(entry.refilled).as_secs_f64()).min(burst);
            entry.refilled = now;
            if entry.tokens < 1.0 {
                let retry_after = Duration::from_secs_f64((1.0 - entry.tokens) / rate).max(Duration::from_millis(1));
                return Err(Exceeded {
                    message: format!(
                        "{caller} called tool '{tool}' more than {rate} times per second, the rate policy rule '{rule}' allows; retry after {} ms",
                        retry_after.as_millis().max(1)
                    ),
                    retry_after,
                });
            }
            entry.tokens -= 1.0;
        }
        if limits.concurrency.is_none() {
            return Ok(Permit { release: None });
        }
        entry.in_flight += 1;
        Ok(Permit { release: Some((self.clone(), key)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rate: Option<f64>, burst: Option<u32>, concurrency: Option<u32>) -> Limits {
        Limits::from_document(&LimitsDocument { rate_per_second: rate, burst, concurrency }).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn the_rate_refills_over_time_and_says_when_to_retry() {
        let limiter = Arc::new(Limiter::default());
        let rule: Arc<str> = Arc::from("r");
        let l = limits(Some(2.0), Some(2), None);
        assert!(limiter.admit(&rule, &l, "a", "add").is_ok());
        assert!(limiter.admit(&rule, &l, "a", "add").is_ok());
        let refused = limiter.admit(&rule, &l, "a", "add").unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_millis(500));
        assert!(refused.message.contains("retry after 500 ms"), "{}", refused.message);
        // Another caller, and another tool, have buckets of their own.
        assert!(limiter.admit(&rule, &l, "b", "add").is_ok());
        assert!(limiter.admit(&rule, &l, "a", "sub").is_ok());
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(limiter.admit(&rule, &l, "a", "add").is_ok());
        assert!(limiter.admit(&rule, &l, "a", "add").is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn concurrency_counts_calls_in_flight_until_their_permits_drop() {
        let limiter = Arc::new(Limiter::default());
        let rule: Arc<str> = Arc::from("r");
        let l = limits(None, None, Some(2));
        let first = limiter.admit(&rule, &l, "a", "add").unwrap();
        let _second = limiter.admit(&rule, &l, "a", "add").unwrap();
        assert!(limiter.admit(&rule, &l, "a", "add").unwrap_err().message.contains("2 calls to tool 'add' in flight"));
        drop(first);
        assert!(limiter.admit(&rule, &l, "a", "add").is_ok());
    }

    #[test]
    fn limits_must_allow_something() {
        for (rate, burst, concurrency) in
            [(Some(0.0), None, None), (Some(f64::NAN), None, None), (None, Some(3), None), (None, None, Some(0)), (None, None, None)]
        {
            assert!(Limits::from_document(&LimitsDocument { rate_per_second: rate, burst, concurrency }).is_err());
        }
    }
}
