//! `toolmesh certs issue`, and issuing a pair into a directory (which `init` and `rotate` do too).

use super::ca::{load_ca, trust_domain_for};
use super::names::check_name;
use super::options::LeafOptions;
use crate::Failure;
use clap::{Args, ValueEnum};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use toolmesh_ca::{spiffe_id, write_pair, CertificateAuthority, LeafRequest, Role};
use toolmesh_core::ErrorKind;

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
    leaf: LeafOptions,
    /// Replace an existing pair.
    #[arg(long)]
    force: bool,
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

pub(super) fn issue(args: IssueArgs) -> Result<(), Failure> {
    check_name(&args.name)?;
    let ca = load_ca(&args.dir)?;
    let trust_domain = trust_domain_for(args.leaf.validity.trust_domain, &ca)?;
    let role = Role::from(args.role);
    let mut request = LeafRequest::new(&args.name, role, &trust_domain, args.leaf.validity.days);
    request.key_type = args.leaf.key.key_type;
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
        args.leaf.key.key_type.as_str(),
        args.leaf.validity.days
    );
    Ok(())
}

/// Issues `request` and writes `DIR/<common name>.{pem,key}`.
pub(super) fn issue_pair(ca: &CertificateAuthority, dir: &Path, request: &LeafRequest, force: bool) -> Result<(PathBuf, PathBuf), Failure> {
    let issued = ca.issue(request).map_err(Failure::usage)?;
    write_pair(dir, &request.common_name, &issued, force).map_err(|e| match e.kind() {
        // An existing file (without --force) is a usage error; an unwritable one is not.
        ErrorKind::InvalidConfig => Failure::usage(e),
        _ => Failure::from(e),
    })
}

pub(super) fn pair_paths(dir: &Path, name: &str) -> [PathBuf; 2] {
    [dir.join(format!("{name}.pem")), dir.join(format!("{name}.key"))]
}
