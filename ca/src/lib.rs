//! Certificate issuance and inspection: a mesh CA, the leaf certificates it signs (ECDSA P-256
//! by default, RSA on request), certificate signing requests, and the summary `toolmesh certs
//! check` prints. The one implementation used by the CLI, the registry's automatic CA and tests.
//!
//! This is the operator's side and lives outside `toolmesh-core` so an agent's native library
//! does not carry CA issuance, RSA key generation and key-file writing. What an agent needs itself
//! (a signing request to join, certificate fingerprints) is in `toolmesh_core::certificate` and
//! re-exported here, so the operator's tools name one crate.
#![forbid(unsafe_code)]

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
    PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};
use toolmesh_core::certificate::distinguished_name;
use toolmesh_core::error::{Error, ErrorKind, Result};
use toolmesh_core::spiffe_id::SpiffeId;

pub use rcgen::ExtendedKeyUsagePurpose;
pub use toolmesh_core::certificate::{certificate_request, fingerprint};

/// The trust domain used in `spiffe://` URI SANs when none is given.
pub const DEFAULT_TRUST_DOMAIN: &str = "toolmesh.local";
/// How long a leaf certificate is valid unless told otherwise: short enough that rotation is a
/// habit, long enough for a quarterly routine.
pub const DEFAULT_LEAF_DAYS: u32 = 90;
/// A CA outlives the leaves it signs.
pub const DEFAULT_CA_DAYS: u32 = 3650;

/// What a leaf certificate is for; it decides the SPIFFE path.
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

    pub fn parse(role: &str) -> Result<Role> {
        match role {
            "registry" => Ok(Role::Registry),
            "agent" => Ok(Role::Agent),
            "operator" => Ok(Role::Operator),
            other => Err(Error::new(ErrorKind::InvalidConfig, format!("role '{other}' is not known: use agent, registry or operator"))),
        }
    }
}

/// The kind of key a certificate is issued with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum KeyType {
    #[default]
    EcdsaP256,
    Rsa2048,
    Rsa3072,
    Rsa4096,
}

impl KeyType {
    pub const NAMES: &'static [&'static str] = &["ecdsa-p256", "rsa-2048", "rsa-3072", "rsa-4096"];

    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::EcdsaP256 => "ecdsa-p256",
            KeyType::Rsa2048 => "rsa-2048",
            KeyType::Rsa3072 => "rsa-3072",
            KeyType::Rsa4096 => "rsa-4096",
        }
    }

    pub fn parse(name: &str) -> Result<KeyType> {
        match name.trim().to_ascii_lowercase().as_str() {
            "ecdsa-p256" | "p256" | "ecdsa" => Ok(KeyType::EcdsaP256),
            "rsa-2048" | "rsa2048" => Ok(KeyType::Rsa2048),
            "rsa-3072" | "rsa3072" => Ok(KeyType::Rsa3072),
            "rsa-4096" | "rsa4096" => Ok(KeyType::Rsa4096),
            other => Err(Error::new(
                ErrorKind::InvalidConfig,
                format!("key type '{other}' is not supported: use one of {}", KeyType::NAMES.join(", ")),
            )),
        }
    }

    fn rsa_bits(self) -> Option<usize> {
        match self {
            KeyType::EcdsaP256 => None,
            KeyType::Rsa2048 => Some(2048),
            KeyType::Rsa3072 => Some(3072),
            KeyType::Rsa4096 => Some(4096),
        }
    }

    /// A new private key of this type.
    pub fn generate(self) -> Result<KeyPair> {
        let Some(bits) = self.rsa_bits() else {
            return KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(rcgen_error);
        };
        use rsa::pkcs8::EncodePrivateKey;
        let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, bits)
            .map_err(|e| Error::new(ErrorKind::Internal, format!("RSA key generation failed: {e}")))?;
        let der = key.to_pkcs8_der().map_err(|e| Error::new(ErrorKind::Internal, format!("RSA key encoding failed: {e}")))?;
        let pkcs8 = rustls_pki_types::PrivatePkcs8KeyDer::from(der.as_bytes().to_vec());
        KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &PKCS_RSA_SHA256).map_err(rcgen_error)
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
    pub key_type: KeyType,
    /// serverAuth + clientAuth by default: every agent both serves and calls.
    pub extended_key_usages: Vec<ExtendedKeyUsagePurpose>,
}

