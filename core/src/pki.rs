//! Certificate issuance: a mesh CA and the leaf certificates it signs (ECDSA P-256).
//! Used by `toolmesh certs`, by the tests, and by the registry's automatic CA.

use crate::error::{Error, ErrorKind, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, SanType, PKCS_ECDSA_P256_SHA256,
};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

/// The trust domain used in `spiffe://` URI SANs when none is given.
pub const DEFAULT_TRUST_DOMAIN: &str = "toolmesh.local";

/// What a leaf certificate is for; it decides the SPIFFE path and the key usages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Registry,
    Agent,
    Operator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Registry => "registry",
            Role::Agent => "agent",
            Role::Operator => "operator",
        }
    }
}

/// A leaf certificate to issue.
#[derive(Debug, Clone)]
pub struct LeafRequest {
    pub common_name: String,
    pub role: Role,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub uris: Vec<String>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl LeafRequest {
    /// The defaults of `toolmesh certs`: SANs for the name, `localhost`, `127.0.0.1`, `::1` and
    /// `spiffe://<trust-domain>/<role>/<name>`; valid from an hour ago for `days` days.
    pub fn new(name: &str, role: Role, trust_domain: &str, days: u32) -> Self {
        let now = OffsetDateTime::now_utc();
        let mut dns_names = vec![name.to_owned()];
        if name != "localhost" {
            dns_names.push("localhost".to_owned());
        }
        LeafRequest {
            common_name: name.to_owned(),
            role,
            dns_names,
            ip_addresses: vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()],
            uris: vec![spiffe_id(trust_domain, role, name)],
            not_before: now - Duration::hours(1),
            not_after: now + Duration::days(i64::from(days)),
        }
    }
}

pub fn spiffe_id(trust_domain: &str, role: Role, name: &str) -> String {
    format!("spiffe://{trust_domain}/{}/{name}", role.as_str())
}

/// A certificate and its private key, PEM-encoded.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A certificate authority that can sign leaf certificates.
pub struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    key_pem: String,
}

impl CertificateAuthority {
    /// A new self-signed CA valid for `days` days.
    pub fn generate(common_name: &str, days: u32) -> Result<Self> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(rcgen_error)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(rcgen_error)?;
        params.distinguished_name = distinguished_name(common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(i64::from(days));
        let cert = params.self_signed(&key).map_err(rcgen_error)?;
        let key_pem = key.serialize_pem();
        Ok(CertificateAuthority { issuer: Issuer::new(params, key), cert_pem: cert.pem(), key_pem })
    }

    /// Loads a CA from its PEM certificate and key files.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self> {
        let cert_pem = read_text(cert_path, "CA certificate")?;
        let key_pem = read_text(key_path, "CA key")?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| {
            Error::new(ErrorKind::CertificateFile, format!("{}: not a PEM private key ({e})", key_path.display()))
        })?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key).map_err(|e| {
            Error::new(ErrorKind::CertificateFile, format!("{}: not a PEM CA certificate ({e})", cert_path.display()))
        })?;
        Ok(CertificateAuthority { issuer, cert_pem, key_pem })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// Issues a leaf certificate with a new P-256 key. Every leaf may serve and call
    /// (serverAuth + clientAuth), because every agent does both.
    pub fn issue(&self, request: &LeafRequest) -> Result<Issued> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(rcgen_error)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(rcgen_error)?;
        params.distinguished_name = distinguished_name(&request.common_name);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = request.not_before;
        params.not_after = request.not_after;
        let mut sans = Vec::new();
        for name in &request.dns_names {
            sans.push(SanType::DnsName(name.as_str().try_into().map_err(|e| {
                Error::new(ErrorKind::InvalidConfig, format!("'{name}' is not a valid DNS name ({e})"))
            })?));
        }
        sans.extend(request.ip_addresses.iter().copied().map(SanType::IpAddress));
        for uri in &request.uris {
            sans.push(SanType::URI(uri.as_str().try_into().map_err(|e| {
                Error::new(ErrorKind::InvalidConfig, format!("'{uri}' is not a valid URI SAN ({e})"))
            })?));
        }
        params.subject_alt_names = sans;
        let cert = params.signed_by(&key, &self.issuer).map_err(rcgen_error)?;
        Ok(Issued { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }
}

