//! Section 7, the cost of authorization: what one `Policy::decide` costs at 1 and 100 rules (the
//! matching rule last, and no rule matching), and what the whole callee gate costs per call
//! (`Gate::caller` with a real peer certificate and origin chain, then `Gate::admit_call`). The
//! agent → agent throughput with and without a 100-rule policy is measured by `transport`
//! (`--systems toolmesh,toolmesh_policy`) against a callee started with the policy this module
//! writes (`--write-policy`).

use crate::common::{percentile, print_json, AnyError};
use serde::Serialize;
use serde_json::json;
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use toolmesh_ca::{CertificateAuthority, LeafRequest, Role, DEFAULT_TRUST_DOMAIN};
use toolmesh_core::authorize::Gate;
use toolmesh_core::origin::Origins;
use toolmesh_core::policy::{
    Action, DefaultAction, LimitsDocument, Phase, Policy, PolicyDocument, Principal, PrincipalDocument, Query, RuleDocument, Target,
    TargetDocument,
};
use toolmesh_core::registry_api::ToolInfo;
use toolmesh_core::server::PeerInfo;
use toolmesh_core::tls::{peer_identity, Identity};

#[derive(clap::Args)]
pub struct PolicyArgs {
    /// Rounds; every case is measured once per round, in alternating order.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Decisions timed one by one per case and round.
    #[arg(long, default_value_t = 200_000)]
    iterations: usize,
    /// Only write the 100-rule policy (JSON) for a callee and exit: the transport row's policy.
    #[arg(long)]
    write_policy: Option<PathBuf>,
    /// The calling agent the last rule allows.
    #[arg(long, default_value = "bench-a")]
    caller: String,
    /// The callee agent the last rule names.
    #[arg(long, default_value = "bench-b")]
    target_agent: String,
    /// The capability of the callee's `add` tool.
    #[arg(long, default_value = "bench-add")]
    capability: String,
    /// Rules in the large policy.
    #[arg(long, default_value_t = 100)]
    rules: usize,
}

/// What is called in every measured query.
const TOOL: &str = "add";

fn principal(agents: &[&str]) -> PrincipalDocument {
    PrincipalDocument { agents: agents.iter().map(|s| s.to_string()).collect(), ..Default::default() }
}