impl LeafRequest {
    /// The defaults of `toolmesh certs`: SANs for the name, `localhost`, `127.0.0.1`, `::1` and
    /// `spiffe://<trust-domain>/<role>/<name>`; valid from an hour ago (clock skew) for `days` days.
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
            ip_addresses: vec![IpAddr::from([127, 0, 0, 1]), IpAddr::from(std::net::Ipv6Addr::LOCALHOST)],
            uris: vec![spiffe_id(trust_domain, role, name)],
            not_before: now - Duration::hours(1),
            not_after: now + Duration::days(i64::from(days)),
            key_type: KeyType::default(),
            extended_key_usages: vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth],
        }
    }

    /// The same subject, SANs, usages, key type and validity length as an existing certificate,
    /// valid from now: what `toolmesh certs rotate` re-issues.
    pub fn renewal_of(existing: &CertificateSummary) -> Self {
        let now = OffsetDateTime::now_utc();
        let lifetime = existing.not_after - existing.not_before;
        LeafRequest {
            common_name: existing.common_name.clone(),
            role: existing.role().unwrap_or(Role::Agent),
            dns_names: existing.dns_names.clone(),
            ip_addresses: existing.ip_addresses.clone(),
            uris: existing.uris.clone(),
            not_before: now - Duration::hours(1),
            not_after: now - Duration::hours(1) + lifetime,
            key_type: existing.key_type,
            extended_key_usages: existing.extended_key_usages.clone(),
        }
    }

    /// Adds a SAN unless it is already there.
    pub fn add_dns(&mut self, name: &str) {
        if !self.dns_names.iter().any(|n| n == name) {
            self.dns_names.push(name.to_owned());
        }
    }

    pub fn add_ip(&mut self, ip: IpAddr) {
        if !self.ip_addresses.contains(&ip) {
            self.ip_addresses.push(ip);
        }
    }

    pub fn add_uri(&mut self, uri: &str) {
        if !self.uris.iter().any(|u| u == uri) {
            self.uris.push(uri.to_owned());
        }
    }

    fn params(&self) -> Result<CertificateParams> {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(rcgen_error)?;
        params.distinguished_name = distinguished_name(&self.common_name);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if self.key_type.rsa_bits().is_some() {
            // RSA key exchange in TLS 1.2 needs it; ECDSA keys only sign.
            params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
        }
        params.extended_key_usages = self.extended_key_usages.clone();
        params.use_authority_key_identifier_extension = true;
        params.not_before = self.not_before;
        params.not_after = self.not_after;
        let mut sans = Vec::new();
        for name in &self.dns_names {
            sans.push(SanType::DnsName(
                name.as_str()
                    .try_into()
                    .map_err(|e| Error::new(ErrorKind::InvalidConfig, format!("'{name}' is not a valid DNS name ({e})")))?,
            ));
        }
        sans.extend(self.ip_addresses.iter().copied().map(SanType::IpAddress));
        for uri in &self.uris {
            check_spiffe_uri(uri)?;
            sans.push(SanType::URI(
                uri.as_str()
                    .try_into()
                    .map_err(|e| Error::new(ErrorKind::InvalidConfig, format!("'{uri}' is not a valid URI SAN ({e})")))?,
            ));
        }
        params.subject_alt_names = sans;
        Ok(params)
    }
}

pub fn spiffe_id(trust_domain: &str, role: Role, name: &str) -> String {
    format!("spiffe://{trust_domain}/{}/{name}", role.as_str())
}

