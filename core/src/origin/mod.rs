//! The verifiable origin of a chain of calls: when X calls A and A, handling it, calls B, B
//! learns X from a chain of links each hop signed with its own mesh key, not from a forwarded
//! credential.
//!
//! - The first link is signed by the origin itself (`iss == org`): "I, X, start a chain that may
//!   reach these tools until then". A toolmesh agent sends one with every call it originates
//!   (signed once, reused while it has more than [`REUSE_MARGIN`] left).
//! - Each hop that calls on while handling a call appends a link: "I received this chain from
//!   the previous signer", with a scope and expiry no wider than the previous link's.
//! - A caller that sent no chain (a plain MCP client with a mesh certificate) is still the origin
//!   of what its callee does for it: the callee starts the chain naming it, *vouched* (signed by
//!   the callee, not by the origin). A vouched origin is matched by deny rules and defaults, but
//!   never by a rule that allows on `origin`: only the origin's own signature grants through it.
//!
//! The callee checks every signature and certificate against the mesh trust bundle, that the
//! last signer is the peer of the mTLS connection, and that the tool called is within scope.
//!
//! Each link carries its signer's certificate chain (`x5c`) except the newest: its signer is the
//! peer, whose chain the callee holds from the TLS handshake, so sending it again would double
//! the size of every request. The callee puts that chain back into the link before it extends
//! the chain further. A newest link that does carry `x5c` (older agents send one) is accepted.

use crate::error::{Error, ErrorKind, Result};
use crate::policy::Pattern;
use crate::tls::{peer_identity, Identity};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use http::HeaderValue;
use rustls::pki_types::CertificateDer;
use rustls::SignatureScheme;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The HTTP header carrying the chain.
pub const HEADER: &str = "toolmesh-origin";
pub const HEADER_NAME: http::HeaderName = http::HeaderName::from_static(HEADER);
/// How long a link is valid: short, so a chain outlives the call that started it only briefly.
pub const LINK_TTL: Duration = Duration::from_secs(60);
/// A cached link is re-signed once it has less than this left.
const REUSE_MARGIN: Duration = Duration::from_secs(20);
/// Longest chain accepted (hops), and largest header.
const MAX_LINKS: usize = 8;
const MAX_HEADER_BYTES: usize = 32 * 1024;
/// Verified chains and signed links kept for reuse, per agent.
const CACHE_ENTRIES: usize = 4096;
const SIGNED_CONTEXT: &str = "toolmesh-origin/v1";

/// The schemes links are signed with, in our order of preference.
const SCHEMES: &[SignatureScheme] = &[
    SignatureScheme::ED25519,
    SignatureScheme::ECDSA_NISTP256_SHA256,
    SignatureScheme::ECDSA_NISTP384_SHA384,
    SignatureScheme::RSA_PSS_SHA256,
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Link {
    /// The signer's identity (its certificate's SPIFFE ID).
    pub iss: String,
    /// The origin's identity, the same in every link.
    pub org: String,
    /// Unix seconds after which the link is void.
    pub exp: u64,
    /// Tool-name patterns (`*`, `math.*`, `add`) the chain may still reach.
    pub scope: Vec<String>,
    /// The signer's certificate chain, base64 DER, leaf first; left out of the newest link on the
    /// wire (see the module documentation).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub x5c: Vec<String>,
    /// The TLS signature scheme (IANA number).
    pub alg: u16,
    /// The signature, base64, over [`SIGNED_CONTEXT`], the fields above but `x5c`, and the
    /// previous link's signature.
    pub sig: String,
}

impl Link {
    fn signed_bytes(&self, previous_sig: &str) -> Vec<u8> {
        serde_json::to_vec(&(SIGNED_CONTEXT, &self.iss, &self.org, self.exp, &self.scope, self.alg, previous_sig))
            .expect("strings and numbers always serialize")
    }
}

/// A chain the callee verified: who started it, whether the origin signed it, what it reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedOrigin {
    pub identity: String,
    /// Signed by the origin itself (see the module documentation); false when vouched.
    pub signed: bool,
    /// Unix seconds at which the chain expires.
    pub expires: u64,
    links: Vec<Link>,
    scope: Vec<Pattern>,
}

impl VerifiedOrigin {
    /// Whether the chain reaches `tool`.
    pub fn reaches(&self, tool: &str) -> bool {
        self.scope.iter().any(|p| p.matches(tool))
    }

    pub fn scope(&self) -> impl Iterator<Item = &str> {
        self.scope.iter().map(Pattern::as_str)
    }
}

