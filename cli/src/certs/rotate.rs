//! `toolmesh certs rotate`: re-issue leaves in place from the CA that signed them.

use super::ca::load_ca;
use super::issue::{issue_pair, pair_paths};
use super::{usage, CA_NAME};
use crate::Failure;
use clap::Args;
use std::path::{Path, PathBuf};
use toolmesh_ca::{CertificateSummary, LeafRequest};
use toolmesh_core::{Error, ErrorKind};

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

pub(super) fn rotate(args: RotateArgs) -> Result<(), Failure> {
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
            Failure::usage(Error::new(
                ErrorKind::CertificateFile,
                format!("cannot read {}: {e}; `toolmesh certs issue {name}` creates it", cert_path.display()),
            ))
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