/// A distinct name for a new CA: peers look issuers up by name, and a foreign CA with the same
/// name as ours would be reported as a bad signature rather than as an unknown CA.
pub fn ca_common_name(trust_domain: &str) -> String {
    let nonce: u64 = rand::random();
    format!("toolmesh CA {trust_domain} {:012x}", nonce & 0xffff_ffff_ffff)
}

/// The trust domain a CA serves: from a `spiffe://` URI SAN of its own, else from the name
/// [`ca_common_name`] gave it; `None` for a CA made elsewhere without either.
pub fn ca_trust_domain(ca: &CertificateSummary) -> Option<String> {
    let from_uri = ca.uris.iter().find_map(|uri| SpiffeId::parse(uri).ok().map(|id| id.trust_domain()));
    let from_name = || {
        let (domain, nonce) = ca.common_name.strip_prefix("toolmesh CA ")?.rsplit_once(' ')?;
        (nonce.len() == 12 && nonce.chars().all(|c| c.is_ascii_hexdigit()) && !domain.is_empty()).then_some(domain)
    };
    from_uri.or_else(from_name).map(str::to_owned)
}

pub use toolmesh_core::spiffe_id::is_valid_trust_domain;

/// A URI SAN of the mesh is a SPIFFE ID, by the rule every reader of certificates applies: the
/// issuer never writes an ID the mesh would then read as none.
fn check_spiffe_uri(uri: &str) -> Result<()> {
    SpiffeId::parse(uri).map(drop).map_err(|e| Error::new(ErrorKind::InvalidConfig, format!("URI SAN {e}")))
}

/// A certificate and its private key, PEM-encoded.
#[derive(Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A private key never reaches a log line, not even through `{:?}`.
        f.debug_struct("Issued").field("cert_pem", &self.cert_pem).field("key_pem", &"[private key elided]").finish()
    }
}

/// A certificate authority that can sign leaf certificates.
pub struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    key_pem: String,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority").field("fingerprint", &self.fingerprint()).finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// A new self-signed ECDSA P-256 CA valid for `days` days.
    pub fn generate(common_name: &str, days: u32) -> Result<Self> {
        Self::generate_with(common_name, days, KeyType::EcdsaP256)
    }

    pub fn generate_with(common_name: &str, days: u32, key_type: KeyType) -> Result<Self> {
        let key = key_type.generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(rcgen_error)?;
        params.distinguished_name = distinguished_name(common_name);
        // Leaves only: a CA of the mesh cannot mint intermediate CAs.
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
        Self::from_pem(&cert_pem, &key_pem, &cert_path.display().to_string(), &key_path.display().to_string())
    }

    /// A CA from PEM text; `cert_name` and `key_name` say where it came from in errors.
    pub fn from_pem(cert_pem: &str, key_pem: &str, cert_name: &str, key_name: &str) -> Result<Self> {
        let key = KeyPair::from_pem(key_pem)
            .map_err(|e| Error::new(ErrorKind::CertificateFile, format!("{key_name}: not a usable PEM private key ({e})")))?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)
            .map_err(|e| Error::new(ErrorKind::CertificateFile, format!("{cert_name}: not a PEM CA certificate ({e})")))?;
        let summary = CertificateSummary::parse_pem(cert_pem, cert_name)?;
        if !summary.is_ca {
            return Err(Error::new(ErrorKind::CertificateFile, format!("{cert_name} is not a CA certificate (basicConstraints CA:FALSE)")));
        }
        let public_key = issuer.key().public_key_raw().to_vec();
        if public_key != summary.public_key {
            return Err(Error::new(
                ErrorKind::KeyMismatch,
                format!("the CA key {key_name} does not belong to the CA certificate {cert_name}; use the key created with it"),
            ));
        }
        Ok(CertificateAuthority { issuer, cert_pem: cert_pem.to_owned(), key_pem: key_pem.to_owned() })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// SHA-256 of the CA certificate (DER), lowercase hex: what a join token pins.
    pub fn fingerprint(&self) -> String {
        CertificateDer::from_pem_slice(self.cert_pem.as_bytes()).map(|der| fingerprint(&der)).unwrap_or_default()
    }

    /// Issues a leaf certificate with a new key of `request.key_type`.
    pub fn issue(&self, request: &LeafRequest) -> Result<Issued> {
        let key = request.key_type.generate()?;
        let cert = request.params()?.signed_by(&key, &self.issuer).map_err(rcgen_error)?;
        Ok(Issued { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }

    /// Signs the public key of a certificate signing request with the subject, SANs and validity
    /// of `request` (what the CSR itself asks for is ignored: the CA decides who the holder is).
    pub fn sign_request(&self, csr_pem: &str, request: &LeafRequest) -> Result<String> {
        let mut csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| Error::new(ErrorKind::InvalidConfig, format!("the certificate signing request is not valid: {e}")))?;
        csr.params = request.params()?;
        Ok(csr.signed_by(&self.issuer).map_err(rcgen_error)?.pem())
    }
}