/// A policy of `rules` rules shaped like a real one: allow rules by agent name, SPIFFE-ID pattern,
/// trust domain and entity; targets by capability, tool pattern, agent and tag; method and origin
/// conditions; rules for the provide and discover phases only; ten deny rules spread through it.
/// None of the first `rules - 1` rules matches `caller` calling `add` on `target_agent` — several
/// match the caller and fail only on the target, so they are evaluated to their last field — and
/// the last rule allows it. The default is `deny`, so a call gets through only by that last rule.
pub fn large_policy(rules: usize, caller: &str, target_agent: &str, capability: &str, limits: bool) -> PolicyDocument {
    let mut out = Vec::with_capacity(rules);
    for i in 0..rules.saturating_sub(1) {
        let name = format!("rule-{i:03}");
        let deny = matches!(i % 20, 0 | 7);
        let rule = |source: Option<PrincipalDocument>, target: TargetDocument| RuleDocument {
            name: name.clone(),
            action: if deny { Action::Deny } else { Action::Allow },
            phases: vec![Phase::Discover, Phase::Call],
            source,
            origin: None,
            target: Some(target),
            methods: vec![],
            limits: None,
        };
        let s = |v: &[String]| v.to_vec();
        let r = match i % 10 {
            // Quarantined agents, by SPIFFE-ID pattern (denied every other time).
            0 => rule(
                Some(PrincipalDocument {
                    identities: s(&[format!("spiffe://{DEFAULT_TRUST_DOMAIN}/agent/quarantine-{i}-*")]),
                    ..Default::default()
                }),
                TargetDocument::default(),
            ),
            // A team's agents use a service's capabilities.
            1 => rule(
                Some(principal(&[format!("team{i}-*").as_str()])),
                TargetDocument { capabilities: s(&[format!("svc{i}.*")]), ..Default::default() },
            ),
            // One service by exact SPIFFE ID calls two tools, tools/call only.
            2 => RuleDocument {
                methods: vec!["tools/call".into()],
                ..rule(
                    Some(PrincipalDocument {
                        identities: s(&[format!("spiffe://{DEFAULT_TRUST_DOMAIN}/agent/svc-{i}")]),
                        ..Default::default()
                    }),
                    TargetDocument { tools: s(&[format!("op{i}"), format!("op{i}-batch")]), ..Default::default() },
                )
            },
            // Matches the caller's name, fails on the target agent: evaluated to the end.
            3 => rule(
                Some(principal(&["bench-*"])),
                TargetDocument { agents: s(&[format!("agent-{i}")]), capabilities: s(&[capability.to_owned()]), ..Default::default() },
            ),
            // A partner, by trust domain and entity, reaches tools of one tier.
            4 => rule(
                Some(PrincipalDocument {
                    trust_domains: s(&[format!("partner{i}.example")]),
                    entities: s(&[format!("partner{i}")]),
                    ..Default::default()
                }),
                TargetDocument { tags: s(&[format!("tier-{i}")]), ..Default::default() },
            ),
            // Front ends reading on behalf of users (an origin condition).
            5 => RuleDocument {
                origin: Some(PrincipalDocument {
                    identities: s(&[format!("spiffe://{DEFAULT_TRUST_DOMAIN}/agent/user-*")]),
                    ..Default::default()
                }),
                ..rule(Some(principal(&["*-frontend"])), TargetDocument { tools: s(&["*.read".to_owned()]), ..Default::default() })
            },
            // What everyone in the mesh may see (discover only).
            6 => RuleDocument {
                phases: vec![Phase::Discover],
                ..rule(None, TargetDocument { tags: s(&[format!("public-{i}")]), ..Default::default() })
            },
            // Administrative tools, for nobody but their operators (denied every other time).
            7 => rule(
                if deny { None } else { Some(principal(&[format!("ops{i}").as_str()])) },
                TargetDocument { tools: s(&["admin.*".to_owned(), format!("*.admin{i}")]), ..Default::default() },
            ),
            // Who may provide which capability (the registry's phase).
            8 => RuleDocument {
                phases: vec![Phase::Provide],
                ..rule(
                    Some(principal(&[format!("svc{i}").as_str()])),
                    TargetDocument { capabilities: s(&[format!("svc{i}.*")]), ..Default::default() },
                )
            },
            // Matches the caller and the capability, fails on the tool pattern: the deepest miss.
            _ => rule(
                Some(principal(&["bench-*", format!("worker-{i}").as_str()])),
                TargetDocument { capabilities: s(&["bench-*".to_owned()]), tools: s(&[format!("*-{i}")]), ..Default::default() },
            ),
        };
        out.push(r);
    }
    out.push(RuleDocument {
        name: format!("{caller}-calls-{TOOL}"),
        action: Action::Allow,
        phases: vec![Phase::Discover, Phase::Call],
        source: Some(principal(&[caller])),
        origin: None,
        target: Some(TargetDocument {
            agents: vec![target_agent.to_owned()],
            capabilities: vec![capability.to_owned()],
            tools: vec![TOOL.to_owned()],
            tags: vec![],
        }),
        methods: vec![],
        limits: limits.then_some(LimitsDocument { rate_per_second: Some(1e7), burst: None, concurrency: Some(1024) }),
    });
    PolicyDocument { default: DefaultAction::Deny, rules: out, ..Default::default() }
}

/// Compiles a document through the text an agent reads (JSON), as `policy_file` does.
fn compiled(doc: &PolicyDocument) -> Result<Policy, AnyError> {
    Ok(Policy::parse(&serde_json::to_string(doc)?, 0)?)
}

#[derive(Serialize)]
struct Timed {
    round: usize,
    /// `decide` (Policy::decide alone) or `gate` (Gate::caller + Gate::admit_call, per call).
    kind: &'static str,
    case: &'static str,
    rules: usize,
    iterations: usize,
    allowed: bool,
    rule: String,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    max_us: f64,
    /// The mean from batches of 100 timed together (no per-call timer cost).
    batch_mean_us: f64,
}

