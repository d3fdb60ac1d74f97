//! `toolmesh policy`: the access policy the registry holds and pushes to every agent. Applying
//! and testing need an admin identity (an operator certificate of the mesh CA).

use crate::ops::{align, to_json, RegistryAccess};
use crate::Failure;
use clap::{Args, Subcommand, ValueEnum};
use std::path::PathBuf;
use toolmesh_core::policy::{parse_document, DefaultAction, Phase, Policy, PrincipalDocument, RuleDocument, TargetDocument};
use toolmesh_core::registry_api::{PolicyTestRequest, PolicyTestResponse, StoredPolicy};
use toolmesh_core::text::escape;
use toolmesh_core::{Error, ErrorKind};

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Apply FILE (YAML or JSON) at the registry: every agent enforces it within one heartbeat.
    Apply(ApplyArgs),
    /// The policy applied at the registry: its version, default and rules.
    List(ListArgs),
    /// What the applied policy decides for a caller and a tool, per registered provider.
    Test(TestArgs),
}

#[derive(Args)]
pub struct ApplyArgs {
    /// The policy document (YAML, or JSON when it starts with `{`).
    file: PathBuf,
    #[command(flatten)]
    access: RegistryAccess,
}

#[derive(Args)]
pub struct ListArgs {
    /// Print the registry's JSON answer instead of lines.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    access: RegistryAccess,
}

#[derive(Clone, Copy, ValueEnum)]
enum PhaseArg {
    Call,
    Discover,
    Provide,
}

#[derive(Args)]
pub struct TestArgs {
    /// The caller's SPIFFE ID (spiffe://TRUST-DOMAIN/agent/NAME).
    #[arg(long, value_name = "ID")]
    from: String,
    /// The tool's name.
    #[arg(long, value_name = "NAME")]
    tool: String,
    /// Only this providing agent (every registered provider of the tool by default).
    #[arg(long, value_name = "AGENT")]
    agent: Option<String>,
    /// The SPIFFE ID that started the chain of calls, when it is not the caller.
    #[arg(long, value_name = "ID")]
    origin: Option<String>,
    #[arg(long, value_enum, default_value = "call")]
    phase: PhaseArg,
    /// Print the registry's JSON answer instead of lines.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    access: RegistryAccess,
}

pub async fn run(command: PolicyCommand) -> Result<(), Failure> {
    match command {
        PolicyCommand::Apply(args) => apply(args).await,
        PolicyCommand::List(args) => {
            let (registry, _) = args.access.connect()?;
            match registry.applied_policy().await? {
                Some(stored) if args.json => println!("{}", to_json(&stored)?),
                Some(stored) => print!("{}", describe(&stored)),
                None if args.json => println!("null"),
                None => println!(
                    "no policy applied at {}: each agent enforces its own policy file or the built-in default (allow-mesh); \
                     `toolmesh policy apply FILE` applies one",
                    registry.url()
                ),
            }
            Ok(())
        }
        PolicyCommand::Test(args) => {
            let (registry, _) = args.access.connect()?;
            let phase = match args.phase {
                PhaseArg::Call => Phase::Call,
                PhaseArg::Discover => Phase::Discover,
                PhaseArg::Provide => Phase::Provide,
            };
            let request =
                PolicyTestRequest { from: args.from, origin: args.origin, tool: args.tool, agent: args.agent, phase: Some(phase) };
            let answer = registry.test_policy(&request).await?;
            if args.json {
                println!("{}", to_json(&answer)?);
            } else {
                print!("{}", decisions(&answer));
            }
            Ok(())
        }
    }
}

async fn apply(args: ApplyArgs) -> Result<(), Failure> {
    let file = args.file.display().to_string();
    let text = std::fs::read_to_string(&args.file)
        .map_err(|e| Failure::usage(Error::new(ErrorKind::InvalidConfig, format!("cannot read the policy file {file}: {e}"))))?;
    // Checked here first, so that a mistake is named with the file before anything is sent.
    let document = parse_document(&text).map_err(|e| Failure::usage(e.context(format!("policy file {file}"))))?;
    Policy::compile(document.clone(), 0).map_err(|e| Failure::usage(e.context(format!("policy file {file}"))))?;
    let (registry, _) = args.access.connect()?;
    let stored = registry.apply_policy(&document).await?;
    println!(
        "policy version {} applied: {} rule{}, default {}; agents enforce it within one heartbeat",
        stored.version,
        stored.policy.rules.len(),
        if stored.policy.rules.len() == 1 { "" } else { "s" },
        default_name(stored.policy.default)
    );
    Ok(())
}

