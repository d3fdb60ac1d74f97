//! `toolmesh certs init`: a whole development mesh at once (a CA, the registry's and the
//! operator's certificates, one per agent), from flags or a YAML file.

use super::ca::write_ca;
use super::issue::{issue_pair, pair_paths};
use super::names::{check_name, check_trust_domain};
use super::options::LeafOptions;
use super::{usage, CA_NAME};
use crate::Failure;
use clap::Args;
use serde::Deserialize;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use toolmesh_ca::{refuse_existing, CertificateAuthority, KeyType, LeafRequest, Role, DEFAULT_CA_DAYS, DEFAULT_TRUST_DOMAIN};
use toolmesh_core::{Error, ErrorKind};

/// The leaves every `init` issues besides the agents: the registry's and the operator's.
const BUILT_IN: &[(&str, Role)] = &[("registry", Role::Registry), ("operator", Role::Operator)];

#[derive(Args)]
pub struct InitArgs {
    /// Directory to write into (created if missing).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// Agent names to issue certificates for, comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "NAME,...", conflicts_with = "config")]
    agents: Vec<String>,
    /// A YAML file naming the agents (and optionally their DNS names, IPs and roles, the trust
    /// domain and the validity); see docs/identity.md.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    leaf: LeafOptions,
    /// Replace existing files.
    #[arg(long)]
    force: bool,
}

/// One certificate of an `init` set, as the YAML config describes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InitEntry {
    name: String,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    dns: Vec<String>,
    #[serde(default)]
    ip: Vec<IpAddr>,
}

/// `certs init --config FILE`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InitConfig {
    #[serde(default)]
    trust_domain: Option<String>,
    #[serde(default)]
    days: Option<u32>,
    #[serde(default)]
    key_type: Option<String>,
    #[serde(default)]
    agents: Vec<InitEntry>,
}

fn read_init_config(path: &Path) -> Result<InitConfig, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::usage(Error::new(ErrorKind::InvalidConfig, format!("cannot read {}: {e}", path.display()))))?;
    serde_norway::from_str(&text).map_err(|e| {
        usage(format!(
            "{} is not a valid certs config ({e}); expected keys trust_domain, days, key_type and agents (a list of name, role, dns, ip)",
            path.display()
        ))
    })
}

pub(super) fn init(args: InitArgs) -> Result<(), Failure> {
    let config = match &args.config {
        Some(path) => read_init_config(path)?,
        None => InitConfig {
            trust_domain: None,
            days: None,
            key_type: None,
            agents: args.agents.iter().map(|name| InitEntry { name: name.clone(), role: None, dns: vec![], ip: vec![] }).collect(),
        },
    };
    // `init` makes the CA, so the domain chosen here is the CA's.
    let trust_domain = config.trust_domain.clone().or(args.leaf.validity.trust_domain).unwrap_or_else(|| DEFAULT_TRUST_DOMAIN.to_owned());
    check_trust_domain(&trust_domain)?;
    let days = config.days.unwrap_or(args.leaf.validity.days);
    if !(1..=36500).contains(&days) {
        return Err(usage(format!("days {days} is out of range; use 1 to 36500")));
    }
    let key_type = match &config.key_type {
        Some(name) => KeyType::parse(name).map_err(Failure::usage)?,
        None => args.leaf.key.key_type,
    };

    // The built-in leaves come first; an entry with a built-in name replaces it (say, to give
    // the registry its DNS name).
    let mut leaves: Vec<(LeafRequest, bool)> =
        BUILT_IN.iter().map(|(name, role)| (LeafRequest::new(name, *role, &trust_domain, days), false)).collect();
    for entry in &config.agents {
        check_name(&entry.name)?;
        let default_role = BUILT_IN.iter().find(|(name, _)| *name == entry.name).map_or(Role::Agent, |(_, role)| *role);
        let role = entry.role.as_deref().map(Role::parse).transpose().map_err(Failure::usage)?.unwrap_or(default_role);
        let mut request = LeafRequest::new(&entry.name, role, &trust_domain, days);
        request.key_type = key_type;
        for dns in &entry.dns {
            request.add_dns(dns);
        }
        for ip in &entry.ip {
            request.add_ip(*ip);
        }
        match leaves.iter_mut().find(|(leaf, _)| leaf.common_name == entry.name) {
            Some((_, true)) => return Err(usage(format!("'{}' is named twice; every certificate name must be unique", entry.name))),
            Some(slot) => *slot = (request, true),
            None => leaves.push((request, true)),
        }
    }
    for (leaf, _) in &mut leaves {
        leaf.key_type = key_type;
    }
    // Refuse before writing anything, so a second run leaves the first set intact.
    if !args.force {
        let names = std::iter::once(CA_NAME).chain(leaves.iter().map(|(leaf, _)| leaf.common_name.as_str()));
        let paths: Vec<PathBuf> = names.flat_map(|n| pair_paths(&args.dir, n)).collect();
        refuse_existing(&paths.iter().map(PathBuf::as_path).collect::<Vec<_>>())
            .map_err(|e| usage(format!("{} (pass --force to replace the whole set)", e.message())))?;
    }
    let [ca_cert, ca_key] = write_ca(&args.dir, &trust_domain, days.max(DEFAULT_CA_DAYS), key_type)?;
    let dir = std::fs::canonicalize(&args.dir).unwrap_or(args.dir.clone());
    let ca = CertificateAuthority::load(&ca_cert, &ca_key)?;
    println!("wrote a mesh to {} (trust domain {trust_domain}, leaves valid {days} days, {} keys):", dir.display(), key_type.as_str());
    println!("  {}  mesh CA certificate: the trust bundle (TOOLMESH_TLS_CA)", ca_cert.display());
    println!("  {}  mesh CA key (0600): only `toolmesh certs issue/rotate` needs it; keep it private", ca_key.display());
    for (request, _) in &leaves {
        let (cert, key) = issue_pair(&ca, &dir, request, args.force)?;
        println!("  {} + {}  {}", cert.display(), key.display(), request.uris.join(" "));
    }

    let file = |name: &str, ext: &str| dir.join(format!("{name}.{ext}")).display().to_string();
    println!("\nrun the registry:");
    println!("  export TOOLMESH_TLS_CA={}", ca_cert.display());
    println!("  TOOLMESH_TLS_CERT={} TOOLMESH_TLS_KEY={} toolmesh registry", file("registry", "pem"), file("registry", "key"));
    println!("operate the mesh (toolmesh list, toolmesh call, toolmesh entity):");
    println!("  export TOOLMESH_REGISTRY_URL=https://127.0.0.1:8443");
    println!("  export TOOLMESH_TLS_CERT={} TOOLMESH_TLS_KEY={}", file("operator", "pem"), file("operator", "key"));
    for (request, _) in leaves.iter().filter(|(leaf, _)| leaf.role == Role::Agent) {
        let agent = &request.common_name;
        println!("run agent '{agent}' (with TOOLMESH_TLS_CA and TOOLMESH_REGISTRY_URL as above):");
        println!("  TOOLMESH_TLS_CERT={} TOOLMESH_TLS_KEY={} ...", file(agent, "pem"), file(agent, "key"));
    }
    println!("check expiry any time: toolmesh certs check --dir {}", dir.display());
    Ok(())
}
