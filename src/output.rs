//! The one place that writes to the terminal: data to stdout, messages to stderr.
//!
//! Colour only when stderr is a terminal and `NO_COLOR` is unset. A closed stdout (`till list |
//! head -0`) is not an error: [`data`] reports it and `main` exits 0, as ripgrep does.
//!
//! Text that an agent chose (a request's model, a key name, an alert built from them) is
//! passed through [`printable`] before it is shown to a person, and JSON escapes the same
//! characters, so nothing printed can steer the terminal.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::borrow::Cow;
use std::io::{self, IsTerminal, Write};

use crate::env::EnvVars;

/// Whether messages on stderr may use ANSI colour.
pub fn color_enabled() -> bool {
    std::env::var_os(EnvVars::NO_COLOR).is_none_or(|v| v.is_empty()) && io::stderr().is_terminal()
}

/// Whether stdout is a terminal (tables get bars and padding there).
pub fn stdout_is_terminal() -> bool {
    io::stdout().is_terminal()
}

/// Whether stdout is the null device: sent to `/dev/null`, or closed when till started (the
/// runtime puts `/dev/null` on a closed standard descriptor). What is written there is gone.
pub fn stdout_discards() -> bool {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd as _;
        use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
        let kind = |m: std::fs::Metadata| m.file_type().is_char_device().then(|| m.rdev());
        let out = io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .and_then(|fd| std::fs::File::from(fd).metadata());
        let null = std::fs::metadata("/dev/null");
        matches!((out.map(kind), null.map(kind)), (Ok(Some(a)), Ok(Some(b))) if a == b)
    }
    #[cfg(not(unix))]
    {
        false
    }
}

/// Writes data to stdout. A broken pipe is returned as the error kind `BrokenPipe` and `main`
/// turns it into exit 0.
pub fn data(text: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())?;
    if !text.ends_with('\n') {
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// Text from outside till (a request's model, a name or a message from the ledger), made safe
/// to show a person: every control character (C0, DEL, C1) and every bidirectional override or
/// isolate (U+202A–U+202E, U+2066–U+2069) is written as its escape, `\u{1b}`, so the text
/// cannot clear the screen, set the terminal's title, start a line of its own or reverse what
/// follows it. Everything else is left as it is. Text cut to fit a column is cut after this,
/// so a cut never leaves half an escape sequence for the terminal to finish.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(steers_terminal) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if steers_terminal(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Whether `c` is one of the characters [`printable`] escapes.
fn steers_terminal(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            // Bidirectional marks, embeddings, overrides and isolates: they reorder what
            // follows them on the line (a ledger row's columns).
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
            // Characters drawn as nothing or as a blank: they hide text, or tell two names
            // apart that look the same.
            | '\u{00ad}' | '\u{115f}' | '\u{1160}' | '\u{180e}' | '\u{200b}'..='\u{200d}'
            | '\u{2028}' | '\u{2029}' | '\u{2060}'..='\u{2064}' | '\u{2800}' | '\u{3164}'
            | '\u{feff}' | '\u{ffa0}'
            // Deprecated format characters (shaping and digit switches), interlinear
            // annotation marks, and the tag characters, all drawn as nothing.
            | '\u{206a}'..='\u{206f}' | '\u{fff9}'..='\u{fffb}' | '\u{e0000}'..='\u{e007f}'
        )
}

/// Writes a JSON value to stdout, pretty-printed.
pub fn json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let formatter = Escaping(serde_json::ser::PrettyFormatter::new());
    data(&to_json(value, formatter)?)?;
    Ok(())
}

/// Writes a JSON value to stdout on one line (`till log -f --json`: one row a line).
pub fn json_line(value: &impl serde::Serialize) -> anyhow::Result<()> {
    data(&to_json(
        value,
        Escaping(serde_json::ser::CompactFormatter),
    )?)?;
    Ok(())
}

fn to_json(
    value: &impl serde::Serialize,
    formatter: impl serde_json::ser::Formatter,
) -> anyhow::Result<String> {
    let mut out = Vec::new();
    value.serialize(&mut serde_json::Serializer::with_formatter(
        &mut out, formatter,
    ))?;
    Ok(String::from_utf8(out)?)
}

/// A JSON formatter that also writes DEL, the C1 controls and the bidirectional overrides as
/// `\uXXXX` escapes (serde_json escapes only the C0 controls), so JSON read in a terminal is
/// as safe as a table. The strings parse back to exactly what they were.
struct Escaping<F>(F);