/// Times `f` one call at a time (`iterations` calls, after a tenth as warm-up), and in batches
/// of 100; nanoseconds, the timer's own cost included (reported apart).
fn time_calls(iterations: usize, mut f: impl FnMut() -> bool) -> (Vec<u64>, f64) {
    for _ in 0..iterations / 10 {
        black_box(f());
    }
    let mut nanos = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let t = Instant::now();
        black_box(f());
        nanos.push(t.elapsed().as_nanos() as u64);
    }
    let batches = (iterations / 100).max(1);
    let t = Instant::now();
    for _ in 0..batches {
        for _ in 0..100 {
            black_box(f());
        }
    }
    let batch_mean = t.elapsed().as_nanos() as f64 / (batches * 100) as f64;
    nanos.sort_unstable();
    (nanos, batch_mean)
}

fn timed(
    round: usize,
    kind: &'static str,
    case: &'static str,
    rules: usize,
    iterations: usize,
    verdict: (bool, String),
    f: impl FnMut() -> bool,
) -> Timed {
    let (nanos, batch_mean) = time_calls(iterations, f);
    // `percentile` reads microseconds and answers milliseconds: fed nanoseconds, it answers µs.
    let us = |p: f64| percentile(&nanos, p);
    let t = Timed {
        round,
        kind,
        case,
        rules,
        iterations,
        allowed: verdict.0,
        rule: verdict.1,
        p50_us: us(50.0),
        p99_us: us(99.0),
        p999_us: us(99.9),
        max_us: nanos.last().map_or(f64::NAN, |n| *n as f64 / 1000.0),
        batch_mean_us: batch_mean / 1000.0,
    };
    eprintln!(
        "policy round {round} {kind} {case} ({rules} rules): p50 {:.3} µs, p99 {:.3} µs, p99.9 {:.3} µs, max {:.1} µs, batched mean {:.3} µs — {} by '{}'",
        t.p50_us,
        t.p99_us,
        t.p999_us,
        t.max_us,
        t.batch_mean_us,
        if t.allowed { "allowed" } else { "denied" },
        t.rule
    );
    t
}

fn tool_info(capability: &str) -> ToolInfo {
    crate::transport::add_tool(capability)
}

