//! What a certificate name and a trust domain may be.

use super::{usage, CA_NAME};
use crate::Failure;

/// Names become file names, DNS SANs and SPIFFE path segments: keep them to what all three take.
pub(super) fn check_name(name: &str) -> Result<(), Failure> {
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

pub(super) fn check_trust_domain(domain: &str) -> Result<(), Failure> {
    if toolmesh_ca::is_valid_trust_domain(domain) {
        Ok(())
    } else {
        Err(usage(format!("trust domain '{domain}' is invalid; use lowercase letters, digits, '-', '.' and '_' (like example.org)")))
    }
}
