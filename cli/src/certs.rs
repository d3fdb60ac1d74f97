//! `toolmesh certs`: a mesh CA and the certificates it issues (ECDSA P-256 by default, RSA on
//! request; SPIFFE URI SANs; keys 0600, certificates 0644), an expiry check, and rotation in
//! place. Nothing is ever overwritten without `--force`, except by `rotate`, whose purpose it is.

use crate::Failure;
use clap::{Args, Subcommand, ValueEnum};
use serde::Deserialize;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use time::OffsetDateTime;
use toolmesh_ca::{
    ca_common_name, ca_trust_domain, refuse_existing, spiffe_id, write_file_atomic, write_pair, CertificateAuthority, CertificateSummary, KeyType,
    LeafRequest, Role, DEFAULT_CA_DAYS, DEFAULT_LEAF_DAYS, DEFAULT_TRUST_DOMAIN,
};
use toolmesh_core::{Error, ErrorKind};

const CA_NAME: &str = "ca";
/// The leaves every `init` issues besides the agents: the registry's and the operator's.
const BUILT_IN: &[(&str, Role)] = &[("registry", Role::Registry), ("operator", Role::Operator)];

#[derive(Subcommand)]
pub enum CertsCommand {
    /// Create a mesh CA: DIR/ca.pem (the trust bundle) and DIR/ca.key (0600).
    Ca(CaArgs),
    /// Issue DIR/NAME.{pem,key} from the CA in DIR.
    Issue(IssueArgs),
    /// Create a CA, the registry's and the operator's certificates, and one per agent.
    Init(InitArgs),
    /// Show every certificate under DIR; exit 1 when any expires within --warn-days.
    Check(CheckArgs),
    /// Re-issue certificates in place from the CA in DIR: same subject and SANs, a new key.
    Rotate(RotateArgs),
}

#[derive(Args)]
pub struct CaArgs {
    /// Directory to write ca.pem and ca.key into (created if missing).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// Trust domain the CA's name mentions.
    #[arg(long, default_value = DEFAULT_TRUST_DOMAIN, value_name = "DOMAIN")]
    trust_domain: String,
    /// How many days the CA is valid.
    #[arg(long, default_value_t = DEFAULT_CA_DAYS, value_parser = clap::value_parser!(u32).range(1..=36500))]
    days: u32,
    #[command(flatten)]
    key: KeyArg,
    /// Replace an existing CA (every certificate it issued stops being trusted).
    #[arg(long)]
    force: bool,
}

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
    validity: Validity,
    #[command(flatten)]
    key: KeyArg,
    /// Replace existing files.
    #[arg(long)]
    force: bool,
}

#[derive(Args)]
pub struct IssueArgs {
    /// The certificate's name: its CN, a DNS SAN and the last segment of its SPIFFE ID.
    name: String,
    /// Directory holding ca.pem and ca.key; the pair is written there.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// What the certificate is for; it names the SPIFFE ID's path (spiffe://DOMAIN/ROLE/NAME).
    #[arg(long, value_enum, default_value_t = RoleArg::Agent)]
    role: RoleArg,
    /// Extra DNS names (besides NAME and localhost), repeatable or comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "NAME")]
    dns: Vec<String>,
    /// Extra IP addresses (besides 127.0.0.1 and ::1), repeatable or comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "ADDRESS")]
    ip: Vec<IpAddr>,
    /// Extra spiffe:// URI SANs (besides spiffe://DOMAIN/ROLE/NAME), repeatable.
    #[arg(long, value_delimiter = ',', value_name = "SPIFFE-ID")]
    uri: Vec<String>,
    #[command(flatten)]
    validity: Validity,
    #[command(flatten)]
    key: KeyArg,
    /// Replace an existing pair.
    #[arg(long)]
    force: bool,
}

#[derive(Args)]
pub struct CheckArgs {
    /// Directory to search (recursively) for certificates (*.pem, *.crt, *.cert).
    #[arg(long, default_value = ".", value_name = "DIR")]
    dir: PathBuf,
    /// Fail when a certificate expires within this many days.
    #[arg(long, default_value_t = 30, value_name = "DAYS")]
    warn_days: u32,
}

#[derive(Args)]
pub struct RotateArgs {
    /// Names of the pairs to rotate (DIR/NAME.pem and DIR/NAME.key).
    #[arg(required_unless_present = "all", value_name = "NAME")]
    names: Vec<String>,
    /// Directory holding ca.pem, ca.key and the pairs.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// Rotate every leaf certificate in DIR that the CA signed.
    #[arg(long, conflicts_with = "names")]
    all: bool,
}