/// What `toolmesh certs check` shows of a certificate, and what `rotate` keeps.
#[derive(Debug, Clone)]
pub struct CertificateSummary {
    pub subject: String,
    pub common_name: String,
    pub issuer: String,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub uris: Vec<String>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub is_ca: bool,
    pub key_type: KeyType,
    pub extended_key_usages: Vec<ExtendedKeyUsagePurpose>,
    public_key: Vec<u8>,
}

impl CertificateSummary {
    /// The first certificate of a PEM text; `name` says where it came from in errors.
    pub fn parse_pem(pem: &str, name: &str) -> Result<Self> {
        let der = toolmesh_core::tls::pem::certificates_required(pem.as_bytes(), name)?.remove(0);
        Self::parse_der(&der, name)
    }

    pub fn parse_der(der: &[u8], name: &str) -> Result<Self> {
        use x509_parser::extensions::GeneralName;
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| Error::new(ErrorKind::CertificateFile, format!("{name} is not a valid X.509 certificate ({e})")))?;
        let mut summary = CertificateSummary {
            subject: cert.subject().to_string(),
            common_name: cert.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()).unwrap_or_default().to_owned(),
            issuer: cert.issuer().to_string(),
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            uris: Vec::new(),
            not_before: cert.validity().not_before.to_datetime(),
            not_after: cert.validity().not_after.to_datetime(),
            is_ca: cert.is_ca(),
            key_type: KeyType::EcdsaP256,
            extended_key_usages: Vec::new(),
            public_key: cert.public_key().subject_public_key.data.to_vec(),
        };
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for general_name in &san.value.general_names {
                match general_name {
                    GeneralName::DNSName(d) => summary.dns_names.push((*d).to_owned()),
                    GeneralName::URI(u) => summary.uris.push((*u).to_owned()),
                    GeneralName::IPAddress(bytes) => {
                        if let Ok(v4) = <[u8; 4]>::try_from(*bytes) {
                            summary.ip_addresses.push(IpAddr::from(v4));
                        } else if let Ok(v6) = <[u8; 16]>::try_from(*bytes) {
                            summary.ip_addresses.push(IpAddr::from(v6));
                        }
                    }
                    _ => {}
                }
            }
        }
        if let Ok(Some(eku)) = cert.extended_key_usage() {
            let eku = eku.value;
            for (present, purpose) in [
                (eku.server_auth, ExtendedKeyUsagePurpose::ServerAuth),
                (eku.client_auth, ExtendedKeyUsagePurpose::ClientAuth),
                (eku.code_signing, ExtendedKeyUsagePurpose::CodeSigning),
                (eku.email_protection, ExtendedKeyUsagePurpose::EmailProtection),
            ] {
                if present {
                    summary.extended_key_usages.push(purpose);
                }
            }
        }
        if let Ok(x509_parser::public_key::PublicKey::RSA(rsa)) = cert.public_key().parsed() {
            summary.key_type = match rsa.key_size() {
                0..=2048 => KeyType::Rsa2048,
                2049..=3072 => KeyType::Rsa3072,
                _ => KeyType::Rsa4096,
            };
        }
        Ok(summary)
    }

    /// The role named by the SPIFFE ID's first path segment, if it is one of ours.
    pub fn role(&self) -> Option<Role> {
        self.uris.iter().find_map(|uri| Role::parse(SpiffeId::parse(uri).ok()?.role()?).ok())
    }

    /// Every SAN, as `openssl` prints them (`DNS:x`, `IP:x`, `URI:x`).
    pub fn sans(&self) -> Vec<String> {
        let dns = self.dns_names.iter().map(|d| format!("DNS:{d}"));
        let ips = self.ip_addresses.iter().map(|ip| format!("IP:{ip}"));
        let uris = self.uris.iter().map(|u| format!("URI:{u}"));
        dns.chain(ips).chain(uris).collect()
    }

    /// Whole days until `not_after` (negative once expired).
    pub fn days_left(&self, now: OffsetDateTime) -> i64 {
        (self.not_after - now).whole_days()
    }
}

