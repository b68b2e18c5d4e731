//! Text from a peer, made safe to print on a terminal.
//!
//! Messages, warnings, findings and names come from the other side of the
//! connection, or from a manifest it wrote. Printed as they are, an escape
//! sequence in them would drive the user's terminal (retitle it, move the
//! cursor over earlier lines, hide text). Control characters (C0, DEL, C1)
//! and the bidirectional overrides are shown escaped instead, as `\x1b`
//! or `\u{202e}`; a backslash is left as it is.

use std::borrow::Cow;
use std::fmt::Write;

/// Whether `c` is shown escaped.
fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` with its control characters escaped.
pub fn escaped(s: &str) -> Cow<'_, str> {
    if !s.chars().any(hidden) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            c if !hidden(c) => out.push(c),
            c if (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
        }
    }
    Cow::Owned(out)
}

/// Bytes (a name) as text: invalid UTF-8 replaced, controls escaped.
pub fn shown(bytes: &[u8]) -> String {
    escaped(&String::from_utf8_lossy(bytes)).into_owned()
}

/// A peer's stream of lines (its stderr): controls escaped but line ends.
pub fn shown_lines(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&escaped(line));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_are_shown_escaped() {
        assert_eq!(escaped("plain/name ü"), "plain/name ü");
        assert_eq!(escaped("a\x1b]0;owned\x07b"), "a\\x1b]0;owned\\x07b");
        assert_eq!(escaped("x\ny\r\u{9b}2J"), "x\\x0ay\\x0d\\u{9b}2J");
        assert_eq!(escaped("evil\u{202e}txt"), "evil\\u{202e}txt");
        assert_eq!(shown(b"\xff\x1b"), "\u{fffd}\\x1b");
        assert_eq!(shown_lines(b"a\x1b[2J\nb\n"), "a\\x1b[2J\nb\n");
    }
}
