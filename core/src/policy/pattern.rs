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
            Kind::Exact => *self.text == *name,
            Kind::Any => true,
            Kind::Prefix(n) => name.starts_with(&self.text[..*n]),
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

/// Star-separated pieces: the first anchors the start, the last the end, the middle ones are
/// found in order (leftmost match is always safe for `*`-only globs).
fn matches_pieces(pieces: &[Box<str>], name: &str) -> bool {
    let (first, rest) = match pieces.split_first() {
        Some(split) => split,
        None => return name.is_empty(),
    };
    let Some(mut remaining) = name.strip_prefix(&**first) else { return false };
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
    remaining.ends_with(&**last)
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