impl<F: serde_json::ser::Formatter> serde_json::ser::Formatter for Escaping<F> {
    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if steers_terminal(c) {
                writer.write_all(&fragment.as_bytes()[start..i])?;
                // Every such character is in the Basic Multilingual Plane: one escape each.
                write!(writer, "\\u{:04x}", u32::from(c))?;
                start = i + c.len_utf8();
            }
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }

    fn begin_array<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.begin_array(writer)
    }

    fn end_array<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_array(writer)
    }

    fn begin_array_value<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.0.begin_array_value(writer, first)
    }

    fn end_array_value<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_array_value(writer)
    }

    fn begin_object<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.begin_object(writer)
    }

    fn end_object<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_object(writer)
    }

    fn begin_object_key<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.0.begin_object_key(writer, first)
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.begin_object_value(writer)
    }

    fn end_object_value<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_object_value(writer)
    }
}

fn paint(code: &str, text: &str) -> String {
    if color_enabled() {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

/// [`printable`] line by line: a message's own line breaks stay, and every other control
/// character in it (a name the user typed or pasted may carry an escape sequence) is escaped.
pub fn printable_lines(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| c != '\n' && steers_terminal(c)) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.split('\n')
            .map(printable)
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

/// A message for the person at the terminal (stderr).
pub fn note(text: &str) {
    eprintln!("{}", printable_lines(text));
}

/// `till: warning: …` on stderr.
pub fn warn(text: &str) {
    eprintln!(
        "{}: {} {}",
        paint("1", "till"),
        paint("33", "warning:"),
        printable_lines(&redact_keys(text))
    );
}

/// How the keys of OpenAI and Anthropic (`sk-`), Google (`AIza`) and the OpenAI-compatible
/// providers begin.
pub const PROVIDER_KEY_PREFIXES: &[&str] = &[
    "sk-", "sk_", "AIza", "gsk_", "xai-", "pplx-", "hf_", "nvapi-",
];

/// `text` with every word that looks like a provider's key or a till key cut to its prefix
/// (`sk-…`): a key pasted where a name, a provider or a variable belongs is not repeated
/// to the terminal (its scrollback, a shared screen) by the message that refuses it. A word is
/// a run of letters, digits, `-` and `_`; it looks like a key when it starts as OpenAI's,
/// Anthropic's, Google's, the compatible providers' or till's keys do and is 20 bytes or more.
pub fn redact_keys(text: &str) -> Cow<'_, str> {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    // The prefix of a word that looks like a key.
    let key_prefix = |w: &str| {
        (w.len() >= 20)
            .then(|| {
                PROVIDER_KEY_PREFIXES
                    .iter()
                    .chain(&["till_"])
                    .find(|p| w.starts_with(**p))
            })
            .flatten()
    };
    if !text
        .split(|c: char| !is_word(c))
        .any(|w| key_prefix(w).is_some())
    {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        let end = rest.find(|c: char| !is_word(c)).unwrap_or(rest.len());
        let (word, after) = rest.split_at(end);
        match key_prefix(word) {
            Some(prefix) => {
                out.push_str(prefix);
                out.push('…');
            }
            None => out.push_str(word),
        }
        let sep = after.chars().next().map_or(0, char::len_utf8);
        out.push_str(&after[..sep]);
        rest = &after[sep..];
    }
    Cow::Owned(out)
}

/// `till: error` and an optional `hint:` line, on stderr. Both are escaped like
/// [`printable_lines`]: errors quote what the user typed. A key in them is cut to its prefix
/// ([`redact_keys`]).
pub fn error(text: &str, hint: Option<&str>) {
    eprintln!(
        "{}: {} {}",
        paint("1", "till"),
        paint("31", "error:"),
        printable_lines(&cut_long(&redact_keys(text)))
    );
    if let Some(text) = hint {
        self::hint(text);
    }
}

/// A `hint:` line on stderr: what to do about the error printed before it.
pub fn hint(text: &str) {
    eprintln!(
        "{} {}",
        paint("36", "hint:"),
        printable_lines(&cut_long(&redact_keys(text)))
    );
}

/// The most of an error or a hint printed: what is longer holds something typed or pasted
/// at length (a 100 KB provider name), which is cut in the middle, not written back whole.
const LONGEST_MESSAGE: usize = 4096;

/// `text` cut in the middle, with how much was left out, when it is longer than
/// [`LONGEST_MESSAGE`] bytes.
fn cut_long(text: &str) -> Cow<'_, str> {
    if text.len() <= LONGEST_MESSAGE {
        return Cow::Borrowed(text);
    }
    let mut head = LONGEST_MESSAGE / 2;
    while !text.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = text.len() - LONGEST_MESSAGE / 4;
    while !text.is_char_boundary(tail) {
        tail += 1;
    }
    Cow::Owned(format!(
        "{}…({} bytes left out)…{}",
        &text[..head],
        tail - head,
        &text[tail..]
    ))
}

