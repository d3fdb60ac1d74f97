//! `toolmesh certs check`: every certificate under a directory, as a table, failing when one
//! expires soon; private keys others can read are flagged.

use super::usage;
use crate::Failure;
use clap::Args;
use std::path::{Path, PathBuf};
use time::OffsetDateTime;
use toolmesh_ca::CertificateSummary;
use toolmesh_core::{Error, ErrorKind};

#[derive(Args)]
pub struct CheckArgs {
    /// Directory to search (recursively) for certificates (*.pem, *.crt, *.cert).
    #[arg(long, default_value = ".", value_name = "DIR")]
    dir: PathBuf,
    /// Fail when a certificate expires within this many days.
    #[arg(long, default_value_t = 30, value_name = "DAYS")]
    warn_days: u32,
}

/// A certificate found by `check`.
struct Found {
    path: PathBuf,
    summary: CertificateSummary,
}

pub(super) fn check(args: CheckArgs) -> Result<(), Failure> {
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
            eprintln!(
                "toolmesh: warning: the private key {} is readable by its group or others (mode {mode:o}); restrict it with `chmod 600 {}`",
                key.display(),
                key.display()
            );
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

fn collect_certificates(
    dir: &Path,
    found: &mut Vec<Found>,
    unreadable: &mut Vec<(PathBuf, String)>,
    keys: &mut Vec<PathBuf>,
) -> Result<(), Failure> {
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