fn default_name(default: DefaultAction) -> &'static str {
    match default {
        DefaultAction::AllowMesh => "allow-mesh",
        DefaultAction::Deny => "deny",
    }
}

/// `policy version N, default D, K rules` and a table of the rules (cells escaped by `align`).
fn describe(stored: &StoredPolicy) -> String {
    let policy = &stored.policy;
    let mut out = format!("policy version {}, default {}, {} rules\n", stored.version, default_name(policy.default), policy.rules.len());
    if policy.rules.is_empty() {
        return out;
    }
    let mut rows = vec![["RULE", "ACTION", "PHASES", "SOURCE", "TARGET", "MORE"].map(String::from).to_vec()];
    for rule in &policy.rules {
        rows.push(vec![
            rule.name.clone(),
            format!("{:?}", rule.action).to_lowercase(),
            rule.phases.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(","),
            rule.source.as_ref().map_or_else(|| "any in mesh".to_owned(), principal),
            rule.target.as_ref().map_or_else(|| "anything".to_owned(), target),
            more(rule),
        ]);
    }
    out.push_str(&align(&rows));
    out
}

fn lists(parts: &[(&str, &Vec<String>)]) -> String {
    let named: Vec<String> = parts.iter().filter(|(_, v)| !v.is_empty()).map(|(name, v)| format!("{name}={}", v.join(","))).collect();
    named.join(" ")
}

fn principal(p: &PrincipalDocument) -> String {
    lists(&[("identities", &p.identities), ("trustDomains", &p.trust_domains), ("entities", &p.entities), ("agents", &p.agents)])
}

fn target(t: &TargetDocument) -> String {
    lists(&[("agents", &t.agents), ("capabilities", &t.capabilities), ("tools", &t.tools), ("tags", &t.tags)])
}

/// Origin, methods and limits, when the rule has any.
fn more(rule: &RuleDocument) -> String {
    let mut parts = Vec::new();
    if let Some(origin) = &rule.origin {
        parts.push(format!("origin: {}", principal(origin)));
    }
    if !rule.methods.is_empty() {
        parts.push(format!("methods={}", rule.methods.join(",")));
    }
    if let Some(limits) = &rule.limits {
        let mut l = Vec::new();
        if let Some(rate) = limits.rate_per_second {
            l.push(format!("rate={rate}/s"));
        }
        if let Some(burst) = limits.burst {
            l.push(format!("burst={burst}"));
        }
        if let Some(concurrency) = limits.concurrency {
            l.push(format!("concurrency={concurrency}"));
        }
        parts.push(format!("limits: {}", l.join(" ")));
    }
    parts.join("; ")
}

/// `allow  calc:add (math) by rule 'front-adds' (policy version 3)`, one line per provider.
fn decisions(answer: &PolicyTestResponse) -> String {
    let version = match answer.version {
        0 => "no policy applied: the built-in default".to_owned(),
        v => format!("policy version {v}"),
    };
    let mut out = String::new();
    if let Some(note) = &answer.note {
        out.push_str(&format!("{}\n", escape(note)));
    }
    for d in &answer.decisions {
        out.push_str(&format!(
            "{:<5}  {}:{} ({}) by rule '{}' ({version})\n",
            if d.allowed { "allow" } else { "deny" },
            escape(&d.agent),
            escape(&d.tool),
            escape(&d.capability),
            escape(&d.rule)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use toolmesh_core::registry_api::PolicyTestDecision;

    #[test]
    fn rules_and_decisions_print_one_line_each_escaped() {
        let policy = parse_document(
            "default: deny\nrules:\n  - name: front-adds\n    source: { agents: [front] }\n    target: { capabilities: [math], tools: [add] }\n    methods: [tools/call]\n    limits: { ratePerSecond: 5 }\n",
        )
        .expect("document");
        let listed = describe(&StoredPolicy { version: 3, policy });
        assert!(listed.starts_with("policy version 3, default deny, 1 rules\n"), "{listed}");
        let row = listed.lines().find(|l| l.starts_with("front-adds")).expect("a row");
        for part in ["allow", "discover,call", "agents=front", "capabilities=math tools=add", "methods=tools/call", "rate=5/s"] {
            assert!(row.contains(part), "{part} missing from {row}");
        }
        let answer = PolicyTestResponse {
            version: 3,
            decisions: vec![PolicyTestDecision {
                agent: "calc\u{1b}[2J".into(),
                tool: "add".into(),
                capability: "math".into(),
                allowed: true,
                rule: "front-adds".into(),
            }],
            note: None,
        };
        assert_eq!(decisions(&answer), "allow  calc\\u{1b}[2J:add (math) by rule 'front-adds' (policy version 3)\n");
    }
}