#[derive(Args)]
struct Validity {
    /// Trust domain of the SPIFFE IDs (spiffe://DOMAIN/ROLE/NAME); by default the CA's (the one
    /// `certs ca --trust-domain` was given), else toolmesh.local.
    #[arg(long, value_name = "DOMAIN")]
    trust_domain: Option<String>,
    /// How many days the leaf certificates are valid (the CA of `init` gets at least ten years).
    #[arg(long, default_value_t = DEFAULT_LEAF_DAYS, value_parser = clap::value_parser!(u32).range(1..=36500))]
    days: u32,
}

#[derive(Args)]
struct KeyArg {
    /// Key algorithm of new keys.
    #[arg(long, default_value = "ecdsa-p256", value_parser = parse_key_type, value_name = "ecdsa-p256|rsa-2048|rsa-3072|rsa-4096")]
    key_type: KeyType,
}

fn parse_key_type(name: &str) -> Result<KeyType, String> {
    KeyType::parse(name).map_err(|e| e.message().to_owned())
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
        CertsCommand::Ca(args) => ca(args),
        CertsCommand::Issue(args) => issue(args),
        CertsCommand::Init(args) => init(args),
        CertsCommand::Check(args) => check(args),
        CertsCommand::Rotate(args) => rotate(args),
    }
}

fn ca(args: CaArgs) -> Result<(), Failure> {
    check_trust_domain(&args.trust_domain)?;
    let paths = pair_paths(&args.dir, CA_NAME);
    if !args.force {
        refuse_existing(&[&paths[0], &paths[1]]).map_err(Failure::usage)?;
    }
    let [cert, key] = write_ca(&args.dir, &args.trust_domain, args.days, args.key.key_type)?;
    println!("wrote {} (the trust bundle, valid {} days) and {} (0600: keep it private)", cert.display(), args.days, key.display());
    Ok(())
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

fn init(args: InitArgs) -> Result<(), Failure> {
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
    let trust_domain = config.trust_domain.clone().or(args.validity.trust_domain).unwrap_or_else(|| DEFAULT_TRUST_DOMAIN.to_owned());
    check_trust_domain(&trust_domain)?;
    let days = config.days.unwrap_or(args.validity.days);
    if !(1..=36500).contains(&days) {
        return Err(usage(format!("days {days} is out of range; use 1 to 36500")));
    }
    let key_type = match &config.key_type {
        Some(name) => KeyType::parse(name).map_err(Failure::usage)?,
        None => args.key.key_type,
    };

    // The built-in leaves come first; an entry with a built-in name replaces it (say, to give
    // the registry its DNS name).
    let mut leaves: Vec<(LeafRequest, bool)> = BUILT_IN
        .iter()
        .map(|(name, role)| (LeafRequest::new(name, *role, &trust_domain, days), false))
        .collect();
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

fn issue(args: IssueArgs) -> Result<(), Failure> {
    check_name(&args.name)?;
    let ca = load_ca(&args.dir)?;
    let trust_domain = trust_domain_for(args.validity.trust_domain, &ca)?;
    let role = Role::from(args.role);
    let mut request = LeafRequest::new(&args.name, role, &trust_domain, args.validity.days);
    request.key_type = args.key.key_type;
    for dns in &args.dns {
        request.add_dns(dns);
    }
    for ip in args.ip {
        request.add_ip(ip);
    }
    for uri in &args.uri {
        request.add_uri(uri);
    }
    let (cert, key) = issue_pair(&ca, &args.dir, &request, args.force)?;
    println!(
        "wrote {} and {} ({}, {}, valid {} days)",
        cert.display(),
        key.display(),
        spiffe_id(&trust_domain, role, &args.name),
        args.key.key_type.as_str(),
        args.validity.days
    );
    Ok(())
}

/// A certificate found by `check`.
struct Found {
    path: PathBuf,
    summary: CertificateSummary,
}

fn check(args: CheckArgs) -> Result<(), Failure> {
    let mut found = Vec::new();
    let mut unreadable = Vec::new();
    let mut keys = Vec::new();
    collect_certificates(&args.dir, &mut found, &mut unreadable, &mut keys)?;
    if found.is_empty() {
        return Err(usage(format!("no certificate (*.pem, *.crt, *.cert) under {}", args.dir.display())));
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    let now = OffsetDateTime::now_utc();
    let mut rows = vec![["FILE", "SUBJECT", "SANS", "ISSUER", "NOT AFTER", "DAYS LEFT", "STATUS"].map(String::from)];
    let mut failing = Vec::new();
    for Found { path, summary } in &found {
        let days_left = summary.days_left(now);
        let status = if summary.not_after <= now {
            "EXPIRED"
        } else if summary.not_before > now {
            "NOT YET VALID"
        } else if days_left < i64::from(args.warn_days) {
            "EXPIRES SOON"
        } else {
            "ok"
        };
        if status != "ok" {
            failing.push(format!("{} ({})", path.display(), status.to_lowercase()));
        }
        let sans = summary.sans();
        rows.push([
            path.strip_prefix(&args.dir).unwrap_or(path).display().to_string(),
            summary.subject.clone(),
            if sans.is_empty() { "-".to_owned() } else { sans.join(",") },
            summary.issuer.clone(),
            summary.not_after.date().to_string(),
            days_left.to_string(),
            status.to_owned(),
        ]);
    }
    print!("{}", crate::ops::align(&rows));
    for (path, why) in &unreadable {
        eprintln!("toolmesh: skipped {}: {why}", path.display());
    }
    // A key others can read is a key others may hold; flagged, not failed (agents load it too,
    // with the same warning).
    keys.sort();
    for key in &keys {
        if let Some(mode) = toolmesh_core::tls::key_file_exposure(key) {
            eprintln!("toolmesh: warning: the private key {} is readable by its group or others (mode {mode:o}); restrict it with `chmod 600 {}`", key.display(), key.display());
        }
    }
    if failing.is_empty() {
        return Ok(());
    }
    Err(Failure::from(Error::new(
        ErrorKind::CertificateExpired,
        format!(
            "{} of {} certificates expire within {} days or are not valid now: {}; rotate them with `toolmesh certs rotate NAME --dir DIR`",
            failing.len(),
            found.len(),
            args.warn_days,
            failing.join(", ")
        ),
    )))
}

fn collect_certificates(dir: &Path, found: &mut Vec<Found>, unreadable: &mut Vec<(PathBuf, String)>, keys: &mut Vec<PathBuf>) -> Result<(), Failure> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Failure::usage(Error::new(ErrorKind::CertificateFile, format!("cannot read directory {}: {e}", dir.display()))))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_certificates(&path, found, unreadable, keys)?;
            continue;
        }
        let extension = path.extension().and_then(|e| e.to_str()).unwrap_or_default();
        if extension == "key" {
            keys.push(path);
            continue;
        }
        if !matches!(extension, "pem" | "crt" | "cert") {
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(text) if text.contains("PRIVATE KEY-----") => keys.push(path),
            // A .pem may hold a key instead; only files with a certificate are listed.
            Ok(text) if !text.contains("-----BEGIN CERTIFICATE-----") => {}
            Ok(text) => match CertificateSummary::parse_pem(&text, &path.display().to_string()) {
                Ok(summary) => found.push(Found { path, summary }),
                Err(e) => unreadable.push((path, e.message().to_owned())),
            },
            Err(e) => unreadable.push((path, e.to_string())),
        }
    }
    Ok(())
}

