//! How an error is shown to a person: one line for it and one for each cause, with control
//! characters made visible. `main` prints errors this way; the agent logs and answers with it.
//!
//! Like [`crate::kind`], this names nothing of the crate, so every layer can use it.

/// The error and its causes, one per line, skipping a cause whose text the lines above
/// already carry.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str("\n  caused by: ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}

/// `text` with every control character but the line feed shown as `%XX` (as a URI would), so
/// text that came from a device, a file name or a server (token and key labels, paths, an
/// agent's message) cannot move the cursor, recolour or retitle the terminal it is printed on.
#[must_use]
pub fn printable(text: &str) -> String {
    let mut shown = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() && c != '\n' {
            shown.push_str(&format!("%{:02X}", u32::from(c)));
        } else {
            shown.push(c);
        }
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_but_line_feeds_are_shown_percent_encoded() {
        assert_eq!(
            printable("token '\u{1b}]0;x\u{7}'\n  caused by: a\rb\tc\u{9b}d"),
            "token '%1B]0;x%07'\n  caused by: a%0Db%09c%9Bd"
        );
        assert_eq!(printable("plain 'acc' ü"), "plain 'acc' ü");
    }
}
