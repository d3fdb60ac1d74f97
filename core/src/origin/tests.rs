use super::*;
use toolmesh_ca::{CertificateAuthority, KeyType, LeafRequest, Role, DEFAULT_TRUST_DOMAIN};

struct Mesh {
    ca: CertificateAuthority,
}

impl Mesh {
    fn new() -> Mesh {
        Mesh { ca: CertificateAuthority::generate("origin test CA", 1).unwrap() }
    }

    fn agent(&self, name: &str) -> Origins {
        self.agent_with(name, KeyType::EcdsaP256)
    }

    fn agent_with(&self, name: &str, key_type: KeyType) -> Origins {
        let mut request = LeafRequest::new(name, Role::Agent, DEFAULT_TRUST_DOMAIN, 1);
        request.key_type = key_type;
        let issued = self.ca.issue(&request).unwrap();
        Origins::new(Identity::from_pem(&issued.cert_pem, &issued.key_pem, self.ca.cert_pem()).unwrap())
    }
}

/// The certificate chain an agent presents in its TLS handshakes.
fn chain(origins: &Origins) -> Vec<CertificateDer<'static>> {
    origins.identity.certified_key().cert.clone()
}

fn id(name: &str) -> String {
    format!("spiffe://{DEFAULT_TRUST_DOMAIN}/agent/{name}")
}

/// The header value of an outbound call, as text.
fn outbound(origins: &Origins, inbound: Option<&VerifiedOrigin>, caller: Option<&str>) -> Result<String> {
    origins.outbound(inbound, caller).map(|header| header.to_str().expect("origin headers are ASCII").to_owned())
}

fn links_of(header: &str) -> Vec<Link> {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap()
}

#[test]
fn a_chain_names_its_signed_origin_through_every_hop() {
    let mesh = Mesh::new();
    let (x, a, b) = (mesh.agent("x"), mesh.agent("a"), mesh.agent("b"));
    let to_a = outbound(&x, None, None).unwrap();
    let at_a = a.verify(&to_a, &id("x"), &chain(&x)).unwrap();
    assert_eq!((at_a.identity.as_str(), at_a.signed), (id("x").as_str(), true));
    let to_b = outbound(&a, Some(&at_a), Some(&id("x"))).unwrap();
    let at_b = b.verify(&to_b, &id("a"), &chain(&a)).unwrap();
    assert_eq!((at_b.identity.as_str(), at_b.signed), (id("x").as_str(), true));
    assert!(at_b.reaches("anything"));
    // The origin's own link is signed once and reused; so is the hop's.
    assert_eq!(outbound(&x, None, None).unwrap(), to_a);
    assert_eq!(outbound(&a, Some(&at_a), None).unwrap(), to_b);
}

#[test]
fn a_header_that_ends_like_a_verified_one_is_verified_itself() {
    let mesh = Mesh::new();
    let (x, b) = (mesh.agent("x"), mesh.agent("b"));
    let header = outbound(&x, None, None).unwrap();
    b.verify(&header, &id("x"), &chain(&x)).unwrap();
    // The same length and the same end (the signature), a different first link.
    let mut tampered = header.into_bytes();
    tampered[20] = if tampered[20] == b'A' { b'B' } else { b'A' };
    let e = b.verify(std::str::from_utf8(&tampered).unwrap(), &id("x"), &chain(&x)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OriginRejected);
}

#[test]
fn the_last_signer_must_be_the_caller() {
    let mesh = Mesh::new();
    let (x, a, b) = (mesh.agent("x"), mesh.agent("a"), mesh.agent("b"));
    // A replays X's chain as if it came from X directly.
    let from_x = outbound(&x, None, None).unwrap();
    let e = b.verify(&from_x, &id("a"), &chain(&a)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OriginRejected);
    assert!(
        e.message().contains("last signed by spiffe://toolmesh.local/agent/x, but the caller is spiffe://toolmesh.local/agent/a"),
        "{}",
        e.message()
    );
    drop(a);
}