fn rejected(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::OriginRejected, message)
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Verified chains by [`HeaderKey`].
type VerifiedCache = HashMap<HeaderKey, Verified>;

struct Verified {
    header: Box<str>,
    /// The trust generation it was verified under.
    trust_generation: u64,
    /// The certificate the newest link was verified with when the header did not carry it (the
    /// peer's, from the handshake): the same header from a peer with another certificate, even
    /// under the same name, is verified again (its signature does not hold for that key).
    peer_leaf: Option<CertificateDer<'static>>,
    chain: Arc<VerifiedOrigin>,
}

/// How many bytes of a header's end [`HeaderKey`] takes.
const KEY_TAIL: usize = 48;

/// What the verified chains are looked up by: a header's length and last bytes, which encode
/// the newest link's signature, so no two verified chains share them. Hashing a kilobyte of
/// header (the links carry certificates) on every call cost more than the rest of the lookup;
/// a hit is still compared with the whole header.
#[derive(PartialEq, Eq, Hash)]
struct HeaderKey {
    len: usize,
    tail: [u8; KEY_TAIL],
}

impl HeaderKey {
    fn of(header: &str) -> Self {
        let bytes = header.as_bytes();
        let tail = &bytes[bytes.len().saturating_sub(KEY_TAIL)..];
        let mut key = HeaderKey { len: bytes.len(), tail: [0; KEY_TAIL] };
        key.tail[..tail.len()].copy_from_slice(tail);
        key
    }
}

/// An outbound header, encoded once and reused until its newest link nears its expiry.
struct Signed {
    generation: u64,
    /// The expiry of the link we signed.
    exp: u64,
    header: HeaderValue,
}

/// Signs and verifies chains with one agent's identity; caches both ways.
pub struct Origins {
    identity: Arc<Identity>,
    /// The header of our own chain, by the certificate generation it was signed with.
    own: Mutex<Option<Signed>>,
    /// The headers of chains we extended, by the signature of the link we appended to.
    extended: Mutex<HashMap<String, Signed>>,
    /// Chains verified, with the trust generation they were verified under (looked up by the
    /// header alone, so that a hit allocates nothing).
    verified: Mutex<VerifiedCache>,
}

impl Origins {
    pub fn new(identity: Arc<Identity>) -> Self {
        Origins { identity, own: Mutex::new(None), extended: Mutex::default(), verified: Mutex::default() }
    }

    /// The header value for an outbound call: `inbound` extended by a link of ours, a chain
    /// started for `caller` (vouched) when the inbound call came without one, or a chain of our
    /// own when we are the origin. A cached one is shared, not copied (it carries certificates:
    /// a kilobyte or more).
    pub fn outbound(&self, inbound: Option<&VerifiedOrigin>, caller: Option<&str>) -> Result<HeaderValue> {
        let now = unix_now();
        match (inbound, caller) {
            (Some(chain), _) => self.extend(&chain.links, now),
            (None, Some(caller)) if caller != self.identity.name() => {
                // Not cached: the chains of plain MCP clients are rare, and each names its caller.
                let me = self.identity.name().to_owned();
                Ok(header_value(encode(&[self.sign(me, caller.to_owned(), now + LINK_TTL.as_secs(), vec!["*".to_owned()], "")?])))
            }
            _ => self.own_chain(now),
        }
    }

    fn own_chain(&self, now: u64) -> Result<HeaderValue> {
        let generation = self.identity.certificate_generation();
        let mut own = self.own.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(signed) = own.as_ref().filter(|s| s.generation == generation && s.exp > now + REUSE_MARGIN.as_secs()) {
            return Ok(signed.header.clone());
        }
        let me = self.identity.name().to_owned();
        let link = self.sign(me.clone(), me, now + LINK_TTL.as_secs(), vec!["*".to_owned()], "")?;
        let signed = Signed { generation, exp: link.exp, header: header_value(encode(&[link])) };
        let header = signed.header.clone();
        *own = Some(signed);
        Ok(header)
    }

    fn extend(&self, links: &[Link], now: u64) -> Result<HeaderValue> {
        let last = links.last().ok_or_else(|| rejected("an origin chain without links"))?;
        let generation = self.identity.certificate_generation();
        let mut extended = self.extended.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(signed) = extended.get(&last.sig) {
            // A link capped by the one it extends cannot be renewed for longer: reuse it to the end.
            if signed.generation == generation && signed.exp > now && (signed.exp >= last.exp || signed.exp > now + REUSE_MARGIN.as_secs())
            {
                return Ok(signed.header.clone());
            }
        }
        let exp = last.exp.min(now + LINK_TTL.as_secs());
        let link = self.sign(self.identity.name().to_owned(), last.org.clone(), exp, last.scope.clone(), &last.sig)?;
        let mut chain = links.to_vec();
        chain.push(link);
        let header = header_value(encode(&chain));
        if extended.len() >= CACHE_ENTRIES {
            extended.clear();
        }
        extended.insert(last.sig.clone(), Signed { generation, exp, header: header.clone() });
        Ok(header)
    }

