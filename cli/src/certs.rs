//! `toolmesh certs`: a development CA and the certificates it issues (ECDSA P-256, SPIFFE URI
//! SANs, keys 0600). Nothing is ever overwritten without `--force`.

use crate::Failure;
use clap::{Args, Subcommand, ValueEnum};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};
use toolmesh_core::pki::{
    spiffe_id, write_file_atomic, write_pair, CertificateAuthority, LeafRequest, Role, DEFAULT_TRUST_DOMAIN,
};
use toolmesh_core::{Error, ErrorKind};

/// A CA outlives the leaves it signs: at least ten years.
const MIN_CA_DAYS: u32 = 3650;
const CA_NAME: &str = "ca";
/// Names that would overwrite the CA's files or the set `init` creates under another role.
const RESERVED_NAMES: &[&str] = &[CA_NAME];

#[derive(Subcommand)]
pub enum CertsCommand {
    /// Create DIR/ca.{pem,key}, DIR/registry.{pem,key}, DIR/operator.{pem,key} and one pair per agent.
    Init(InitArgs),
    /// Issue DIR/NAME.{pem,key} from the CA in DIR.
    Issue(IssueArgs),
}

#[derive(Args)]
pub struct InitArgs {
    /// Directory to write into (created if missing).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// Agent names to issue certificates for, comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "NAME,...")]
    agents: Vec<String>,
    #[command(flatten)]
    validity: Validity,
    /// Replace existing files.
    #[arg(long)]
    force: bool,
}

#[derive(Args)]
pub struct IssueArgs {
    /// The certificate's name: its CN, a DNS SAN and the last segment of its SPIFFE id.
    name: String,
    /// Directory holding ca.pem and ca.key; the pair is written there.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// What the certificate is for; it names the SPIFFE id's path (spiffe://DOMAIN/ROLE/NAME).
    #[arg(long, value_enum, default_value_t = RoleArg::Agent)]
    role: RoleArg,
    /// Extra DNS names (besides NAME and localhost), repeatable or comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "NAME")]
    dns: Vec<String>,
    /// Extra IP addresses (besides 127.0.0.1 and ::1), repeatable or comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "ADDRESS")]
    ip: Vec<IpAddr>,
    #[command(flatten)]
    validity: Validity,
    /// Replace an existing pair.
    #[arg(long)]
    force: bool,
}

#[derive(Args)]
struct Validity {
    /// Trust domain of the SPIFFE ids (spiffe://DOMAIN/ROLE/NAME).
    #[arg(long, default_value = DEFAULT_TRUST_DOMAIN, value_name = "DOMAIN")]
    trust_domain: String,
    /// How many days the certificates are valid.
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=36500))]
    days: u32,
}

#[derive(Clone, Copy, ValueEnum)]
enum RoleArg {
    Agent,
    Registry,
    Operator,
}

impl From<RoleArg> for Role {
    fn from(role: RoleArg) -> Role {
        match role {
            RoleArg::Agent => Role::Agent,
            RoleArg::Registry => Role::Registry,
            RoleArg::Operator => Role::Operator,
        }
    }
}

pub fn run(command: CertsCommand) -> Result<(), Failure> {
    match command {
        CertsCommand::Init(args) => init(args),
        CertsCommand::Issue(args) => issue(args),
    }
}

fn init(args: InitArgs) -> Result<(), Failure> {
    let mut leaves = vec![("registry".to_owned(), Role::Registry), ("operator".to_owned(), Role::Operator)];
    for agent in &args.agents {
        check_name(agent)?;
        if leaves.iter().any(|(name, _)| name == agent) {
            return Err(usage(format!("--agents names '{agent}' twice or reuses a name of the set (registry, operator)")));
        }
        leaves.push((agent.clone(), Role::Agent));
    }
    check_trust_domain(&args.validity.trust_domain)?;
    // Refuse before writing anything, so a second run leaves the first set intact.
    if !args.force {
        let names = std::iter::once(CA_NAME).chain(leaves.iter().map(|(name, _)| name.as_str()));
        if let Some(existing) = names.flat_map(|n| pair_paths(&args.dir, n)).find(|p| p.exists()) {
            return Err(usage(format!(
                "{} already exists; refusing to overwrite it (pass --force to replace the whole set)",
                existing.display()
            )));
        }
    }
    std::fs::create_dir_all(&args.dir)
        .map_err(|e| Error::new(ErrorKind::CertificateFile, format!("cannot create {}: {e}", args.dir.display())))?;
    let dir = std::fs::canonicalize(&args.dir).unwrap_or(args.dir.clone());

    let ca = CertificateAuthority::generate(&ca_common_name(&args.validity.trust_domain), args.validity.days.max(MIN_CA_DAYS))?;
    let [ca_cert, ca_key] = pair_paths(&dir, CA_NAME);
    write_file_atomic(&ca_key, ca.key_pem().as_bytes(), 0o600)?;
    write_file_atomic(&ca_cert, ca.cert_pem().as_bytes(), 0o644)?;
    println!("wrote a development mesh to {} (trust domain {}, valid {} days):", dir.display(), args.validity.trust_domain, args.validity.days);
    println!("  {}  mesh CA certificate: the trust bundle (TOOLMESH_TLS_CA)", ca_cert.display());
    println!("  {}  mesh CA key (0600): only `toolmesh certs issue` needs it; keep it private", ca_key.display());
    for (name, role) in &leaves {
        let request = LeafRequest::new(name, *role, &args.validity.trust_domain, args.validity.days);
        let (cert, key) = issue_pair(&ca, &dir, &request, args.force)?;
        println!("  {} + {}  {}", cert.display(), key.display(), spiffe_id(&args.validity.trust_domain, *role, name));
    }

    let file = |name: &str, ext: &str| dir.join(format!("{name}.{ext}")).display().to_string();
    println!("\nrun the registry:");
    println!("  export TOOLMESH_TLS_CA={}", ca_cert.display());
    println!("  TOOLMESH_TLS_CERT={} TOOLMESH_TLS_KEY={} toolmesh registry", file("registry", "pem"), file("registry", "key"));
    println!("operate the mesh (toolmesh list, toolmesh call):");
    println!("  export TOOLMESH_REGISTRY_URL=https://127.0.0.1:8443");
    println!("  export TOOLMESH_TLS_CERT={} TOOLMESH_TLS_KEY={}", file("operator", "pem"), file("operator", "key"));
    for agent in &args.agents {
        println!("run agent '{agent}' (with TOOLMESH_TLS_CA and TOOLMESH_REGISTRY_URL as above):");
        println!("  TOOLMESH_TLS_CERT={} TOOLMESH_TLS_KEY={} ...", file(agent, "pem"), file(agent, "key"));
    }
    Ok(())
}

