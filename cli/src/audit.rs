//! `toolmesh audit`: the registry's recent denials, one line each, oldest first.

use crate::ops::{to_json, RegistryAccess};
use crate::Failure;
use clap::Args;
use toolmesh_core::registry_api::AuditEvent;

#[derive(Args)]
pub struct AuditArgs {
    /// At most this many events, the most recent.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..), value_name = "N")]
    limit: u64,
    /// Only events of this kind, e.g. registration_refused, quota_exceeded, admin_required.
    #[arg(long, value_name = "KIND")]
    kind: Option<String>,
    /// Print the registry's JSON answer instead of lines.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    access: RegistryAccess,
}

pub async fn run(args: AuditArgs) -> Result<(), Failure> {
    let (registry, _) = args.access.connect()?;
    let audit = registry.audit(Some(args.limit as usize), args.kind.as_deref()).await?;
    if args.json {
        println!("{}", to_json(&audit)?);
    } else if audit.events.is_empty() {
        println!("no denials recorded at {}", registry.url());
    } else {
        for event in &audit.events {
            println!("{}", line(event));
        }
    }
    Ok(())
}

/// `TIME KIND RULE caller=… [entity=…] [origin=…] [agent=…] [tool=…]: message`, every field
/// escaped so that nothing a caller sent can forge lines or drive the terminal.
fn line(event: &AuditEvent) -> String {
    let mut out = format!("{} {} {} caller={}", escape(&event.time), escape(&event.kind), escape(&event.rule), escape(&event.caller));
    for (name, value) in [("entity", &event.entity), ("origin", &event.origin), ("agent", &event.agent), ("tool", &event.tool)] {
        if let Some(value) = value {
            out.push_str(&format!(" {name}={}", escape(value)));
        }
    }
    out.push_str(": ");
    out.push_str(&escape(&event.message));
    out
}

/// Control characters (newlines, escape sequences, bidi overrides are not control but C1 and
/// C0 are) as `\u{..}` escapes.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}') {
            out.push_str(&c.escape_unicode().to_string());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_has_every_field_and_escapes_control_characters() {
        let event = AuditEvent {
            time: "2026-01-02T03:04:05Z".into(),
            kind: "registration_refused".into(),
            rule: "name_not_in_certificate".into(),
            caller: "spiffe://td/agent/evil".into(),
            entity: None,
            origin: Some("127.0.0.1:5000".into()),
            agent: Some("calc\n2026-01-02T00:00:00Z forged\u{1b}[2J".into()),
            tool: Some("add".into()),
            message: "no".into(),
        };
        assert_eq!(
            line(&event),
            "2026-01-02T03:04:05Z registration_refused name_not_in_certificate caller=spiffe://td/agent/evil \
             origin=127.0.0.1:5000 agent=calc\\u{a}2026-01-02T00:00:00Z forged\\u{1b}[2J tool=add: no"
        );
        assert_eq!(escape("a\u{202E}b"), "a\\u{202e}b");
    }
}
