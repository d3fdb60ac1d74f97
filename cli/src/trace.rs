//! `toolmesh trace`: the traces the registry keeps (agents export there when they name no OTLP
//! collector). `toolmesh trace TRACE_ID` prints one as a call tree; `--last N` lists the most
//! recent, one line each (or each as a tree with `--tree`).

use crate::audit::escape;
use crate::ops::{to_json, RegistryAccess};
use crate::Failure;
use clap::Args;
use std::collections::{HashMap, HashSet};
use toolmesh_core::registry_api::{TraceDetail, TraceSpan, TraceSpanKind, TraceSummary};
use toolmesh_core::registry_client::RegistryClient;
use toolmesh_core::{Error, ErrorKind};

#[derive(Args)]
pub struct TraceArgs {
    /// The trace to show (32 hex digits, as `--last` lists them, or as a handler reads its
    /// context's trace id).
    #[arg(value_name = "TRACE_ID", required_unless_present = "last", conflicts_with = "last")]
    trace_id: Option<String>,
    /// List the N most recent traces instead, newest first.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1000))]
    last: Option<u64>,
    /// With --last: print each trace as its call tree.
    #[arg(long, requires = "last")]
    tree: bool,
    /// Print the registry's JSON answer instead.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    access: RegistryAccess,
}

pub async fn run(args: TraceArgs) -> Result<(), Failure> {
    let (registry, _) = args.access.connect()?;
    match (&args.trace_id, args.last) {
        (Some(id), _) => {
            let trace = fetch(&registry, id).await?;
            if args.json {
                println!("{}", to_json(&trace)?);
            } else {
                print!("{}", tree(&trace));
            }
        }
        (None, Some(last)) => {
            let list = registry.recent_traces(last as usize).await.map_err(|e| unreachable_hint(&registry, e))?;
            if args.json {
                println!("{}", to_json(&list)?);
            } else if list.traces.is_empty() {
                println!(
                    "the registry at {} keeps no traces yet: agents export their spans to it every OTEL_BSP_SCHEDULE_DELAY ms \
                     (5000 by default) unless OTEL_EXPORTER_OTLP_ENDPOINT names a collector of their own",
                    registry.url()
                );
            } else if args.tree {
                for summary in &list.traces {
                    print!("{}", tree(&fetch(&registry, &summary.trace_id).await?));
                }
            } else {
                for summary in &list.traces {
                    println!("{}", line(summary));
                }
            }
        }
        (None, None) => unreachable!("clap requires TRACE_ID or --last"),
    }
    Ok(())
}

async fn fetch(registry: &RegistryClient, id: &str) -> Result<TraceDetail, Failure> {
    let id = id.trim().to_ascii_lowercase();
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Failure::usage(Error::new(
            ErrorKind::InvalidArguments,
            format!("'{}' is not a trace id: write its 32 hex digits, as `toolmesh trace --last 10` lists them", escape(&id)),
        )));
    }
    match registry.trace(&id).await.map_err(|e| unreachable_hint(registry, e))? {
        Some(trace) => Ok(trace),
        None => Err(Failure::from(Error::new(
            ErrorKind::InvalidArguments,
            format!(
                "the registry at {} keeps no span of trace {id}: its agents have not exported it yet (they send every \
                 OTEL_BSP_SCHEDULE_DELAY ms, 5000 by default), they export to a collector of their own (OTEL_EXPORTER_OTLP_ENDPOINT \
                 is set: look there), or it was evicted (the registry keeps the most recent ones); `toolmesh trace --last 20` \
                 lists what it keeps",
                registry.url()
            ),
        ))),
    }
}

/// A registry that does not answer: say where the URL came from.
fn unreachable_hint(registry: &RegistryClient, error: Error) -> Error {
    if error.kind() != ErrorKind::RegistryUnavailable {
        return error;
    }
    Error::new(
        ErrorKind::RegistryUnavailable,
        format!(
            "cannot read traces from the registry at {}: {}; check that `toolmesh registry` runs there (the URL comes from \
             --registry or TOOLMESH_REGISTRY_URL)",
            registry.url(),
            error.message()
        ),
    )
}

