/// A new private key (ECDSA P-256) and a certificate signing request for it, PEM; the CA fills
/// in subject and SANs, so the request carries only the name.
pub fn certificate_request(common_name: &str) -> Result<(KeyPair, String)> {
    let key = KeyType::EcdsaP256.generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(rcgen_error)?;
    params.distinguished_name = distinguished_name(common_name);
    let csr = params.serialize_request(&key).map_err(rcgen_error)?.pem().map_err(rcgen_error)?;
    Ok((key, csr))
}

/// SHA-256 of a DER certificate, lowercase hex.
pub fn fingerprint(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, der).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn distinguished_name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "toolmesh");
    dn
}