fn distinguished_name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "toolmesh");
    dn
}

fn rcgen_error(e: rcgen::Error) -> Error {
    Error::new(ErrorKind::Internal, format!("certificate generation failed: {e}"))
}

fn read_text(path: &Path, what: &str) -> Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| Error::new(ErrorKind::CertificateFile, format!("cannot read {what} {}: {e}", path.display())))
}

/// Writes `<dir>/<name>.pem` (0644) and `<dir>/<name>.key` (0600). Refuses to replace existing
/// files unless `overwrite` is set; a replacement is atomic (write to a temporary, then rename).
pub fn write_pair(dir: &Path, name: &str, issued: &Issued, overwrite: bool) -> Result<(PathBuf, PathBuf)> {
    let cert_path = dir.join(format!("{name}.pem"));
    let key_path = dir.join(format!("{name}.key"));
    if !overwrite {
        for p in [&cert_path, &key_path] {
            if p.exists() {
                return Err(Error::new(
                    ErrorKind::InvalidConfig,
                    format!("{} already exists; refusing to overwrite it (use --force to replace it)", p.display()),
                ));
            }
        }
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::new(ErrorKind::CertificateFile, format!("cannot create {}: {e}", dir.display())))?;
    write_file_atomic(&key_path, issued.key_pem.as_bytes(), 0o600)?;
    write_file_atomic(&cert_path, issued.cert_pem.as_bytes(), 0o644)?;
    Ok((cert_path, key_path))
}

/// Writes through a temporary file created with `mode`, then renames it into place.
pub fn write_file_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let fail = |e: std::io::Error| Error::new(ErrorKind::CertificateFile, format!("cannot write {}: {e}", path.display()));
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(&tmp).map_err(fail)?;
    file.write_all(contents).and_then(|_| file.sync_all()).map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_leaves_with_the_default_sans() {
        let ca = CertificateAuthority::generate("test CA", 10).unwrap();
        let leaf = ca.issue(&LeafRequest::new("calc", Role::Agent, DEFAULT_TRUST_DOMAIN, 5)).unwrap();
        let der = rustls_pki_types::CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let mut sans = Vec::new();
        for name in &cert.subject_alternative_name().unwrap().unwrap().value.general_names {
            sans.push(match name {
                x509_parser::extensions::GeneralName::DNSName(d) => d.to_string(),
                x509_parser::extensions::GeneralName::URI(u) => u.to_string(),
                x509_parser::extensions::GeneralName::IPAddress(ip) => match ip.len() {
                    4 => std::net::IpAddr::from(<[u8; 4]>::try_from(*ip).unwrap()).to_string(),
                    _ => std::net::IpAddr::from(<[u8; 16]>::try_from(*ip).unwrap()).to_string(),
                },
                other => format!("{other:?}"),
            });
        }
        assert_eq!(sans, ["calc", "localhost", "127.0.0.1", "::1", "spiffe://toolmesh.local/agent/calc"]);
    }

    #[test]
    fn write_pair_sets_modes_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::generate("test CA", 10).unwrap();
        let leaf = ca.issue(&LeafRequest::new("a", Role::Agent, DEFAULT_TRUST_DOMAIN, 5)).unwrap();
        let (cert, key) = write_pair(dir.path(), "a", &leaf, false).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
            assert_eq!(std::fs::metadata(&cert).unwrap().permissions().mode() & 0o777, 0o644);
        }
        let err = write_pair(dir.path(), "a", &leaf, false).unwrap_err();
        assert!(err.message().contains("--force"), "{}", err.message());
        write_pair(dir.path(), "a", &leaf, true).unwrap();
    }

    use rustls_pki_types::pem::PemObject;
}
