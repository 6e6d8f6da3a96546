//! Printing text that came from outside (Stripe event types, object IDs, names, audit messages
//! quoting them) to an operator's terminal: a signed event may carry escape sequences, and a
//! terminal would act on them (retitle the window, rewrite what is shown, or worse).
//!
//! Every command that prints stored Stripe-sourced text goes through [`safe`] (tables and
//! lines) or [`safe_json`] (`--json` documents and pretty-printed objects).

use std::borrow::Cow;
use std::fmt::Write as _;

/// Characters a terminal could act on or that reorder what is shown: C0 and C1 controls, DEL,
/// and the Unicode bidirectional and invisible formatting marks.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200B}'..='\u{200F}'   // zero-width spaces and joiners, LRM, RLM
            | '\u{2028}' | '\u{2029}' // line and paragraph separators
            | '\u{202A}'..='\u{202E}' // bidi embeddings and overrides
            | '\u{2060}'..='\u{2069}' // word joiner, invisible operators, bidi isolates
            | '\u{FEFF}')
}

/// `text` with every unsafe character shown as an escape (`\n`, `\t`, `\r`, `\u{1b}`), so it is
/// printed as one inert line. Other text, accents and all, is unchanged.
pub fn safe(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_unsafe(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A JSON document as serde_json wrote it, with the unsafe characters serde leaves raw (DEL,
/// C1 controls, bidi marks; it escapes C0 itself) written as `\uXXXX`. Still valid JSON, the
/// same value: outside strings JSON text is ASCII, so every such character is inside a string.
pub fn safe_json(json: String) -> String {
    if !json.chars().any(|c| c != '\n' && is_unsafe(c)) {
        return json;
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        // The newlines of pretty-printing are structure, not content (serde escapes content).
        if c != '\n' && is_unsafe(c) {
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_a_terminal_would_act_on_and_keeps_the_rest() {
        assert_eq!(safe("invoice.paid"), "invoice.paid");
        assert_eq!(safe("Café Ünïcode"), "Café Ünïcode");
        assert_eq!(
            safe("a\u{1b}]0;pwned\u{7}b\u{9b}c\u{202e}d\ne"),
            "a\\u{1b}]0;pwned\\u{7}b\\u{9b}c\\u{202e}d\\ne"
        );
        assert!(!safe("\u{7f}").contains('\u{7f}'));
    }

    #[test]
    fn json_stays_valid_and_equal() {
        let value = serde_json::json!({"type": "x\u{1b}[2J\u{7f}\u{85}\u{202e}y", "n": 1});
        let text = safe_json(serde_json::to_string_pretty(&value).unwrap());
        assert!(!text.chars().any(|c| c != '\n' && is_unsafe(c)), "{text}");
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, value);
    }
}
