//! What an agent does with certificates itself: the fingerprint that pins a CA or names a peer,
//! and the key and signing request it sends to join a mesh (`tls=auto`). Issuing certificates
//! (a CA, leaves, RSA keys, writing key files) is the operator's side: the `toolmesh-ca` crate,
//! which the CLI and the registry use and an agent's native library does not carry.

use crate::error::{Error, ErrorKind, Result};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PKCS_ECDSA_P256_SHA256};

/// A new private key (ECDSA P-256) and a certificate signing request for it, PEM; the CA fills
/// in subject and SANs, so the request carries only the name.
pub fn certificate_request(common_name: &str) -> Result<(KeyPair, String)> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(rcgen_error)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(rcgen_error)?;
    params.distinguished_name = distinguished_name(common_name);
    let csr = params.serialize_request(&key).map_err(rcgen_error)?.pem().map_err(rcgen_error)?;
    Ok((key, csr))
}

/// SHA-256 of a DER certificate, lowercase hex.
pub fn fingerprint(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, der).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The subject of every toolmesh certificate and request: the name, organization `toolmesh`.
pub fn distinguished_name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "toolmesh");
    dn
}

fn rcgen_error(e: rcgen::Error) -> Error {
    Error::new(ErrorKind::Internal, format!("certificate generation failed: {e}"))
}
