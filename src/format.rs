//! How till shows numbers and text to people: money, the head of a long string, and the like.
//! Foundation layer: it knows no other module, and nothing here parses (the scope syntax has
//! its own exact formatter in `scope`).

/// Dollars for a human: `$0`, `$12.34`, `$0.0123`, `$0.000012` (more digits the smaller it is).
pub fn usd(v: f64) -> String {
    if v == 0.0 {
        "$0".to_string()
    } else if v >= 1.0 {
        format!("${v:.2}")
    } else if v >= 0.0001 {
        format!("${v:.4}")
    } else {
        format!("${v:.6}")
    }
}

/// [`usd`] of an amount in micro-dollars, the unit budgets and costs are kept in.
pub fn usd_micros(micros: u64) -> String {
    usd(micros as f64 / 1e6)
}

/// `text` cut to `n` characters, its last one `…` when anything was cut: for a table column.
pub fn fit(text: &str, n: usize) -> std::borrow::Cow<'_, str> {
    if text.chars().count() <= n {
        return text.into();
    }
    let mut cut: String = text.chars().take(n.saturating_sub(1)).collect();
    cut.push('…');
    cut.into()
}

/// The longest start of `text` of at most `max_bytes` bytes that ends between two characters.
///
/// Slicing a `str` at a byte index inside a character panics, and the panic message quotes
/// the whole string: for text from the command line or a key, that both crashes and prints
/// what should have been cut off. Every cut of such text to a byte length goes through here.
pub fn head(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_never_cuts_inside_a_character() {
        assert_eq!(head("till_aaaaaa\u{e9}\u{e9}", 12), "till_aaaaaa");
        assert_eq!(head("till_aaaaaa\u{e9}\u{e9}", 13), "till_aaaaaa\u{e9}");
        assert_eq!(head("short", 12), "short");
        assert_eq!(head("exactly12byt", 12), "exactly12byt");
        assert_eq!(head("\u{1f511}key", 3), "");
        assert_eq!(head("", 0), "");
        let text = "a\u{e9}\u{1f511}b\u{10ffff}";
        for max in 0..=text.len() + 1 {
            let cut = head(text, max);
            assert!(cut.len() <= max && text.starts_with(cut), "{max}");
        }
    }

    #[test]
    fn more_digits_for_smaller_amounts() {
        assert_eq!(usd(0.0), "$0");
        assert_eq!(usd(12.345), "$12.35");
        assert_eq!(usd(0.0123), "$0.0123");
        assert_eq!(usd_micros(12), "$0.000012");
    }
}
