//! Small text helpers shared by the renderers, and the one function that makes
//! stored text safe to print for people: [`escape`].

use std::borrow::Cow;

/// A path as a message for people shows it: [`escape`]d, so a directory
/// named with control characters cannot drive the terminal either.
pub fn path(p: &std::path::Path) -> String {
    escape(&p.display().to_string(), false).into_owned()
}

/// Stored text as a view for people may print it: every control character
/// (C0, DEL and C1) is shown the way `cat -v` shows it, so that nothing a
/// task, message or agent wrote can drive the terminal (`\x1b]52;…` writing
/// the clipboard, `\x1b[2J` clearing the screen, `\r` hiding a line).
///
/// ESC becomes `^[`, other C0 characters `^@`…`^_`, DEL `^?`, and a C1
/// character (U+0080–U+009F) `M-^@`…`M-^_`. With `multi_line`, newlines and
/// tabs stay as they are (for views that print a prompt or a message body
/// line by line); otherwise they are escaped too (`^J`, `^I`). The
/// bidirectional controls ([`is_bidi`]) are shown as `<U+202E>`.
///
/// Every human view goes through here; machine formats (`--json`, `--format
/// json|claude|shell`) never do, so they keep the bytes exact.
pub fn escape(s: &str, multi_line: bool) -> Cow<'_, str> {
    let keep = |c: char| multi_line && (c == '\n' || c == '\t');
    let plain = |c: char| !(c.is_control() || is_bidi(c)) || keep(c);
    if s.chars().all(plain) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if plain(c) {
            out.push(c);
            continue;
        }
        let n = c as u32;
        if is_bidi(c) {
            out.push_str(&format!("<U+{n:04X}>"));
            continue;
        }
        if n >= 0x80 {
            out.push_str("M-");
        }
        match n & 0x7f {
            0x7f => out.push_str("^?"),
            low => {
                out.push('^');
                // `low` is below 0x20 here: `^@` … `^_`.
                out.push(char::from(low as u8 + 0x40));
            }
        }
    }
    Cow::Owned(out)
}

/// The bidirectional embeddings, overrides and isolates (U+202A–U+202E,
/// U+2066–U+2069): they reorder what a terminal shows after them (a name that
/// reads `txt.exe` may be `exe.txt`), so views for people show them as
/// `<U+202E>`.
pub fn is_bidi(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Whether `s` holds a control character (C0, DEL or C1): what a one-line
/// field such as a task's description refuses.
pub fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// At most `max` characters of `s`, with `…` when cut.
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The first line of `s`, escaped for a one-line view and clipped to `max`
/// characters.
pub fn first_line(s: &str, max: usize) -> String {
    clip(&escape(s.lines().next().unwrap_or(""), false), max)
}

/// One cell of a table: `s` escaped for one line and clipped to `max`.
pub fn cell(s: &str, max: usize) -> String {
    clip(&escape(s, false), max)
}

/// Quotes `s` for POSIX sh: single quotes, with `'` written as `'\''`.
pub fn sh_quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('\'');
    for c in s.chars() {
        if c == '\'' {
            q.push_str("'\\''");
        } else {
            q.push(c);
        }
    }
    q.push('\'');
    q
}

/// `s` as one `sh` word: as is when it holds only characters the shell leaves
/// alone, single-quoted otherwise.
pub fn sh_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_./-+=:,@%".contains(&b));
    if plain {
        s.to_string()
    } else {
        sh_quote(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_every_control_character() {
        assert_eq!(escape("a\x1b]52;c;eA==\x07b", false), "a^[]52;c;eA==^Gb");
        assert_eq!(escape("\x1b[2J", false), "^[[2J");
        assert_eq!(escape("\0\x7f\r", false), "^@^?^M");
        assert_eq!(escape("x\u{9b}31m\u{85}", false), "xM-^[31mM-^E");
        assert_eq!(escape("one\ntwo\tx", false), "one^Jtwo^Ix");
        assert_eq!(escape("one\ntwo\tx\r", true), "one\ntwo\tx^M");
        for c in (0u32..0x20).chain(0x7f..0xa0).filter_map(char::from_u32) {
            let shown = escape(&c.to_string(), false).into_owned();
            assert!(!shown.chars().any(char::is_control), "{c:?} -> {shown:?}");
        }
    }

    #[test]
    fn bidi_controls_are_shown_by_code_point() {
        assert_eq!(
            escape("invoice\u{202E}fdp.exe", false),
            "invoice<U+202E>fdp.exe"
        );
        assert_eq!(
            escape("a\u{2066}b\u{2069}\u{202A}\u{202C}", true),
            "a<U+2066>b<U+2069><U+202A><U+202C>"
        );
        for c in ('\u{202A}'..='\u{202E}').chain('\u{2066}'..='\u{2069}') {
            assert!(!escape(&c.to_string(), true).contains(c), "{c:?}");
        }
        // Right-to-left text itself is not a control.
        assert_eq!(escape("עברית العربية", false), "עברית العربية");
    }

    #[test]
    fn leaves_plain_text_alone() {
        let s = "Fix the bug in `src/db.rs` — ünïcödé, \"quotes\" and ^[ as typed";
        assert!(matches!(escape(s, false), Cow::Borrowed(_)));
        assert_eq!(escape(s, true), s);
    }

    #[test]
    fn first_line_escapes_before_clipping() {
        assert_eq!(first_line("\x1b[2Jabc\nrest", 80), "^[[2Jabc");
        assert_eq!(cell("a\x1bb", 3), "a^…");
    }
}