    /// Signs one link with our current key.
    pub fn sign(&self, iss: String, org: String, exp: u64, scope: Vec<String>, previous_sig: &str) -> Result<Link> {
        let certified = self.identity.certified_key();
        let signer = certified.key.choose_scheme(SCHEMES).ok_or_else(|| {
            Error::new(ErrorKind::InvalidConfig, "our key type cannot sign origin links; use an ECDSA, Ed25519 or RSA key")
        })?;
        let mut link = Link {
            iss,
            org,
            exp,
            scope,
            x5c: certified.cert.iter().map(|c| STANDARD.encode(c.as_ref())).collect(),
            alg: u16::from(signer.scheme()),
            sig: String::new(),
        };
        let signature = signer
            .sign(&link.signed_bytes(previous_sig))
            .map_err(|e| Error::new(ErrorKind::Internal, format!("signing an origin link: {e}")))?;
        link.sig = STANDARD.encode(signature);
        Ok(link)
    }

    /// Verifies an inbound chain sent by `peer`: the identity and the certificate chain (leaf
    /// first) of the mTLS connection, which the handshake verified.
    pub fn verify(&self, header: &str, peer: &str, peer_chain: &[CertificateDer<'static>]) -> Result<Arc<VerifiedOrigin>> {
        let generation = self.identity.trust_generation();
        let key = HeaderKey::of(header);
        if let Some(hit) = self.verified.lock().unwrap_or_else(|e| e.into_inner()).get(&key).filter(|v| *v.header == *header) {
            if hit.trust_generation == generation
                && hit.chain.expires > unix_now()
                && hit.chain.links.last().is_some_and(|l| l.iss == peer)
                && hit.peer_leaf.as_ref().is_none_or(|leaf| peer_chain.first() == Some(leaf))
            {
                return Ok(hit.chain.clone());
            }
        }
        let (chain, used_peer_chain) = self.verify_uncached(header, peer, peer_chain)?;
        let chain = Arc::new(chain);
        let mut cache = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_ENTRIES {
            cache.clear();
        }
        let peer_leaf = used_peer_chain.then(|| peer_chain.first().cloned()).flatten();
        cache.insert(key, Verified { header: Box::from(header), trust_generation: generation, peer_leaf, chain: chain.clone() });
        Ok(chain)
    }

    /// The verified chain, and whether its newest link was verified with the peer's certificate
    /// chain because the header left it out.
    fn verify_uncached(&self, header: &str, peer: &str, peer_chain: &[CertificateDer<'static>]) -> Result<(VerifiedOrigin, bool)> {
        if header.len() > MAX_HEADER_BYTES {
            return Err(rejected(format!("the origin chain is {} bytes, more than the {MAX_HEADER_BYTES} accepted", header.len())));
        }
        let mut links: Vec<Link> = URL_SAFE_NO_PAD
            .decode(header)
            .ok()
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or_else(|| rejected(format!("the {HEADER} header is not a toolmesh origin chain (base64url JSON links)")))?;
        if links.is_empty() || links.len() > MAX_LINKS {
            return Err(rejected(format!("an origin chain has 1 to {MAX_LINKS} links; this one has {}", links.len())));
        }
        let last_signer = &links[links.len() - 1].iss;
        if *last_signer != peer {
            return Err(rejected(format!("the origin chain was last signed by {last_signer}, but the caller is {peer}")));
        }
        let now = unix_now();
        let first = &links[0];
        let mut previous: Option<&Link> = None;
        let mut scope: Vec<Pattern> = Vec::new();
        for (i, link) in links.iter().enumerate() {
            let at = |what: String| rejected(format!("origin chain link {i} (signed by {}): {what}", link.iss));
            if link.org != first.org {
                return Err(at(format!("names origin {} where the chain started with {}", link.org, first.org)));
            }
            if link.exp <= now {
                return Err(at(format!("expired {} s ago", now - link.exp)));
            }
            let link_scope: Vec<Pattern> = link.scope.iter().map(|p| Pattern::new(p)).collect();
            if let Some(prev) = previous {
                if link.exp > prev.exp {
                    return Err(at("outlives the link before it; a hop may only narrow a chain".to_owned()));
                }
                if let Some(wider) = link_scope.iter().find(|p| !scope.iter().any(|q| p.within(q))) {
                    return Err(at(format!(
                        "widens the scope with '{}' beyond [{}]; a hop may only narrow a chain",
                        wider.as_str(),
                        prev.scope.join(", ")
                    )));
                }
            }
            let is_newest = i == links.len() - 1;
            self.check_signature(link, previous.map_or("", |p| p.sig.as_str()), is_newest.then_some(peer_chain)).map_err(at)?;
            scope = link_scope;
            previous = Some(link);
        }
        let last = links.last_mut().expect("checked non-empty");
        // Put the peer's chain back, for the next hop, which does not hold it.
        let used_peer_chain = last.x5c.is_empty();
        if used_peer_chain {
            last.x5c = peer_chain.iter().map(|c| STANDARD.encode(c.as_ref())).collect();
        }
        let expires = last.exp;
        let (identity, signed) = (links[0].org.clone(), links[0].iss == links[0].org);
        Ok((VerifiedOrigin { identity, signed, expires, scope, links }, used_peer_chain))
    }

    /// The link's certificate chain is trusted now and names its signer, and the signature holds.
    /// `peer_chain` is given for the newest link only: the chain the peer presented, verified by
    /// the handshake, which that link may leave out.
    fn check_signature(
        &self,
        link: &Link,
        previous_sig: &str,
        peer_chain: Option<&[CertificateDer<'static>]>,
    ) -> std::result::Result<(), String> {
        let carried: Vec<CertificateDer<'static>>;
        let chain = match (link.x5c.is_empty(), peer_chain) {
            (true, Some(peer_chain)) => peer_chain,
            (true, None) => return Err("it carries no certificate (only the newest link may leave it out)".to_owned()),
            (false, _) => {
                carried = link
                    .x5c
                    .iter()
                    .map(|c| STANDARD.decode(c).map(CertificateDer::from))
                    .collect::<std::result::Result<_, _>>()
                    .map_err(|_| "its certificate chain is not base64".to_owned())?;
                &carried
            }
        };
        let leaf = chain.first().ok_or("it carries no certificate, and the caller presented none")?;
        let handshake_verified = peer_chain.and_then(<[_]>::first).is_some_and(|peer_leaf| peer_leaf == leaf);
        if !handshake_verified {
            self.identity.verify_peer(chain).map_err(|e| format!("its certificate is not trusted: {e}"))?;
        }
        if peer_identity(leaf) != link.iss {
            return Err(format!("its certificate names {}, not the signer", peer_identity(leaf)));
        }
        let signature = STANDARD.decode(&link.sig).map_err(|_| "its signature is not base64".to_owned())?;
        verify_signature(leaf, SignatureScheme::from(link.alg), &link.signed_bytes(previous_sig), &signature)
    }
}

/// The header of a chain, the newest link without its certificate chain (the module
/// documentation says why).
fn encode(links: &[Link]) -> String {
    let Some((newest, earlier)) = links.split_last() else { return String::new() };
    let newest = Link { x5c: Vec::new(), ..newest.clone() };
    let wire: Vec<&Link> = earlier.iter().chain(std::iter::once(&newest)).collect();
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&wire).expect("links always serialize"))
}

/// An encoded chain as a header value, checked once here rather than on every call that sends it.
fn header_value(encoded: String) -> HeaderValue {
    HeaderValue::from_maybe_shared(bytes::Bytes::from(encoded)).expect("base64url is a valid header value")
}

fn verify_signature(
    cert: &CertificateDer<'_>,
    scheme: SignatureScheme,
    message: &[u8],
    signature: &[u8],
) -> std::result::Result<(), String> {
    use ring::signature as sig;
    let algorithm: &dyn sig::VerificationAlgorithm = match scheme {
        SignatureScheme::ED25519 => &sig::ED25519,
        SignatureScheme::ECDSA_NISTP256_SHA256 => &sig::ECDSA_P256_SHA256_ASN1,
        SignatureScheme::ECDSA_NISTP384_SHA384 => &sig::ECDSA_P384_SHA384_ASN1,
        SignatureScheme::RSA_PSS_SHA256 => &sig::RSA_PSS_2048_8192_SHA256,
        other => return Err(format!("signature scheme {other:?} is not accepted")),
    };
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|_| "its certificate does not parse".to_owned())?;
    let key = parsed.public_key().subject_public_key.data.as_ref();
    sig::UnparsedPublicKey::new(algorithm, key).verify(message, signature).map_err(|_| "the signature does not verify".to_owned())
}

#[cfg(test)]
mod tests;