/// A green `ok` or red `fail` line on stdout, as `till doctor` prints them. A closed stdout
/// is returned as `BrokenPipe`, as by [`data`].
pub fn check_line(ok: bool, what: &str, detail: &str) -> io::Result<()> {
    let paint = |code: &str, text: &str| {
        if stdout_is_terminal() && std::env::var_os(EnvVars::NO_COLOR).is_none() {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    };
    let mark = if ok {
        paint("32", "ok  ")
    } else {
        paint("31", "FAIL")
    };
    let detail = printable_lines(detail);
    if detail.is_empty() {
        data(&format!("{mark} {what}"))
    } else {
        data(&format!("{mark} {what}: {detail}"))
    }
}

/// Quotes an argument for a POSIX shell when it needs it (a hint's command, pasted as it is).
pub fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:@+,=%".contains(&b));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message holding something pasted at length is cut in the middle, at character
    /// boundaries, saying how much was left out; a short one is as it was.
    #[test]
    fn long_messages_are_cut_in_the_middle() {
        assert_eq!(cut_long("unknown provider `x`"), "unknown provider `x`");
        let long = format!("unknown provider `{}`: known are …", "é".repeat(50_000));
        let cut = cut_long(&long);
        assert!(cut.len() < 4_200, "{}", cut.len());
        assert!(cut.starts_with("unknown provider `é"), "{cut}");
        assert!(cut.ends_with("`: known are …"), "{cut}");
        assert!(cut.contains("bytes left out"), "{cut}");
    }

    #[test]
    fn keys_in_messages_are_cut_to_their_prefix() {
        assert!(matches!(
            redact_keys("unknown provider `openai-eu`"),
            Cow::Borrowed(_)
        ));
        assert_eq!(
            redact_keys(
                "no variable `sk-proj-ABCDEFGHIJKLMNOPQRST` (set `AIzaSyA1234567890abcdefghij`)"
            ),
            "no variable `sk-…` (set `AIza…`)"
        );
        assert_eq!(
            redact_keys("`sk-short` é till_abcdefghijklmnopqrstuvwxyz."),
            "`sk-short` é till_…."
        );
    }

    #[test]
    fn printable_lines_keeps_line_breaks_and_escapes_the_rest() {
        assert!(matches!(printable_lines("a\nb"), Cow::Borrowed(_)));
        assert_eq!(
            printable_lines("bad `x\u{1b}[2J`\nsecond\tline"),
            "bad `x\\u{1b}[2J`\nsecond\\u{9}line"
        );
    }

    #[test]
    fn printable_escapes_controls_and_bidi_overrides_and_keeps_the_rest() {
        assert!(matches!(printable("gpt-4o-mini"), Cow::Borrowed(_)));
        assert_eq!(printable("héllo wörld ✓"), "héllo wörld ✓");
        assert_eq!(
            printable("a\u{1b}]0;t\u{7}\r\n\t\u{7f}\u{9b}\u{202e}\u{2066}b"),
            "a\\u{1b}]0;t\\u{7}\\u{d}\\u{a}\\u{9}\\u{7f}\\u{9b}\\u{202e}\\u{2066}b"
        );
        // Marks that reorder a line without an override, and characters drawn as nothing.
        assert_eq!(
            printable("m\u{200f}\u{61c}\u{200b}\u{feff}\u{2800}\u{3164}"),
            "m\\u{200f}\\u{61c}\\u{200b}\\u{feff}\\u{2800}\\u{3164}"
        );
        assert_eq!(
            printable("n\u{206a}\u{206f}\u{fff9}\u{fffb}\u{e0001}\u{e0041}\u{e007f}"),
            "n\\u{206a}\\u{206f}\\u{fff9}\\u{fffb}\\u{e0001}\\u{e0041}\\u{e007f}"
        );
    }

    #[test]
    fn json_escapes_what_serde_json_leaves_raw_and_reads_back_exactly() {
        let text = "m\u{1b}[2J\u{7f}\u{85}\u{9b}\u{202a}\u{2069}\"\\é";
        let value = serde_json::json!({ text: [text] });
        for json in [
            to_json(&value, Escaping(serde_json::ser::PrettyFormatter::new())).unwrap(),
            to_json(&value, Escaping(serde_json::ser::CompactFormatter)).unwrap(),
        ] {
            // Pretty JSON's own line breaks are the only control characters left.
            assert!(
                json.chars().all(|c| c == '\n' || !steers_terminal(c)),
                "{json:?}"
            );
            assert!(
                json.contains(r#"m\u001b[2J\u007f\u0085\u009b\u202a\u2069\"\\é"#),
                "{json}"
            );
            let back: serde_json::Value = serde_json::from_str(&json).unwrap();
            assert_eq!(back, value);
        }
    }
}
