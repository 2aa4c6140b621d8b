//! How till shows numbers and text to people: money, the head of a long string, and the like.
//! Foundation layer: it knows no other module, and nothing here parses (the scope syntax has
//! its own exact formatter in `scope`).

/// Dollars for a human: `$0`, `$12.34`, `$0.0123`, `$0.000012` (more digits the smaller it is).
pub fn usd(v: f64) -> String {
    if v == 0.0 {
        "$0".to_string()
    } else if v >= 1.0 {
        format!("${v:.2}")
    } else {
        // Below a dollar, four places, and six below a cent (a row of $0.000068 and a total
        // of $0.00014 read as the same kind of number), with zeros past the cents left out: a
        // budget of `0.50usd` reads `$0.50`, not `$0.5000`.
        let text = if v >= 0.01 {
            format!("{v:.4}")
        } else {
            format!("{v:.6}")
        };
        let keep = text.trim_end_matches('0').len().max("0.00".len());
        format!("${}", &text[..keep])
    }
}

/// [`usd`] of an amount in micro-dollars, the unit budgets and costs are kept in.
pub fn usd_micros(micros: u64) -> String {
    usd(micros as f64 / 1e6)
}

/// How many terminal columns `text` takes: two for a wide (East Asian) character, none for a
/// combining one, one for the rest.
pub fn width(text: &str) -> usize {
    unicode_width::UnicodeWidthStr::width(text)
}

/// `text` cut to `n` terminal columns, its last one `…` when anything was cut: for a table
/// column. A wide character that would straddle the edge is left out.
pub fn fit(text: &str, n: usize) -> std::borrow::Cow<'_, str> {
    if width(text) <= n {
        return text.into();
    }
    let mut cut = String::new();
    let mut used = 0;
    for c in text.chars() {
        let w = unicode_width::UnicodeWidthChar::width(c).unwrap_or(0);
        if used + w > n.saturating_sub(1) {
            break;
        }
        used += w;
        cut.push(c);
    }
    cut.push('…');
    cut.into()
}

/// `text` [`fit`] to `n` columns and padded with spaces to them: a left-aligned table cell
/// whose right edge is the same for wide characters as for narrow ones (`format!`'s `{:<n}`
/// pads by characters, and a wide one takes two columns).
pub fn cell(text: &str, n: usize) -> String {
    let fitted = fit(text, n);
    let pad = n.saturating_sub(width(&fitted));
    let mut out = String::with_capacity(fitted.len() + pad);
    out.push_str(&fitted);
    out.extend(std::iter::repeat_n(' ', pad));
    out
}

/// The width of a table column holding `texts`: the widest of them on screen, within
/// `min..=max` (a longer one is cut by [`cell`]).
pub fn column_width<'a>(texts: impl IntoIterator<Item = &'a str>, min: usize, max: usize) -> usize {
    texts
        .into_iter()
        .map(width)
        .max()
        .unwrap_or(0)
        .clamp(min, max)
}

/// `1 request` or `3 requests`: `n` with the word for one or for many.
pub fn plural(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
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
    fn cells_are_as_wide_on_screen_whatever_their_characters() {
        for (text, n) in [
            ("gpt-4o", 10),
            ("\u{5343}\u{554f}-\u{6a21}\u{578b}-\u{5927}", 10),
            ("\u{5343}\u{554f}\u{5343}\u{554f}\u{5343}\u{554f}", 6),
            ("e\u{301}cole-tr\u{e8}s-longue-cl\u{e9}", 8),
            ("", 3),
        ] {
            let c = cell(text, n);
            assert_eq!(width(&c), n, "{text:?} in {n} columns: {c:?}");
            assert!(c.trim_end().ends_with('…') || c.starts_with(text), "{c:?}");
        }
        // A wide character that would straddle the edge is left out, and the cut says so.
        assert_eq!(cell("\u{5343}\u{554f}\u{5343}", 4), "\u{5343}\u{2026} ");
        assert_eq!(fit("abcdef", 4), "abc\u{2026}");
        assert_eq!(fit("abcd", 4), "abcd");
    }

    #[test]
    fn more_digits_for_smaller_amounts() {
        assert_eq!(usd(0.0), "$0");
        assert_eq!(usd(12.345), "$12.35");
        assert_eq!(usd(0.0123), "$0.0123");
        assert_eq!(usd_micros(12), "$0.000012");
        // Zeros past the cents are left out.
        assert_eq!(usd(0.5), "$0.50");
        assert_eq!(usd(0.012), "$0.012");
        assert_eq!(usd_micros(10), "$0.00001");
        assert_eq!(usd_micros(100), "$0.0001");
        // Below a cent, two significant digits or more.
        assert_eq!(usd_micros(140), "$0.00014");
        assert_eq!(usd_micros(2_500), "$0.0025");
        assert_eq!(usd_micros(9_871), "$0.009871");
    }
}
