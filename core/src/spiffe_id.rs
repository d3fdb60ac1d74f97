//! SPIFFE IDs (`spiffe://trust-domain/path`), the one parser of the mesh: every place that asks
//! what trust domain, role or agent name an identity carries asks a [`SpiffeId`], so the answers
//! cannot drift apart.
//!
//! The rules are those of the SPIFFE-ID specification (section 2): the scheme `spiffe://` in
//! lower case; a trust domain of 1-255 lower-case letters, digits, `.`, `-` and `_`; an optional
//! path of non-empty segments of letters, digits, `.`, `-` and `_` (not `.` or `..`, no trailing
//! `/`, no percent-encoding); no port, user info, query or fragment; at most 2048 bytes.
//! A `spiffe://` URI that breaks them names no SPIFFE ID: no trust domain vouches for it and it
//! carries no role or agent name.

use std::fmt;

/// The scheme every SPIFFE ID starts with.
pub const SCHEME: &str = "spiffe://";

/// The longest SPIFFE ID, in bytes (SPIFFE-ID 2.3).
pub const MAX_LEN: usize = 2048;

/// The longest trust domain, in bytes (SPIFFE-ID 2.1).
pub const MAX_TRUST_DOMAIN_LEN: usize = 255;

/// A valid SPIFFE ID, borrowed from the text it was parsed from (identities are read on every
/// policy decision, so reading one does not allocate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpiffeId<'a> {
    text: &'a str,
    /// Where the trust domain ends in `text` (the path, if any, starts there with '/').
    domain_end: usize,
}

/// Why a text is not a SPIFFE ID; its message names the rule broken and how to write one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidSpiffeId {
    pub id: String,
    pub why: &'static str,
}

impl fmt::Display for InvalidSpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "'{}' is not a SPIFFE ID: {}; write spiffe://TRUST-DOMAIN or spiffe://TRUST-DOMAIN/PATH", self.id, self.why)
    }
}

impl std::error::Error for InvalidSpiffeId {}

/// Whether `domain` is a SPIFFE trust domain: 1-255 lower-case letters, digits, '.', '-' and '_'
/// (SPIFFE-ID 2.1).
pub fn is_valid_trust_domain(domain: &str) -> bool {
    (1..=MAX_TRUST_DOMAIN_LEN).contains(&domain.len())
        && domain.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'-' | b'.' | b'_'))
}

fn is_valid_segment(segment: &[u8]) -> bool {
    !segment.is_empty()
        && segment != b"."
        && segment != b".."
        && segment.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_'))
}

impl<'a> SpiffeId<'a> {
    /// Parses `text` as a SPIFFE ID, exactly as written (nothing is trimmed or lowered).
    pub fn parse(text: &'a str) -> Result<SpiffeId<'a>, InvalidSpiffeId> {
        let invalid = |why: &'static str| Err(InvalidSpiffeId { id: text.to_owned(), why });
        if text.len() > MAX_LEN {
            return invalid("it is longer than 2048 bytes");
        }
        let Some(rest) = text.strip_prefix(SCHEME) else {
            return invalid("it does not start with spiffe:// (in lower case)");
        };
        // Byte searches: every caller's identity is parsed on each call it makes.
        let (domain, path) = rest.bytes().position(|b| b == b'/').map_or((rest, ""), |at| rest.split_at(at));
        if text.bytes().any(|b| b == b'?' || b == b'#') {
            return invalid("a SPIFFE ID has no query or fragment");
        }
        if text.as_bytes().contains(&b'%') {
            return invalid("a SPIFFE ID has no percent-encoding");
        }
        if domain.is_empty() {
            return invalid("the trust domain is empty");
        }
        if !is_valid_trust_domain(domain) {
            return invalid(
                "the trust domain may hold only lower-case letters, digits, '.', '-' and '_' (no port or user info), at most 255 of them",
            );
        }
        if path == "/" || path.ends_with('/') {
            return invalid("it ends with '/'");
        }
        if !path.is_empty() && !path.as_bytes()[1..].split(|b| *b == b'/').all(is_valid_segment) {
            return invalid("each path segment must be non-empty, not '.' or '..', of letters, digits, '.', '-' and '_'");
        }
        Ok(SpiffeId { text, domain_end: SCHEME.len() + domain.len() })
    }

    pub fn as_str(&self) -> &'a str {
        self.text
    }

    /// `spiffe://td/agent/calc` → `td`.
    pub fn trust_domain(&self) -> &'a str {
        &self.text[SCHEME.len()..self.domain_end]
    }

    /// `spiffe://td/agent/calc` → `/agent/calc`; empty for an ID without a path.
    pub fn path(&self) -> &'a str {
        &self.text[self.domain_end..]
    }

    /// `spiffe://td/agent/calc` → `agent`, `calc`; nothing for an ID without a path.
    pub fn segments(&self) -> impl DoubleEndedIterator<Item = &'a str> + 'a {
        let path = self.path();
        path.get(1..).unwrap_or_default().split('/').filter(|s| !s.is_empty())
    }

    /// The first path segment, which names the role in IDs the mesh issues
    /// (`spiffe://td/ROLE/NAME`); `None` without a path.
    pub fn role(&self) -> Option<&'a str> {
        self.segments().next()
    }

    /// Whether the ID is of role `role` and names one (`spiffe://td/registry/NAME`; a bare
    /// `spiffe://td/registry` names none).
    fn names_a(&self, role: &str) -> bool {
        let mut segments = self.segments();
        segments.next() == Some(role) && segments.next().is_some()
    }

    /// Whether the ID names a registry: `spiffe://TD/registry/NAME`.
    pub fn is_registry(&self) -> bool {
        self.names_a("registry")
    }

    /// Whether the ID names an operator (an admin): `spiffe://TD/operator/NAME`.
    pub fn is_operator(&self) -> bool {
        self.names_a("operator")
    }

    /// The agent name the ID carries: its last path segment (`spiffe://td/agent/calc` → `calc`,
    /// `spiffe://td/ns/prod/sa/calc` → `calc`); `None` without a path and for the roles
    /// `registry` and `operator`, which carry no agent name.
    pub fn agent_name(&self) -> Option<&'a str> {
        match self.role()? {
            "registry" | "operator" => None,
            _ => self.segments().next_back(),
        }
    }
}