fn rcgen_error(e: rcgen::Error) -> Error {
    Error::new(ErrorKind::Internal, format!("certificate generation failed: {e}"))
}

fn read_text(path: &Path, what: &str) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::new(ErrorKind::CertificateFile, format!("cannot read {what} {}: {e}", path.display())))
}

/// Writes `<dir>/<name>.pem` (0644) and `<dir>/<name>.key` (0600). Refuses to replace existing
/// files unless `overwrite` is set; a replacement is atomic (write to a temporary, then rename).
pub fn write_pair(dir: &Path, name: &str, issued: &Issued, overwrite: bool) -> Result<(PathBuf, PathBuf)> {
    let cert_path = dir.join(format!("{name}.pem"));
    let key_path = dir.join(format!("{name}.key"));
    if !overwrite {
        refuse_existing(&[&cert_path, &key_path])?;
    }
    toolmesh_core::fs_private::create_private_dir(dir)
        .map_err(|e| Error::new(ErrorKind::CertificateFile, format!("cannot create {}: {e}", dir.display())))?;
    write_file_atomic(&key_path, issued.key_pem.as_bytes(), 0o600)?;
    write_file_atomic(&cert_path, issued.cert_pem.as_bytes(), 0o644)?;
    Ok((cert_path, key_path))
}

/// The error for files that exist and may not be overwritten without `--force`.
pub fn refuse_existing(paths: &[&Path]) -> Result<()> {
    match paths.iter().find(|p| p.exists()) {
        Some(existing) => Err(Error::new(
            ErrorKind::InvalidConfig,
            format!("{} already exists; refusing to overwrite it (use --force to replace it)", existing.display()),
        )),
        None => Ok(()),
    }
}