fn issue(args: IssueArgs) -> Result<(), Failure> {
    check_name(&args.name)?;
    check_trust_domain(&args.validity.trust_domain)?;
    let [ca_cert, ca_key] = pair_paths(&args.dir, CA_NAME);
    let ca = CertificateAuthority::load(&ca_cert, &ca_key).map_err(|e| {
        Failure::usage(e.context(format!(
            "loading the CA from {} (create one with `toolmesh certs init --dir {}`)",
            args.dir.display(),
            args.dir.display()
        )))
    })?;
    let role = Role::from(args.role);
    let mut request = LeafRequest::new(&args.name, role, &args.validity.trust_domain, args.validity.days);
    for dns in args.dns {
        if !request.dns_names.contains(&dns) {
            request.dns_names.push(dns);
        }
    }
    for ip in args.ip {
        if !request.ip_addresses.contains(&ip) {
            request.ip_addresses.push(ip);
        }
    }
    let (cert, key) = issue_pair(&ca, &args.dir, &request, args.force)?;
    println!(
        "wrote {} and {} ({}, valid {} days)",
        cert.display(),
        key.display(),
        spiffe_id(&args.validity.trust_domain, role, &args.name),
        args.validity.days
    );
    Ok(())
}

/// Issues `request` and writes `DIR/<common name>.{pem,key}`.
fn issue_pair(ca: &CertificateAuthority, dir: &Path, request: &LeafRequest, force: bool) -> Result<(PathBuf, PathBuf), Failure> {
    let issued = ca.issue(request).map_err(Failure::usage)?;
    write_pair(dir, &request.common_name, &issued, force).map_err(|e| match e.kind() {
        // An existing file (without --force) is a usage error; an unwritable one is not.
        ErrorKind::InvalidConfig => Failure::usage(e),
        _ => Failure::from(e),
    })
}

fn pair_paths(dir: &Path, name: &str) -> [PathBuf; 2] {
    [dir.join(format!("{name}.pem")), dir.join(format!("{name}.key"))]
}

/// Names become file names, DNS SANs and SPIFFE path segments: keep them to what all three take.
fn check_name(name: &str) -> Result<(), Failure> {
    let valid_chars = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if name.is_empty() || !valid_chars || name.starts_with(['.', '-']) || name.len() > 63 {
        return Err(usage(format!(
            "'{name}' is not a usable certificate name; use 1-63 letters, digits, '-', '_' or '.', not starting with '.' or '-'"
        )));
    }
    if RESERVED_NAMES.contains(&name) {
        return Err(usage(format!("'{name}' is reserved for the CA's own files ({name}.pem, {name}.key); choose another name")));
    }
    Ok(())
}

fn check_trust_domain(domain: &str) -> Result<(), Failure> {
    let valid = !domain.is_empty() && domain.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | '_'));
    if valid {
        Ok(())
    } else {
        Err(usage(format!("trust domain '{domain}' is invalid; use lowercase letters, digits, '-', '.' and '_' (like example.org)")))
    }
}

/// Each CA gets a distinct name: peers look issuers up by name, and a foreign CA with the same
/// name as ours would be reported as a bad signature rather than as an unknown CA.
fn ca_common_name(trust_domain: &str) -> String {
    let nonce = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
    format!("toolmesh CA {trust_domain} {:x}", nonce & 0xffff_ffff_ffff)
}

fn usage(message: String) -> Failure {
    Failure::usage(Error::new(ErrorKind::InvalidConfig, message))
}