impl fmt::Display for SpiffeId<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text)
    }
}

impl AsRef<str> for SpiffeId<'_> {
    fn as_ref(&self) -> &str {
        self.text
    }
}

impl PartialEq<str> for SpiffeId<'_> {
    fn eq(&self, other: &str) -> bool {
        self.text == other
    }
}

impl PartialEq<&str> for SpiffeId<'_> {
    fn eq(&self, other: &&str) -> bool {
        self.text == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn why(text: &str) -> &'static str {
        SpiffeId::parse(text).expect_err(text).why
    }

    #[test]
    fn valid_ids_give_their_parts() {
        let id = SpiffeId::parse("spiffe://prod.example/agent/calc").unwrap();
        assert_eq!(
            (id.trust_domain(), id.path(), id.role(), id.agent_name()),
            ("prod.example", "/agent/calc", Some("agent"), Some("calc"))
        );
        assert_eq!(id.segments().collect::<Vec<_>>(), ["agent", "calc"]);
        assert_eq!(id.to_string(), "spiffe://prod.example/agent/calc");
        assert!(!id.is_registry() && !id.is_operator());

        let bare = SpiffeId::parse("spiffe://td").unwrap();
        assert_eq!((bare.trust_domain(), bare.path(), bare.role(), bare.agent_name()), ("td", "", None, None));
        assert_eq!(bare.segments().count(), 0);

        let deep = SpiffeId::parse("spiffe://td/ns/prod/sa/Calc_1.v-2").unwrap();
        assert_eq!(deep.agent_name(), Some("Calc_1.v-2"), "the last segment; paths may hold upper case");
        assert_eq!(SpiffeId::parse("spiffe://td/agent").unwrap().agent_name(), Some("agent"));
    }

    #[test]
    fn roles_registry_and_operator_carry_no_agent_name() {
        let registry = SpiffeId::parse("spiffe://td/registry/main").unwrap();
        assert!(registry.is_registry());
        assert_eq!(registry.agent_name(), None);
        let operator = SpiffeId::parse("spiffe://td/operator/ops").unwrap();
        assert!(operator.is_operator() && !operator.is_registry());
        assert_eq!(operator.agent_name(), None);
        assert!(!SpiffeId::parse("spiffe://td/registry").unwrap().is_registry(), "a role without a name names no registry");
        assert!(!SpiffeId::parse("spiffe://td/registryx/a").unwrap().is_registry());
        assert!(!SpiffeId::parse("spiffe://td/agent/registry").unwrap().is_registry());
    }

    #[test]
    fn invalid_ids_are_refused_saying_why() {
        assert!(why("https://td/agent/a").contains("spiffe://"), "wrong scheme");
        assert!(why("SPIFFE://td/agent/a").contains("lower case"), "the scheme in upper case");
        assert!(why("td/agent/a").contains("spiffe://"));
        assert!(why("spiffe://").contains("empty"));
        assert!(why("spiffe:///agent/a").contains("empty"));
        assert!(why("spiffe://Prod.Example/agent/a").contains("lower-case"), "an upper-case trust domain");
        assert!(why("spiffe://td:8443/agent/a").contains("no port"));
        assert!(why("spiffe://user@td/agent/a").contains("user info"));
        assert!(why("spiffe://td/agent/a%2Fb").contains("percent"));
        assert!(why("spiffe://td%41/agent").contains("percent"));
        assert!(why("spiffe://td/agent/a/").contains("ends with '/'"));
        assert!(why("spiffe://td/").contains("ends with '/'"));
        assert!(why("spiffe://td/agent/a?x=1").contains("query"));
        assert!(why("spiffe://td/agent/a#frag").contains("fragment"));
        assert!(why("spiffe://td/a//b").contains("segment"));
        assert!(why("spiffe://td/a/./b").contains("segment"));
        assert!(why("spiffe://td/a/../b").contains("segment"));
        assert!(why("spiffe://td/a b").contains("segment"));
        assert!(why("spiffe://td/ä").contains("segment"));
        assert!(why(&format!("spiffe://{}", "a".repeat(256))).contains("255"));
        let long = format!("spiffe://td/{}", ["a"; 1100].join("/"));
        assert!(why(&long).contains("2048"));
        let longest = format!("spiffe://td/{}", "a".repeat(MAX_LEN - "spiffe://td/".len()));
        assert!(SpiffeId::parse(&longest).is_ok(), "2048 bytes exactly");
        let message = SpiffeId::parse("spiffe://td/x?y").unwrap_err().to_string();
        assert!(message.contains("'spiffe://td/x?y' is not a SPIFFE ID") && message.contains("write spiffe://TRUST-DOMAIN"), "{message}");
    }

    #[test]
    fn trust_domains_follow_the_specification() {
        for valid in ["td", "prod.example", "a-b_c.9", &"a".repeat(255)] {
            assert!(is_valid_trust_domain(valid), "{valid}");
        }
        for invalid in ["", "Prod", "a/b", "a:1", "ä", &"a".repeat(256)] {
            assert!(!is_valid_trust_domain(invalid), "{invalid}");
        }
    }
}