/// `TRACE_ID  START  DURATION  N spans  [N errors]  SERVICE: ROOT`
fn line(summary: &TraceSummary) -> String {
    let errors = match summary.error_count {
        0 => String::new(),
        1 => "  1 error".to_owned(),
        n => format!("  {n} errors"),
    };
    format!(
        "{}  {}  {:>10}  {} span{}{errors}  {}: {}",
        summary.trace_id,
        timestamp(summary.start_unix_nano),
        duration(summary.duration_ns),
        summary.span_count,
        if summary.span_count == 1 { "" } else { "s" },
        escape(&summary.root_service),
        escape(&summary.root_name)
    )
}

/// The trace as its call tree: a heading, then one line per span, a child indented under its
/// parent and after it, siblings by start:
/// `+OFFSET  DURATION  SERVICE  NAME (KIND)  ✗ ERROR`. A span whose parent is not kept starts a
/// tree of its own, marked so.
fn tree(trace: &TraceDetail) -> String {
    let start = trace.spans.iter().map(|s| s.start_unix_nano).min().unwrap_or(0);
    let end = trace.spans.iter().map(|s| s.end_unix_nano).max().unwrap_or(0);
    let errors = trace.spans.iter().filter(|s| s.error.is_some()).count();
    let mut out = format!(
        "trace {}  {}  {}  {} span{}{}\n",
        trace.trace_id,
        timestamp(start),
        duration(end.saturating_sub(start)),
        trace.spans.len(),
        if trace.spans.len() == 1 { "" } else { "s" },
        match errors {
            0 => String::new(),
            1 => ", 1 error".to_owned(),
            n => format!(", {n} errors"),
        }
    );
    let ids: HashSet<&str> = trace.spans.iter().map(|s| s.span_id.as_str()).collect();
    let mut children: HashMap<&str, Vec<&TraceSpan>> = HashMap::new();
    let mut roots = Vec::new();
    // The spans come by start, so each list of children is in order too.
    for span in &trace.spans {
        match span.parent_span_id.as_deref().filter(|p| ids.contains(p)) {
            Some(parent) => children.entry(parent).or_default().push(span),
            None => roots.push(span),
        }
    }
    let service_width = trace.spans.iter().map(|s| escape(&s.service).chars().count()).max().unwrap_or(0);
    let mut printed = HashSet::new();
    let mut stack: Vec<(&TraceSpan, usize)> = roots.iter().rev().map(|s| (*s, 0)).collect();
    // Spans in a parent cycle (none is a root) are printed after the rest, flat.
    let mut rest = trace.spans.iter().rev();
    while let Some((span, depth)) = stack.pop().or_else(|| rest.find(|s| !printed.contains(s.span_id.as_str())).map(|s| (s, 0))) {
        if !printed.insert(span.span_id.as_str()) {
            continue;
        }
        let orphan = span.parent_span_id.as_deref().is_some_and(|p| !ids.contains(p)) && depth == 0;
        let kind = match span.kind {
            TraceSpanKind::Client => "client",
            TraceSpanKind::Server => "server",
            TraceSpanKind::Internal => "internal",
        };
        out.push_str(&format!(
            "  {:>11}  {:>10}  {}{:<service_width$}  {} ({kind}){}{}\n",
            format!("+{}", duration(span.start_unix_nano.saturating_sub(start))),
            duration(span.end_unix_nano.saturating_sub(span.start_unix_nano)),
            "  ".repeat(depth),
            escape(&span.service),
            escape(&span.name),
            if orphan { " (parent not kept)" } else { "" },
            span.error.as_deref().map(|e| format!("  ✗ {}", escape(e))).unwrap_or_default(),
        ));
        for child in children.get(span.span_id.as_str()).into_iter().flatten().rev() {
            stack.push((child, depth + 1));
        }
    }
    out
}

