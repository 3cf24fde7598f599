//! Making names and metadata safe to print on a terminal. File names, link
//! targets, hosts, branches and messages are data others control; printed
//! raw, their control bytes would drive the terminal (move the cursor,
//! retitle the window, hide text). Human output shows them as git does
//! (`core.quotePath`): a name that needs it goes in double quotes with
//! C-style escapes (`"a\033b"`, `"tab\there"`), octal for other bytes.
//!
//! Invariant: what `quote` and `escape` return holds no C0 or C1 control
//! character, no DEL and no bidirectional-text control (which reorder what
//! a line shows); `escape` alone lets tabs through. Printable UTF-8
//! (accents, CJK, emoji) passes unchanged. JSON output does not use this:
//! it stays exact.

use std::borrow::Cow;
use std::fmt::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Whether `c` must not reach a terminal raw.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn push_escaped(bytes: &[u8], out: &mut String) {
    for &b in bytes {
        let _ = match b {
            0x07 => out.write_str("\\a"),
            0x08 => out.write_str("\\b"),
            b'\t' => out.write_str("\\t"),
            b'\n' => out.write_str("\\n"),
            0x0b => out.write_str("\\v"),
            0x0c => out.write_str("\\f"),
            b'\r' => out.write_str("\\r"),
            _ => write!(out, "\\{b:03o}"),
        };
    }
}

/// `bytes` with every unsafe character (and invalid UTF-8) escaped; for a
/// name also `"` and `\` and tabs. The flag says whether anything was.
fn render(bytes: &[u8], name: bool) -> (String, bool) {
    let mut out = String::with_capacity(bytes.len() + 2);
    let mut escaped = false;
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if is_unsafe(c) && (name || c != '\t') {
                push_escaped(c.encode_utf8(&mut [0; 4]).as_bytes(), &mut out);
                escaped = true;
            } else if name && (c == '"' || c == '\\') {
                out.push('\\');
                out.push(c);
                escaped = true;
            } else {
                out.push(c);
            }
        }
        if !chunk.invalid().is_empty() {
            push_escaped(chunk.invalid(), &mut out);
            escaped = true;
        }
    }
    (out, escaped)
}

/// A name (path, link target, branch) for human output: unchanged when it
/// is printable UTF-8 without `"` or `\`, else in double quotes with git's
/// escapes.
pub fn quote(name: &[u8]) -> Cow<'_, str> {
    let plain = |b: &u8| (0x20..0x7f).contains(b) && *b != b'"' && *b != b'\\';
    if name.iter().all(plain) {
        // All printable ASCII, so valid UTF-8.
        return String::from_utf8_lossy(name);
    }
    match render(name, true) {
        (s, false) => Cow::Owned(s),
        (s, true) => Cow::Owned(format!("\"{s}\"")),
    }
}

/// `quote` of a path.
pub fn quote_path(path: &Path) -> Cow<'_, str> {
    quote(path.as_os_str().as_bytes())
}

/// Free text (a message, a host, an error or warning line) for human
/// output: unsafe characters escaped as `quote` does, tabs kept, nothing
/// else changed and no quotes added.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(render(text.as_bytes(), false).0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn quotes_like_git() {
        assert_eq!(quote(b"src/main.rs"), "src/main.rs");
        assert_eq!(quote("café/日本.txt".as_bytes()), "café/日本.txt");
        assert_eq!(quote(b"a\x1bb"), r#""a\033b""#);
        assert_eq!(quote(b"tab\there\n"), r#""tab\there\n""#);
        assert_eq!(quote(b"q\"uote\\"), r#""q\"uote\\""#);
        assert_eq!(quote(b"caf\xe9-\xff"), r#""caf\351-\377""#);
        assert_eq!(quote(b"\x07\x08\x0b\x0c\r\x7f"), r#""\a\b\v\f\r\177""#);
        // C1 controls and bidi overrides, whose UTF-8 is otherwise valid.
        assert_eq!(quote("x\u{9b}y".as_bytes()), r#""x\302\233y""#);
        assert_eq!(quote("a\u{202e}b".as_bytes()), r#""a\342\200\256b""#);
        assert_eq!(escape("msg\x1b[2J\tok \"q\""), "msg\\033[2J\tok \"q\"");
        assert!(matches!(escape("plain \\ text"), Cow::Borrowed(_)));
    }

    proptest! {
        /// Nothing unsafe survives, and distinct names stay distinct.
        #[test]
        fn quoted_is_safe_and_unambiguous(a in proptest::collection::vec(any::<u8>(), 0..40),
                                          b in proptest::collection::vec(any::<u8>(), 0..40)) {
            let (qa, qb) = (quote(&a), quote(&b));
            prop_assert!(!qa.chars().any(is_unsafe), "{:?}", qa);
            prop_assert!(!escape(&String::from_utf8_lossy(&a)).chars().any(|c| is_unsafe(c) && c != '\t'));
            prop_assert_eq!(a == b, qa == qb);
        }
    }
}