pub fn policy_decide(args: PolicyArgs) -> Result<(), AnyError> {
    if let Some(path) = &args.write_policy {
        let doc = large_policy(args.rules, &args.caller, &args.target_agent, &args.capability, false);
        compiled(&doc)?; // the callee must accept it
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)?;
        print_json(&json!({"policy_file": path, "rules": doc.rules.len(), "caller": args.caller, "target_agent": args.target_agent}));
        return Ok(());
    }
    let (caller, callee) = (args.caller.as_str(), args.target_agent.as_str());
    let capability = args.capability.as_str();
    let builtin = Policy::allow_mesh();
    let one = compiled(&large_policy(1, caller, callee, capability, false))?;
    let hundred = compiled(&large_policy(args.rules, caller, callee, capability, false))?;
    let n = hundred.document().rules.len();

    // Identities of a fresh mesh: the caller's chain and origin header are what a real call carries.
    let ca = CertificateAuthority::generate("policy bench CA", 1)?;
    let identity = |name: &str| -> Result<Arc<Identity>, AnyError> {
        let issued = ca.issue(&LeafRequest::new(name, Role::Agent, DEFAULT_TRUST_DOMAIN, 1))?;
        Ok(Identity::from_pem(&issued.cert_pem, &issued.key_pem, ca.cert_pem())?)
    };
    let (caller_id, callee_id, stranger_id) = (identity(caller)?, identity(callee)?, identity("bench-z")?);
    let peer_of = |id: &Arc<Identity>| {
        let chain = id.certified_key().cert.clone();
        PeerInfo::new(&peer_identity(&chain[0]), "127.0.0.1:40000".parse().expect("address"), chain)
    };
    let (peer, stranger) = (peer_of(&caller_id), peer_of(&stranger_id));
    let header = Origins::new(caller_id.clone()).outbound(None, None)?.to_str()?.to_owned();
    let stranger_header = Origins::new(stranger_id.clone()).outbound(None, None)?.to_str()?.to_owned();
    let tool = tool_info(capability);

    // The decision alone.
    let tags: Vec<String> = vec![];
    let target = Target { agent: callee, tool: TOOL, capability, tags: &tags };
    fn query<'a>(who: &'a PeerInfo, target: Target<'a>) -> Query<'a> {
        Query {
            phase: Phase::Call,
            method: "tools/call",
            source: Principal::new(&who.identity, None),
            origin: None,
            origin_vouched: false,
            target,
        }
    }
    let (q_caller, q_stranger) = (query(&peer, target), query(&stranger, target));
    type DecideCase<'a> = (&'static str, &'a Policy, &'a Query<'a>);
    let decide_cases: Vec<DecideCase> = vec![
        ("built-in default (no rules)", &builtin, &q_caller),
        ("1 rule, matching", &one, &q_caller),
        ("100 rules, the last matching", &hundred, &q_caller),
        ("100 rules, none matching (default: deny)", &hundred, &q_stranger),
    ];

    // The whole gate per call: the caller (origin chain verified, cached), the decision, the
    // limits when the rule has them.
    let gate = |policy: &PolicyDocument| -> Result<Gate, AnyError> { Ok(Gate::new(callee_id.clone(), callee, compiled(policy)?)) };
    let gates: Vec<(&'static str, Gate, &PeerInfo, &str)> = vec![
        ("built-in default (no rules)", Gate::new(callee_id.clone(), callee, Policy::allow_mesh()), &peer, header.as_str()),
        ("1 rule, matching", gate(&large_policy(1, caller, callee, capability, false))?, &peer, header.as_str()),
        ("100 rules, the last matching", gate(&large_policy(args.rules, caller, callee, capability, false))?, &peer, header.as_str()),
        (
            "100 rules, none matching (default: deny)",
            gate(&large_policy(args.rules, caller, callee, capability, false))?,
            &stranger,
            stranger_header.as_str(),
        ),
        (
            "100 rules, the last matching, with limits",
            gate(&large_policy(args.rules, caller, callee, capability, true))?,
            &peer,
            header.as_str(),
        ),
    ];
    let admit = |g: &Gate, who: &PeerInfo, h: &str| -> (bool, String) {
        match g.caller(who, Some(h)).and_then(|c| g.admit_call(c, &tool)) {
            Ok(_) => (true, g.policy().decide(&query(who, target)).rule.to_string()),
            Err(e) => (false, e.message().to_owned()),
        }
    };
    for (case, g, who, h) in &gates {
        let (ok, why) = admit(g, who, h);
        if ok == case.contains("none matching") {
            return Err(format!("gate case '{case}': expected the opposite answer ({why})").into());
        }
    }

    // The timer's own cost, to read the smallest figures against.
    let (timer, _) = time_calls(args.iterations, || true);
    let timer_p50_us = percentile(&timer, 50.0);
    eprintln!("policy: the timer costs {:.0} ns per reading (p50)", timer_p50_us * 1000.0);

    let mut results = Vec::new();
    for round in 0..args.rounds {
        let mut order: Vec<usize> = (0..decide_cases.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let (case, policy, q) = decide_cases[i];
            let d = policy.decide(q);
            let rules = policy.document().rules.len();
            results
                .push(timed(round, "decide", case, rules, args.iterations, (d.allowed, d.rule.to_string()), || policy.decide(q).allowed));
        }
        let mut order: Vec<usize> = (0..gates.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let (case, g, who, h) = &gates[i];
            let rules = g.policy().document().rules.len();
            let verdict = admit(g, who, h);
            results.push(timed(round, "gate", case, rules, args.iterations, verdict, || {
                // The permit (if any) is dropped at once, as a call's is when its handler answers.
                g.caller(who, Some(h)).and_then(|c| g.admit_call(c, &tool)).is_ok()
            }));
        }
    }
    print_json(&json!({
        "rules": n,
        "iterations": args.iterations,
        "timer_p50_us": timer_p50_us,
        "origin_header_bytes": header.len(),
        "runs": results,
    }));
    Ok(())
}