#[test]
fn a_forged_origin_is_refused() {
    let mesh = Mesh::new();
    let (a, b) = (mesh.agent("a"), mesh.agent("b"));
    // A signs a first link claiming to be `admin`, with its own certificate.
    let forged = a.sign(id("admin"), id("admin"), unix_now() + 30, vec!["*".into()], "").unwrap();
    let e = b.verify(&encode(&[forged]), &id("admin"), &chain(&a)).unwrap_err();
    assert!(e.message().contains("its certificate names spiffe://toolmesh.local/agent/a, not the signer"), "{}", e.message());
    // Or vouches for `admin` (no admin signature): accepted, but only as vouched.
    let vouched = outbound(&a, None, Some(&id("admin"))).unwrap();
    let at_b = b.verify(&vouched, &id("a"), &chain(&a)).unwrap();
    assert_eq!((at_b.identity.as_str(), at_b.signed), (id("admin").as_str(), false));
    // A certificate from another CA does not verify, whatever it names: carried in the newest
    // link (as older agents send it), or in an earlier one.
    let stranger = Mesh::new().agent("x");
    let from_stranger = stranger.sign(id("x"), id("x"), unix_now() + 30, vec!["*".into()], "").unwrap();
    let e = b.verify(&encode_carrying_every_certificate(std::slice::from_ref(&from_stranger)), &id("x"), &chain(&a)).unwrap_err();
    assert!(e.message().contains("not trusted"), "{}", e.message());
    let on_behalf = a.sign(id("a"), id("x"), unix_now() + 20, vec!["*".into()], &from_stranger.sig).unwrap();
    let e = b.verify(&encode(&[from_stranger, on_behalf]), &id("a"), &chain(&a)).unwrap_err();
    assert!(e.message().contains("link 0") && e.message().contains("not trusted"), "{}", e.message());
}

/// A chain as agents before the compact form sent it: every link with its certificates.
fn encode_carrying_every_certificate(links: &[Link]) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(links).unwrap())
}

#[test]
fn the_newest_link_leaves_out_the_certificate_the_handshake_carries() {
    let mesh = Mesh::new();
    let (x, a, b) = (mesh.agent("x"), mesh.agent("a"), mesh.agent("b"));
    let to_a = outbound(&x, None, None).unwrap();
    assert!(links_of(&to_a)[0].x5c.is_empty());
    let at_a = a.verify(&to_a, &id("x"), &chain(&x)).unwrap();
    // A puts X's certificate back into X's link for B, which has not seen it, and leaves out its own.
    let to_b = outbound(&a, Some(&at_a), None).unwrap();
    let links = links_of(&to_b);
    assert_eq!(links[0].x5c, chain(&x).iter().map(|c| STANDARD.encode(c.as_ref())).collect::<Vec<_>>());
    assert!(links[1].x5c.is_empty());
    b.verify(&to_b, &id("a"), &chain(&a)).unwrap();
    // Less than half the size of the same chain with every certificate.
    let full = encode_carrying_every_certificate(&at_a.links);
    assert!(to_a.len() * 2 < full.len(), "{} against {}", to_a.len(), full.len());
    // Older agents' chains, each link with its certificates, are still accepted.
    b.verify(&full, &id("x"), &chain(&x)).unwrap();
}

#[test]
fn a_chain_without_its_certificate_holds_only_for_the_key_that_signed_it() {
    let mesh = Mesh::new();
    let (x, b) = (mesh.agent("x"), mesh.agent("b"));
    // Another certificate under the same name (a replica with its own key, or a stolen header).
    let other_x = mesh.agent("x");
    let header = outbound(&x, None, None).unwrap();
    for _ in 0..2 {
        // Verified and cached for X's certificate; refused for the other one, cached or not.
        b.verify(&header, &id("x"), &chain(&x)).unwrap();
        let e = b.verify(&header, &id("x"), &chain(&other_x)).unwrap_err();
        assert!(e.message().contains("the signature does not verify"), "{}", e.message());
    }
    // An earlier link must carry its certificates: only the newest signer is the peer.
    let a = mesh.agent("a");
    let at_a = a.verify(&header, &id("x"), &chain(&x)).unwrap();
    let mut links = links_of(&outbound(&a, Some(&at_a), None).unwrap());
    links[0].x5c.clear();
    let e = b.verify(&encode(&links), &id("a"), &chain(&a)).unwrap_err();
    assert!(e.message().contains("link 0") && e.message().contains("carries no certificate"), "{}", e.message());
}

#[test]
fn a_tampered_link_fails_its_signature() {
    let mesh = Mesh::new();
    let (x, b) = (mesh.agent("x"), mesh.agent("b"));
    let mut links = links_of(&outbound(&x, None, None).unwrap());
    links[0].exp += 1;
    let e = b.verify(&encode(&links), &id("x"), &chain(&x)).unwrap_err();
    assert!(e.message().contains("the signature does not verify"), "{}", e.message());
}

