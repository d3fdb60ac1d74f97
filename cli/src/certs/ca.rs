//! `toolmesh certs ca`, and the CA's files every other subcommand loads: where they are, which
//! trust domain the CA serves, and writing a new one.

use super::issue::pair_paths;
use super::names::check_trust_domain;
use super::options::KeyArg;
use super::CA_NAME;
use crate::Failure;
use clap::Args;
use std::path::{Path, PathBuf};
use toolmesh_ca::{
    ca_common_name, ca_trust_domain, refuse_existing, write_file_atomic, CertificateAuthority, CertificateSummary, KeyType,
    DEFAULT_CA_DAYS, DEFAULT_TRUST_DOMAIN,
};
use toolmesh_core::{Error, ErrorKind};

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

pub(super) fn ca(args: CaArgs) -> Result<(), Failure> {
    check_trust_domain(&args.trust_domain)?;
    let paths = pair_paths(&args.dir, CA_NAME);
    if !args.force {
        refuse_existing(&[&paths[0], &paths[1]]).map_err(Failure::usage)?;
    }
    let [cert, key] = write_ca(&args.dir, &args.trust_domain, args.days, args.key.key_type)?;
    println!("wrote {} (the trust bundle, valid {} days) and {} (0600: keep it private)", cert.display(), args.days, key.display());
    Ok(())
}

pub(super) fn load_ca(dir: &Path) -> Result<CertificateAuthority, Failure> {
    let [ca_cert, ca_key] = pair_paths(dir, CA_NAME);
    CertificateAuthority::load(&ca_cert, &ca_key).map_err(|e| {
        Failure::usage(e.context(format!(
            "loading the CA from {} (create one with `toolmesh certs ca --dir {}`)",
            dir.display(),
            dir.display()
        )))
    })
}

/// An explicit `--trust-domain` wins (with a warning when the CA serves another); otherwise the
/// CA's, so `certs ca --trust-domain D` then `certs issue NAME` gives spiffe://D/agent/NAME.
pub(super) fn trust_domain_for(explicit: Option<String>, ca: &CertificateAuthority) -> Result<String, Failure> {
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
pub(super) fn write_ca(dir: &Path, trust_domain: &str, days: u32, key_type: KeyType) -> Result<[PathBuf; 2], Failure> {
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