/// Writes through a temporary file created with `mode`, then renames it into place.
pub fn write_file_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let fail = |e: std::io::Error| Error::new(ErrorKind::CertificateFile, format!("cannot write {}: {e}", path.display()));
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.tmp{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let _ = std::fs::remove_file(&tmp);
    let mut file = options.open(&tmp).map_err(fail)?;
    if let Err(e) = file.write_all(contents).and_then(|_| file.sync_all()) {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail(e));
    }
    std::fs::rename(&tmp, path).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_leaves_with_the_default_sans_and_usages() {
        let ca = CertificateAuthority::generate("test CA", 10).unwrap();
        let leaf = ca.issue(&LeafRequest::new("calc", Role::Agent, DEFAULT_TRUST_DOMAIN, 5)).unwrap();
        let summary = CertificateSummary::parse_pem(&leaf.cert_pem, "leaf").unwrap();
        assert_eq!(summary.sans(), ["DNS:calc", "DNS:localhost", "IP:127.0.0.1", "IP:::1", "URI:spiffe://toolmesh.local/agent/calc"]);
        assert_eq!(summary.extended_key_usages, [ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth]);
        assert_eq!(summary.role(), Some(Role::Agent));
        assert!(!summary.is_ca);
        assert_eq!(summary.days_left(OffsetDateTime::now_utc()), 4, "5 days minus a moment");
        assert!(CertificateSummary::parse_pem(ca.cert_pem(), "ca").unwrap().is_ca);
    }

    #[test]
    fn a_renewal_keeps_subject_sans_and_key_type_with_a_new_key() {
        let ca = CertificateAuthority::generate("test CA", 10).unwrap();
        let mut request = LeafRequest::new("calc", Role::Operator, "prod.example", 30);
        request.add_dns("calc.internal");
        request.key_type = KeyType::Rsa2048;
        let first = ca.issue(&request).unwrap();
        let before = CertificateSummary::parse_pem(&first.cert_pem, "first").unwrap();
        assert_eq!(before.key_type, KeyType::Rsa2048);
        let renewed = ca.issue(&LeafRequest::renewal_of(&before)).unwrap();
        let after = CertificateSummary::parse_pem(&renewed.cert_pem, "renewed").unwrap();
        assert_eq!((after.sans(), after.common_name.as_str(), after.key_type), (before.sans(), "calc", KeyType::Rsa2048));
        assert_eq!((after.not_after - after.not_before).whole_days(), 30);
        assert_ne!(after.public_key, before.public_key);
    }

    #[test]
    fn a_signing_request_gets_the_sans_the_ca_decides() {
        let ca = CertificateAuthority::generate("test CA", 10).unwrap();
        let (key, csr) = certificate_request("whatever-the-agent-says").unwrap();
        let cert = ca.sign_request(&csr, &LeafRequest::new("calc", Role::Agent, DEFAULT_TRUST_DOMAIN, 1)).unwrap();
        let summary = CertificateSummary::parse_pem(&cert, "signed").unwrap();
        assert_eq!(summary.common_name, "calc");
        assert_eq!(summary.public_key, key.public_key_raw());
        assert!(ca.sign_request("not a CSR", &LeafRequest::new("x", Role::Agent, DEFAULT_TRUST_DOMAIN, 1)).is_err());
    }

    #[test]
    fn a_ca_names_its_trust_domain() {
        let summary = |ca: &CertificateAuthority| CertificateSummary::parse_pem(ca.cert_pem(), "ca").unwrap();
        let ours = CertificateAuthority::generate(&ca_common_name("prod.example"), 10).unwrap();
        assert_eq!(ca_trust_domain(&summary(&ours)).as_deref(), Some("prod.example"));
        let foreign = CertificateAuthority::generate("Example Corp Root CA", 10).unwrap();
        assert_eq!(ca_trust_domain(&summary(&foreign)), None);
    }

    #[test]
    fn uri_sans_must_be_spiffe_ids() {
        let ca = CertificateAuthority::generate("test CA", 10).unwrap();
        for bad in ["https://x", "spiffe://", "spiffe://UPPER/x", "spiffe://td/a//b", "spiffe://td/x?y"] {
            let mut request = LeafRequest::new("a", Role::Agent, DEFAULT_TRUST_DOMAIN, 1);
            request.uris = vec![bad.to_owned()];
            assert_eq!(ca.issue(&request).unwrap_err().kind(), ErrorKind::InvalidConfig, "{bad}");
        }
    }

    #[test]
    fn a_ca_key_must_match_its_certificate() {
        let (a, b) = (CertificateAuthority::generate("a", 10).unwrap(), CertificateAuthority::generate("b", 10).unwrap());
        let e = CertificateAuthority::from_pem(a.cert_pem(), b.key_pem(), "a.pem", "b.key").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::KeyMismatch, "{e}");
        let leaf = a.issue(&LeafRequest::new("x", Role::Agent, DEFAULT_TRUST_DOMAIN, 1)).unwrap();
        assert!(CertificateAuthority::from_pem(&leaf.cert_pem, &leaf.key_pem, "x.pem", "x.key")
            .unwrap_err()
            .message()
            .contains("not a CA"));
        assert!(!format!("{leaf:?}").contains("PRIVATE KEY"));
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
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2, "no temporary file is left behind");
    }
}
