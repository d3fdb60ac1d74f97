//! Reading and writing PEM, the one way: every certificate, CA bundle and key the mesh reads
//! goes through here, so a bad file is refused the same way, naming it, wherever it comes from.

use crate::error::{Error, ErrorKind, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Every certificate in `pem`, in order; `what` names the source in the error ("the CA bundle
/// 'ca.pem'"). Text that is not PEM is refused; text without a certificate is not (see
/// [`certificates_required`]).
pub fn certificates(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>> {
    CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::new(ErrorKind::CertificateFile, format!("{what} is not valid PEM: {e}")))
}

/// As [`certificates`], and at least one must be there.
pub fn certificates_required(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = certificates(pem, what)?;
    if certs.is_empty() {
        return Err(Error::new(
            ErrorKind::CertificateFile,
            format!("{what} contains no PEM certificate (expected -----BEGIN CERTIFICATE-----)"),
        ));
    }
    Ok(certs)
}

/// Exactly one certificate: a CA given on its own, say.
pub fn single_certificate(pem: &[u8], what: &str) -> Result<CertificateDer<'static>> {
    let mut certs = certificates(pem, what)?;
    match certs.len() {
        1 => Ok(certs.remove(0)),
        n => Err(Error::new(ErrorKind::CertificateFile, format!("{what} must hold exactly one PEM certificate, not {n}"))),
    }
}

/// The private key in `pem` (PKCS#8, SEC1 or PKCS#1); an encrypted one is named as such, since
/// it would otherwise read as "no key" (PKCS#8) or as garbage (PEM with Proc-Type).
pub fn private_key(pem: &[u8], key_name: &str) -> Result<PrivateKeyDer<'static>> {
    let text = String::from_utf8_lossy(pem);
    if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") || text.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(Error::new(
            ErrorKind::CertificateFile,
            format!(
                "the key file '{key_name}' is an encrypted private key; toolmesh needs it unencrypted (decrypt it with \
                 `openssl pkey -in {key_name} -out {key_name}.plain`, keep that file readable by the agent only, and point \
                 TOOLMESH_TLS_KEY at it)"
            ),
        ));
    }
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| {
        Error::new(
            ErrorKind::CertificateFile,
            format!(
                "the key file '{key_name}' holds no PEM private key (PKCS#8, SEC1 or PKCS#1): {e}; point TOOLMESH_TLS_KEY \
                 (or the tls_key option) at the key issued with the certificate, which starts with -----BEGIN PRIVATE KEY----- \
                 (`toolmesh certs issue NAME --dir DIR` issues a new pair)"
            ),
        )
    })
}

/// A certificate as PEM (`-----BEGIN CERTIFICATE-----`).
pub fn encode_certificate(der: &[u8]) -> String {
    ::pem::encode(&::pem::Pem::new("CERTIFICATE", der.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use toolmesh_ca::CertificateAuthority;

    #[test]
    fn certificates_round_trip_and_bad_text_is_named() {
        let ca = CertificateAuthority::generate("pem test CA", 1).unwrap();
        let der = single_certificate(ca.cert_pem().as_bytes(), "the CA").unwrap();
        assert_eq!(single_certificate(encode_certificate(&der).as_bytes(), "again").unwrap(), der);
        let two = format!("{}{}", ca.cert_pem(), ca.cert_pem());
        assert_eq!(certificates(two.as_bytes(), "two").unwrap().len(), 2);
        assert!(single_certificate(two.as_bytes(), "the CA").unwrap_err().message().contains("exactly one PEM certificate, not 2"));
        assert!(certificates(b"", "empty").unwrap().is_empty());
        let none = certificates_required(b"", "the CA bundle 'x'").unwrap_err();
        assert!(none.message().contains("the CA bundle 'x' contains no PEM certificate"), "{}", none.message());
        let broken = "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n";
        let e = certificates(broken.as_bytes(), "the bundle").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::CertificateFile);
        assert!(e.message().starts_with("the bundle is not valid PEM"), "{}", e.message());
        assert!(private_key(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n", "k.pem").unwrap_err().message().contains("encrypted"));
        assert!(private_key(ca.cert_pem().as_bytes(), "k.pem").unwrap_err().message().contains("holds no PEM private key"));
    }
}
