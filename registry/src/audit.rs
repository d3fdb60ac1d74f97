//! The registry's audit of denials: every refusal of an identity (a name its certificate does
//! not carry, an agent it does not own, a quota, an admin route) is one structured event, logged
//! as a `warn` with its fields and kept in a bounded ring of the most recent ones, which
//! `GET /v1/audit` (admins only) and `toolmesh audit` show.
//!
//! Any part of the registry records through [`Audit::record`]; policy denials will too.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Mutex;
use toolmesh_core::registry_api::AuditEvent;

/// How many events are kept by default; older ones are dropped first.
pub const DEFAULT_CAPACITY: usize = 1000;

/// What was denied and by which rule, before the caller and the time are known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub kind: &'static str,
    /// A fixed rule name (`name_not_in_certificate`) or a policy rule's name.
    pub rule: Cow<'static, str>,
    pub agent: Option<String>,
    pub tool: Option<String>,
}

impl Denial {
    pub fn new(kind: &'static str, rule: impl Into<Cow<'static, str>>) -> Self {
        Denial { kind, rule: rule.into(), agent: None, tool: None }
    }
}

/// Who was denied: the verified identity, its entity, and where the request came from.
pub struct Subject<'a> {
    pub identity: &'a str,
    pub entity: Option<&'a str>,
    pub origin: Option<String>,
}

pub struct Audit {
    capacity: usize,
    events: Mutex<VecDeque<AuditEvent>>,
}

impl Default for Audit {
    fn default() -> Self {
        Audit::new(DEFAULT_CAPACITY)
    }
}

impl Audit {
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Audit { capacity, events: Mutex::new(VecDeque::with_capacity(capacity.min(DEFAULT_CAPACITY))) }
    }

    /// Logs the event and keeps it, dropping the oldest when full.
    pub fn record(&self, event: AuditEvent) {
        tracing::warn!(
            target: "toolmesh::audit",
            kind = %event.kind,
            rule = %event.rule,
            caller = %event.caller,
            entity = event.entity.as_deref().unwrap_or("-"),
            origin = event.origin.as_deref().unwrap_or("-"),
            agent = event.agent.as_deref().unwrap_or("-"),
            tool = event.tool.as_deref().unwrap_or("-"),
            "denied: {}",
            event.message
        );
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        if events.len() == self.capacity {
            events.pop_front();
        }
        events.push_back(event);
    }

    /// Records `denial` of `subject`, answered with `message`.
    pub fn deny(&self, subject: &Subject<'_>, denial: Denial, message: &str) {
        self.record(AuditEvent {
            time: now_rfc3339(),
            kind: denial.kind.to_owned(),
            rule: denial.rule.into_owned(),
            caller: subject.identity.to_owned(),
            entity: subject.entity.map(str::to_owned),
            origin: subject.origin.clone(),
            agent: denial.agent,
            tool: denial.tool,
            message: message.to_owned(),
        });
    }

    /// The most recent `limit` events (of `kind`, if given), oldest first.
    pub fn recent(&self, limit: usize, kind: Option<&str>) -> Vec<AuditEvent> {
        let events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        let mut picked: Vec<AuditEvent> = events.iter().rev().filter(|e| kind.is_none_or(|k| e.kind == k)).take(limit).cloned().collect();
        picked.reverse();
        picked
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

use toolmesh_core::logging::now_rfc3339;

#[cfg(test)]
mod tests {
    use super::*;

    fn subject() -> Subject<'static> {
        Subject { identity: "spiffe://td/agent/evil", entity: None, origin: Some("127.0.0.1:1".to_owned()) }
    }

    #[test]
    fn keeps_the_most_recent_events_and_filters_by_kind() {
        let audit = Audit::new(3);
        for (i, kind) in ["a", "b", "a", "b", "a"].into_iter().enumerate() {
            let denial = Denial {
                kind: if kind == "a" { "quota_exceeded" } else { "registration_refused" },
                rule: "r".into(),
                agent: Some(format!("n{i}")),
                tool: None,
            };
            audit.deny(&subject(), denial, "no");
        }
        let agents = |events: Vec<AuditEvent>| events.into_iter().filter_map(|e| e.agent).collect::<Vec<_>>();
        assert_eq!(agents(audit.recent(10, None)), ["n2", "n3", "n4"], "bounded, oldest first");
        assert_eq!(agents(audit.recent(2, None)), ["n3", "n4"], "the limit keeps the newest");
        assert_eq!(agents(audit.recent(10, Some("quota_exceeded"))), ["n2", "n4"]);
        let event = &audit.recent(1, None)[0];
        assert_eq!(
            (event.caller.as_str(), event.origin.as_deref(), event.rule.as_str()),
            ("spiffe://td/agent/evil", Some("127.0.0.1:1"), "r")
        );
        assert!(event.time.len() >= 20 && event.time.contains('T') && event.time.ends_with('Z'), "RFC 3339 UTC: {}", event.time);
    }
}