#[test]
fn a_hop_may_narrow_but_never_widen() {
    let mesh = Mesh::new();
    let (x, a, b) = (mesh.agent("x"), mesh.agent("a"), mesh.agent("b"));
    let narrow = x.sign(id("x"), id("x"), unix_now() + 30, vec!["math.*".into()], "").unwrap();
    let at_a = a.verify(&encode(std::slice::from_ref(&narrow)), &id("x"), &chain(&x)).unwrap();
    assert!(at_a.reaches("math.add") && !at_a.reaches("stats.mean"));
    // A widens the scope: refused.
    let wider = a.sign(id("a"), id("x"), unix_now() + 30, vec!["*".into()], &narrow.sig).unwrap();
    let e = b.verify(&encode(&[narrow.clone(), wider]), &id("a"), &chain(&a)).unwrap_err();
    assert!(e.message().contains("widens the scope with '*' beyond [math.*]"), "{}", e.message());
    // A extends the expiry: refused.
    let longer = a.sign(id("a"), id("x"), unix_now() + 50, vec!["math.*".into()], &narrow.sig).unwrap();
    let e = b.verify(&encode(&[narrow.clone(), longer]), &id("a"), &chain(&a)).unwrap_err();
    assert!(e.message().contains("outlives the link before it"), "{}", e.message());
    // Narrowing further is fine.
    let narrower = a.sign(id("a"), id("x"), unix_now() + 20, vec!["math.add".into()], &narrow.sig).unwrap();
    let at_b = b.verify(&encode(&[narrow, narrower]), &id("a"), &chain(&a)).unwrap();
    assert!(at_b.reaches("math.add") && !at_b.reaches("math.sub"));
}

#[test]
fn expired_and_spliced_chains_are_refused() {
    let mesh = Mesh::new();
    let (x, y, a, b) = (mesh.agent("x"), mesh.agent("y"), mesh.agent("a"), mesh.agent("b"));
    let old = x.sign(id("x"), id("x"), unix_now() - 1, vec!["*".into()], "").unwrap();
    assert!(b.verify(&encode(&[old]), &id("x"), &chain(&x)).unwrap_err().message().contains("expired"));
    // A link made to extend Y's chain does not extend X's.
    let from_x = x.sign(id("x"), id("x"), unix_now() + 30, vec!["*".into()], "").unwrap();
    let from_y = y.sign(id("y"), id("y"), unix_now() + 30, vec!["*".into()], "").unwrap();
    let for_y = a.sign(id("a"), id("x"), unix_now() + 30, vec!["*".into()], &from_y.sig).unwrap();
    let e = b.verify(&encode(&[from_x, for_y]), &id("a"), &chain(&a)).unwrap_err();
    assert!(e.message().contains("the signature does not verify"), "{}", e.message());
    for garbage in ["", "not base64!", &URL_SAFE_NO_PAD.encode("[]"), &URL_SAFE_NO_PAD.encode("{}")] {
        assert_eq!(b.verify(garbage, &id("x"), &chain(&x)).unwrap_err().kind(), ErrorKind::OriginRejected);
    }
}

#[test]
fn every_key_type_signs_links() {
    let mesh = Mesh::new();
    let b = mesh.agent("b");
    for key_type in [KeyType::EcdsaP256, KeyType::Rsa2048] {
        let x = mesh.agent_with("x", key_type);
        assert!(b.verify(&outbound(&x, None, None).unwrap(), &id("x"), &chain(&x)).is_ok(), "{key_type:?}");
    }
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Whatever arrives in the header, the answer is ORIGIN_REJECTED, never a panic.
        #[test]
        fn any_header_is_refused_cleanly(raw in proptest::collection::vec(any::<u8>(), 0..600), as_json in any::<bool>(), exp in any::<u64>(), alg in any::<u16>(), with_x5c in any::<bool>()) {
            let b = fuzz_agent();
            let header = if as_json {
                let mut link = serde_json::json!({"iss": "spiffe://toolmesh.local/agent/x", "org": "spiffe://toolmesh.local/agent/x", "exp": exp,
                    "scope": ["*"], "alg": alg, "sig": STANDARD.encode(&raw)});
                if with_x5c {
                    link["x5c"] = serde_json::json!([STANDARD.encode(&raw)]);
                }
                let link = serde_json::json!([link]);
                URL_SAFE_NO_PAD.encode(link.to_string())
            } else {
                String::from_utf8_lossy(&raw).into_owned()
            };
            let e = b.verify(&header, &id("x"), &[]).unwrap_err();
            prop_assert_eq!(e.kind(), ErrorKind::OriginRejected);
        }
    }

    fn fuzz_agent() -> &'static Origins {
        static AGENT: std::sync::OnceLock<Origins> = std::sync::OnceLock::new();
        AGENT.get_or_init(|| Mesh::new().agent("b"))
    }
}