fn rotate(args: RotateArgs) -> Result<(), Failure> {
    let ca = load_ca(&args.dir)?;
    let ca_summary = CertificateSummary::parse_pem(ca.cert_pem(), "the CA")?;
    let names = if args.all { leaf_names(&args.dir, &ca_summary)? } else { args.names };
    if names.is_empty() {
        return Err(usage(format!("no leaf certificate signed by the CA is in {}", args.dir.display())));
    }
    for name in &names {
        if name == CA_NAME {
            return Err(usage(
                "the CA is not rotated in place: every certificate it signed would stop being trusted; \
                 create a new CA with `toolmesh certs ca`, add it to the trust bundle, then re-issue"
                    .to_owned(),
            ));
        }
        let [cert_path, _] = pair_paths(&args.dir, name);
        let text = std::fs::read_to_string(&cert_path).map_err(|e| {
            Failure::usage(Error::new(ErrorKind::CertificateFile, format!("cannot read {}: {e}; `toolmesh certs issue {name}` creates it", cert_path.display())))
        })?;
        let existing = CertificateSummary::parse_pem(&text, &cert_path.display().to_string())?;
        if existing.issuer != ca_summary.subject {
            return Err(usage(format!(
                "{} was issued by '{}', not by the CA in {} ('{}'); rotate it with the CA that issued it",
                cert_path.display(),
                existing.issuer,
                args.dir.display(),
                ca_summary.subject
            )));
        }
        let request = LeafRequest::renewal_of(&existing);
        let (cert, key) = issue_pair(&ca, &args.dir, &request, true)?;
        let days = (request.not_after - request.not_before).whole_days();
        println!("rotated {} and {} (new key, valid {days} days, until {})", cert.display(), key.display(), request.not_after.date());
    }
    Ok(())
}

