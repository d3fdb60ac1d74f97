//! Name patterns of the policy language: literal text with `*` standing for any run of
//! characters (none included), matched against the whole name, case-sensitively.

use std::fmt;

/// A compiled pattern: the text between the stars, and whether each end is anchored.
#[derive(Clone, PartialEq, Eq)]
pub struct Pattern {
    text: Box<str>,
    kind: Kind,
}

#[derive(Clone, PartialEq, Eq)]
enum Kind {
    /// No star: the name must equal the text.
    Exact,
    /// `*` alone.
    Any,
    /// `prefix*`: the common case (`spiffe://td/agent/*`, `math.*`), checked without a loop.
    Prefix(usize),
    /// Anything else: the literal pieces between stars, matched left to right.
    Pieces(Vec<Box<str>>),
}

impl Pattern {
    pub fn new(text: &str) -> Pattern {
        let kind = if !text.contains('*') {
            Kind::Exact
        } else if text.bytes().all(|b| b == b'*') {
            Kind::Any
        } else if text.ends_with('*') && !text[..text.len() - 1].contains('*') {
            Kind::Prefix(text.len() - 1)
        } else {
            Kind::Pieces(text.split('*').map(Box::from).collect())
        };
        Pattern { text: text.into(), kind }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the pattern has no star.
    pub fn is_literal(&self) -> bool {
        self.kind == Kind::Exact
    }

    /// The literal text before the first star (all of it for a literal pattern).
    pub fn literal_prefix(&self) -> &str {
        self.text.split('*').next().unwrap_or_default()
    }

    pub fn matches(&self, name: &str) -> bool {
        match &self.kind {
            Kind::Exact => same(&self.text, name),
            Kind::Any => true,
            Kind::Prefix(n) => starts_with(name, &self.text[..*n]),
            Kind::Pieces(pieces) => matches_pieces(pieces, name),
        }
    }

    /// Whether every name this pattern matches is also matched by `wider` (used to check that a
    /// delegation only narrows). Exact for the star-suffix patterns delegations use; other shapes
    /// are covered only by `*`, an equal pattern, or a star-suffix pattern covering their prefix.
    pub fn within(&self, wider: &Pattern) -> bool {
        match &wider.kind {
            Kind::Any => true,
            Kind::Exact => self.kind == Kind::Exact && self.text == wider.text,
            Kind::Prefix(n) => self.literal_prefix().starts_with(&wider.text[..*n]),
            Kind::Pieces(_) => self.text == wider.text,
        }
    }
}

/// Whether two names are equal, compared eight bytes at a time in line: the names and patterns
/// of a policy are tens of bytes, where a call into libc's `memcmp` costs more than the
/// comparison itself, and a decision makes a few of them per rule (bench/FINDINGS.md,
/// "Authorization cost").
#[inline]
pub(crate) fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let (mut x, mut y) = (a.chunks_exact(8), b.chunks_exact(8));
    for (p, q) in (&mut x).zip(&mut y) {
        if u64::from_ne_bytes(p.try_into().expect("8 bytes")) != u64::from_ne_bytes(q.try_into().expect("8 bytes")) {
            return false;
        }
    }
    x.remainder().iter().zip(y.remainder()).all(|(p, q)| p == q)
}

#[inline]
fn starts_with(name: &str, prefix: &str) -> bool {
    name.len() >= prefix.len() && same(&name[..prefix.len()], prefix)
}

#[inline]
fn ends_with(name: &str, suffix: &str) -> bool {
    name.len() >= suffix.len() && same(&name[name.len() - suffix.len()..], suffix)
}

/// Star-separated pieces: the first anchors the start, the last the end, the middle ones are
/// found in order (leftmost match is always safe for `*`-only globs).
fn matches_pieces(pieces: &[Box<str>], name: &str) -> bool {
    let (first, rest) = match pieces.split_first() {
        Some(split) => split,
        None => return name.is_empty(),
    };
    if !starts_with(name, first) {
        return false;
    }
    let mut remaining = &name[first.len()..];
    let (last, middle) = match rest.split_last() {
        Some(split) => split,
        None => return remaining.is_empty(),
    };
    for piece in middle {
        match remaining.find(&**piece) {
            Some(at) => remaining = &remaining[at + piece.len()..],
            None => return false,
        }
    }
    ends_with(remaining, last)
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stars_match_any_run_and_the_rest_is_literal() {
        let cases = [
            ("add", "add", true),
            ("add", "adds", false),
            ("*", "", true),
            ("*", "anything/at/all", true),
            ("math.*", "math.add", true),
            ("math.*", "math.", true),
            ("math.*", "mathx", false),
            ("*.add", "math.add", true),
            ("*.add", "math.adds", false),
            ("spiffe://*/agent/front", "spiffe://td/agent/front", true),
            ("spiffe://*/agent/front", "spiffe://td/agent/frontx", false),
            ("a*b*c", "abc", true),
            ("a*b*c", "a-b-b-c", true),
            ("a*b*c", "acb", false),
            ("a*a", "a", false),
            ("**", "x", true),
        ];
        for (pattern, name, expected) in cases {
            assert_eq!(Pattern::new(pattern).matches(name), expected, "{pattern} ~ {name}");
        }
    }

    #[test]
    fn same_agrees_with_string_equality_at_every_length() {
        let text = "spiffe://toolmesh.local/agent/front-end";
        for len in 0..=text.len() {
            let a = &text[..len];
            assert!(same(a, a));
            for other in 0..=text.len() {
                assert_eq!(same(a, &text[..other]), len == other, "{len} vs {other}");
            }
            if len > 0 {
                // One byte differing, in every position.
                for at in 0..len {
                    let mut b = a.as_bytes().to_vec();
                    b[at] = b'#';
                    assert!(!same(a, std::str::from_utf8(&b).unwrap()), "{a} at {at}");
                }
            }
        }
    }

    #[test]
    fn within_holds_only_for_narrower_or_equal_patterns() {
        let within = |a: &str, b: &str| Pattern::new(a).within(&Pattern::new(b));
        assert!(within("add", "*"));
        assert!(within("math.add", "math.*"));
        assert!(within("math.a*", "math.*"));
        assert!(within("math.*", "math.*"));
        assert!(!within("math.*", "math.add"));
        assert!(!within("*", "math.*"));
        assert!(!within("stats.mean", "math.*"));
        assert!(!within("*.add", "math.*"));
    }
}
