//! One loaded, checked generation of an identity: what [`super::Identity`] swaps whole.

use super::anchors::{anchor_sets, verify_client_chain, AnchorSet, Distributed, Scope};
use super::load::{check_chain, parse_certified_key, parse_roots, read, warn_if_key_exposed, FileStamp, TlsFiles};
use super::names::peer_identity;
use crate::error::Result;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;
use std::sync::Arc;

/// One loaded, checked generation of the identity.
pub(super) struct State {
    pub(super) certified: Arc<CertifiedKey>,
    /// The configured CA bundle (file or PEM), without the distributed one.
    pub(super) configured_roots: Vec<CertificateDer<'static>>,
    /// Every anchor, configured and distributed, in one store.
    pub(super) roots: Arc<RootCertStore>,
    /// The same anchors by what they may vouch for: the configured bundle and the mesh CA first
    /// (every identity), then one set per entity (its trust domains only).
    pub(super) anchors: Vec<AnchorSet>,
    pub(super) stamp: Option<FileStamp>,
}

impl State {
    pub(super) fn from_files(files: &TlsFiles, distributed: &[Distributed]) -> Result<State> {
        let stamp = FileStamp::of(files);
        let cert = read(&files.cert, "certificate", "TOOLMESH_TLS_CERT")?;
        let key = read(&files.key, "private key", "TOOLMESH_TLS_KEY")?;
        warn_if_key_exposed(&files.key);
        let ca = read(&files.ca, "CA bundle", "TOOLMESH_TLS_CA")?;
        let names = (files.cert.display().to_string(), files.key.display().to_string(), files.ca.display().to_string());
        Self::from_pem(&cert, &key, &ca, (&names.0, &names.1, &names.2), Some(stamp), distributed)
    }

    pub(super) fn from_pem(
        cert_pem: &[u8],
        key_pem: &[u8],
        ca_pem: &[u8],
        names: (&str, &str, &str),
        stamp: Option<FileStamp>,
        distributed: &[Distributed],
    ) -> Result<State> {
        let (cert_name, key_name, ca_name) = names;
        let configured_roots = parse_roots(ca_pem, ca_name)?;
        let certified = parse_certified_key(cert_pem, key_pem, cert_name, key_name)?;
        let state = Self::with_anchors(Arc::new(certified), configured_roots, distributed, stamp)?;
        check_chain(&state.certified, &state.roots, cert_name, ca_name)?;
        Ok(state)
    }

    pub(super) fn with_anchors(
        certified: Arc<CertifiedKey>,
        configured_roots: Vec<CertificateDer<'static>>,
        distributed: &[Distributed],
        stamp: Option<FileStamp>,
    ) -> Result<State> {
        let (roots, anchors) = anchor_sets(&configured_roots, distributed)?;
        let roots = Arc::new(roots);
        Ok(State { certified, configured_roots, roots, anchors, stamp })
    }

    /// Verifies a client chain; answers the scope of the anchor it led to.
    pub(super) fn verify_client(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> std::result::Result<&Scope, rustls::Error> {
        verify_client_chain(&self.anchors, end_entity, intermediates, now)
    }

    pub(super) fn name(&self) -> String {
        self.certified.end_entity_cert().map(|c| peer_identity(c)).unwrap_or_default()
    }
}