/// `0.123 ms`, `12.3 ms`, `1.234 s`.
fn duration(nanos: u64) -> String {
    let ms = nanos as f64 / 1e6;
    match ms {
        ms if ms >= 1000.0 => format!("{:.3} s", ms / 1000.0),
        ms if ms >= 10.0 => format!("{ms:.1} ms"),
        ms => format!("{ms:.3} ms"),
    }
}

/// RFC 3339 in UTC, to the millisecond.
fn timestamp(unix_nanos: u64) -> String {
    match time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_nanos)) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            t.month() as u8,
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        ),
        Err(_) => unix_nanos.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(id: &str, parent: Option<&str>, service: &str, name: &str, start: u64, end: u64) -> TraceSpan {
        TraceSpan {
            span_id: id.repeat(16),
            parent_span_id: parent.map(|p| p.repeat(16)),
            name: name.into(),
            service: service.into(),
            kind: TraceSpanKind::Server,
            start_unix_nano: start,
            end_unix_nano: end,
            error: None,
            attributes: Default::default(),
        }
    }

    #[test]
    fn a_tree_indents_children_under_their_parent_in_start_order_and_marks_errors() {
        let mut failed = span("c", Some("a"), "calc", "tools/call fail", 1_700_000_000_003_000_000, 1_700_000_000_004_000_000);
        failed.error = Some("boom\n".into());
        let trace = TraceDetail {
            trace_id: "ab".repeat(16),
            spans: vec![
                span("a", None, "front", "tools/call front", 1_700_000_000_000_000_000, 1_700_000_000_010_000_000),
                span("b", Some("a"), "calc", "tools/call add", 1_700_000_000_001_000_000, 1_700_000_000_002_500_000),
                failed,
                span("d", Some("b"), "calc", "tools/call deep", 1_700_000_000_001_500_000, 1_700_000_000_002_000_000),
                span("e", Some("z"), "lost", "tools/call orphan", 1_700_000_000_005_000_000, 1_700_000_000_006_000_000),
            ],
        };
        let text = tree(&trace);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], format!("trace {}  2023-11-14T22:13:20.000Z  10.0 ms  5 spans, 1 error", "ab".repeat(16)));
        assert_eq!(lines[1], "    +0.000 ms     10.0 ms  front  tools/call front (server)");
        assert_eq!(lines[2], "    +1.000 ms    1.500 ms    calc   tools/call add (server)");
        assert_eq!(lines[3], "    +1.500 ms    0.500 ms      calc   tools/call deep (server)");
        assert_eq!(lines[4], "    +3.000 ms    1.000 ms    calc   tools/call fail (server)  ✗ boom\\u{a}");
        assert_eq!(lines[5], "    +5.000 ms    1.000 ms  lost   tools/call orphan (server) (parent not kept)");
    }

    #[test]
    fn spans_in_a_parent_cycle_are_still_printed_once() {
        let trace = TraceDetail {
            trace_id: "cd".repeat(16),
            spans: vec![span("a", Some("b"), "x", "one", 1, 2), span("b", Some("a"), "x", "two", 1, 2)],
        };
        assert_eq!(tree(&trace).lines().count(), 3);
    }

    #[test]
    fn a_line_names_the_trace_its_extent_and_its_root() {
        let summary = TraceSummary {
            trace_id: "ab".repeat(16),
            root_name: "tools/call front".into(),
            root_service: "front".into(),
            start_unix_nano: 1_700_000_000_000_000_000,
            duration_ns: 1_234_567_890,
            span_count: 4,
            error_count: 1,
        };
        assert_eq!(
            line(&summary),
            format!("{}  2023-11-14T22:13:20.000Z     1.235 s  4 spans  1 error  front: tools/call front", "ab".repeat(16))
        );
    }
}
