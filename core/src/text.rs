//! Text that came from someone else (a registration, a certificate, a peer's answer) on its way
//! to a terminal or a log line: control characters are shown escaped, never written raw, so an
//! ESC cannot drive the operator's terminal and a newline cannot forge a log line or a table row.
//!
//! One rule for the CLI and every log line of the core and the registry: a control character
//! (Unicode `Cc`: C0 `U+0000..=U+001F`, DEL `U+007F`, C1 `U+0080..=U+009F`) and a bidirectional
//! formatting character (`U+061C`, `U+200E`, `U+200F`, `U+202A..=U+202E`, `U+2066..=U+2069`,
//! which reorder what a terminal shows) is written as `\u{1b}`, the form of Rust's
//! `escape_debug`. Everything else, backslashes included, is written as it is.

use std::borrow::Cow;
use std::fmt;

/// Whether `c` is written escaped: a control or a bidirectional formatting character.
pub fn is_escaped(c: char) -> bool {
    c.is_control() || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every [`is_escaped`] character written as `\u{XX}`; borrowed when there is none.
pub fn escape(text: &str) -> Cow<'_, str> {
    if text.chars().any(is_escaped) {
        Cow::Owned(Escaped(text).to_string())
    } else {
        Cow::Borrowed(text)
    }
}

/// As [`escape`], keeping line feeds: for multi-line messages (errors) written to a terminal.
pub fn escape_keeping_newlines(text: &str) -> Cow<'_, str> {
    if text.chars().any(|c| c != '\n' && is_escaped(c)) {
        let mut out = String::with_capacity(text.len() + 8);
        for (i, line) in text.split('\n').enumerate() {
            if i > 0 {
                out.push('\n');
            }
            out.push_str(&escape(line));
        }
        Cow::Owned(out)
    } else {
        Cow::Borrowed(text)
    }
}

/// Displays its text escaped as [`escape`] does, without allocating: for log fields
/// (`name = %Escaped(&name)`) and `format!` arguments.
#[derive(Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some((at, c)) = rest.char_indices().find(|&(_, c)| is_escaped(c)) {
            f.write_str(&rest[..at])?;
            write!(f, "\\u{{{:x}}}", u32::from(c))?;
            rest = &rest[at + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

impl fmt::Debug for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0, f)
    }
}

/// Decodes `%XX` escapes (a URL path segment, an `OTEL_*_HEADERS` value); `None` for a bad
/// escape or a result that is not UTF-8.
pub fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_bidi_overrides_are_escaped_and_the_rest_is_kept() {
        assert_eq!(escape("calc-1 ✓ \\n"), "calc-1 ✓ \\n");
        assert!(matches!(escape("plain"), Cow::Borrowed(_)));
        assert_eq!(escape("evil\u{1b}[2J\nINFO forged"), "evil\\u{1b}[2J\\u{a}INFO forged");
        assert_eq!(escape("\u{0}\u{7f}\u{85}\u{9f}\t\r"), "\\u{0}\\u{7f}\\u{85}\\u{9f}\\u{9}\\u{d}");
        assert_eq!(escape("a\u{202e}b"), "a\\u{202e}b");
        assert_eq!(Escaped("x\u{7}y").to_string(), "x\\u{7}y");
        assert_eq!(escape_keeping_newlines("line one\nline\u{1b} two"), "line one\nline\\u{1b} two");
    }

    #[test]
    fn percent_decoding_undoes_escapes_and_refuses_bad_ones() {
        assert_eq!(percent_decode("calc-1a2b").as_deref(), Some("calc-1a2b"));
        assert_eq!(percent_decode("a%2Fb%20c").as_deref(), Some("a/b c"));
        assert_eq!(percent_decode("%e2%9c%93").as_deref(), Some("✓"));
        assert_eq!(percent_decode("bad%2"), None);
        assert_eq!(percent_decode("bad%zz"), None);
        assert_eq!(percent_decode("%ff"), None, "not UTF-8");
    }
}