/// The names of the pairs in `dir` whose certificate the CA signed.
fn leaf_names(dir: &Path, ca: &CertificateSummary) -> Result<Vec<String>, Failure> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Failure::usage(Error::new(ErrorKind::CertificateFile, format!("cannot read directory {}: {e}", dir.display()))))?;
    let mut names: Vec<String> = entries
        .flatten()
        .filter_map(|entry| {
            let path = entry.path();
            let name = path.file_stem()?.to_str()?.to_owned();
            let is_pair = path.extension()? == "pem" && name != CA_NAME && dir.join(format!("{name}.key")).is_file();
            let summary = CertificateSummary::parse_pem(&std::fs::read_to_string(&path).ok()?, &name).ok()?;
            (is_pair && !summary.is_ca && summary.issuer == ca.subject).then_some(name)
        })
        .collect();
    names.sort();
    Ok(names)
}

fn load_ca(dir: &Path) -> Result<CertificateAuthority, Failure> {
    let [ca_cert, ca_key] = pair_paths(dir, CA_NAME);
    CertificateAuthority::load(&ca_cert, &ca_key).map_err(|e| {
        Failure::usage(e.context(format!("loading the CA from {} (create one with `toolmesh certs ca --dir {}`)", dir.display(), dir.display())))
    })
}

/// An explicit `--trust-domain` wins (with a warning when the CA serves another); otherwise the
/// CA's, so `certs ca --trust-domain D` then `certs issue NAME` gives spiffe://D/agent/NAME.
fn trust_domain_for(explicit: Option<String>, ca: &CertificateAuthority) -> Result<String, Failure> {
    let of_ca = CertificateSummary::parse_pem(ca.cert_pem(), "the CA").ok().as_ref().and_then(ca_trust_domain);
    let domain = match (explicit, of_ca) {
        (Some(explicit), Some(of_ca)) if explicit != of_ca => {
            eprintln!(
                "toolmesh: warning: --trust-domain {explicit} differs from the CA's trust domain {of_ca}; peers that allow only \
                 {of_ca} will refuse this certificate (omit --trust-domain to use the CA's)"
            );
            explicit
        }
        (Some(domain), _) | (None, Some(domain)) => domain,
        (None, None) => DEFAULT_TRUST_DOMAIN.to_owned(),
    };
    check_trust_domain(&domain)?;
    Ok(domain)
}

/// Writes a new CA to `dir/ca.{pem,key}`; a directory it creates is 0700 whatever the umask.
/// An existing directory is kept as it is, with a warning when others may write to it (they
/// could replace the CA).
fn write_ca(dir: &Path, trust_domain: &str, days: u32, key_type: KeyType) -> Result<[PathBuf; 2], Failure> {
    let created = toolmesh_core::fs_private::create_private_dir(dir)
        .map_err(|e| Error::new(ErrorKind::CertificateFile, format!("cannot create {}: {e}", dir.display())))?;
    if created.is_empty() {
        if let Ok(Some(mode)) = toolmesh_core::fs_private::group_or_other_mode(dir) {
            if mode & 0o022 != 0 {
                eprintln!(
                    "toolmesh: warning: {} is writable by its group or others (mode {mode:o}): they could replace the CA; \
                     restrict it with `chmod 700 {}`",
                    dir.display(),
                    dir.display()
                );
            }
        }
    }
    let ca = CertificateAuthority::generate_with(&ca_common_name(trust_domain), days, key_type)?;
    let [cert, key] = pair_paths(dir, CA_NAME);
    write_file_atomic(&key, ca.key_pem().as_bytes(), 0o600)?;
    write_file_atomic(&cert, ca.cert_pem().as_bytes(), 0o644)?;
    Ok([cert, key])
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
    if name == CA_NAME {
        return Err(usage(format!("'{name}' is reserved for the CA's own files ({name}.pem, {name}.key); choose another name")));
    }
    Ok(())
}

fn check_trust_domain(domain: &str) -> Result<(), Failure> {
    if toolmesh_ca::is_valid_trust_domain(domain) {
        Ok(())
    } else {
        Err(usage(format!("trust domain '{domain}' is invalid; use lowercase letters, digits, '-', '.' and '_' (like example.org)")))
    }
}

fn usage(message: String) -> Failure {
    Failure::usage(Error::new(ErrorKind::InvalidConfig, message))
}
