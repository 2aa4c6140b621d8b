//! One value of a file in git's config format, read by till itself the way git reads it
//! (`git_parse_source` in git's `config.c`): `.git/sequencer/opts`, where a stopped cherry-pick
//! or revert keeps the merge strategy that `--continue` runs. Asking git would run git in a
//! repository the agent has just written to.
//!
//! What git reads there: an optional UTF-8 byte order mark; `#` and `;` comments; `[section]`,
//! `[section "subsection"]` and the older `[section.subsection]` headers, case-insensitive but
//! for a quoted subsection; a header followed by a key on the same line; names of letters,
//! digits and `-`, case-insensitive; values with `"` quoting, the escapes `\\`, `\"`, `\n`,
//! `\t`, `\b`, a backslash before the end of a line continuing the value, and the spaces
//! around them trimmed. `\r\n` reads as `\n`. A file git would refuse is an error here too.

/// The last value of `section.name` (no subsection; both lower case) in `data`, cut at its
/// first NUL as git's C string is; `Ok(None)` when the file sets none, `Err` when git would
/// refuse the file, or when the name is set without `=` (git's `true`, which no setting read
/// this way takes).
pub fn last_value(data: &[u8], section: &str, name: &str) -> Result<Option<Vec<u8>>, ()> {
    let wanted = format!("{section}.{name}");
    let mut found = None;
    let mut bare = false;
    each_value(data, |var, value| {
        if var == wanted.as_bytes() {
            match value {
                Some(v) => found = Some(v),
                None => bare = true,
            }
        }
    })?;
    if bare {
        return Err(());
    }
    Ok(found)
}

/// A variable's name and value, as [`values`] gives them.
pub type Setting = (String, Option<Vec<u8>>);

/// Every variable set in `data` with its value, in order: the name as git keys it
/// (`section.name`, or `section.subsection.name` with the subsection as written; section and
/// name lower case), the value cut at its first NUL (`None` for a name without `=`). `Err`
/// when git would refuse the file.
pub fn values(data: &[u8]) -> Result<Vec<Setting>, ()> {
    let mut all = Vec::new();
    each_value(data, |var, value| {
        all.push((String::from_utf8_lossy(var).into_owned(), value));
    })?;
    Ok(all)
}

/// Calls `f` with each variable's name and value, as [`values`] gives them.
fn each_value(data: &[u8], mut f: impl FnMut(&[u8], Option<Vec<u8>>)) -> Result<(), ()> {
    let mut src = Source::new(data)?;
    let mut var: Vec<u8> = Vec::new();
    let mut base_len = 0;
    let mut comment = false;
    loop {
        let c = src.next();
        if c == b'\n' {
            if src.eof {
                return Ok(());
            }
            comment = false;
            continue;
        }
        if comment || is_space(c) {
            continue;
        }
        if c == b'#' || c == b';' {
            comment = true;
            continue;
        }
        if c == b'[' {
            var.clear();
            src.base_var(&mut var)?;
            if var.is_empty() {
                return Err(());
            }
            var.push(b'.');
            base_len = var.len();
            continue;
        }
        if !c.is_ascii_alphabetic() {
            return Err(());
        }
        var.truncate(base_len);
        var.push(c.to_ascii_lowercase());
        let mut value = src.key_and_value(&mut var)?;
        if let Some(v) = value.as_mut()
            && let Some(nul) = v.iter().position(|&b| b == 0)
        {
            v.truncate(nul);
        }
        f(&var, value);
    }
}

/// The bytes as `get_next_char` hands them out: `\r\n` as `\n`, and a `\n` at the end.
struct Source<'a> {
    data: &'a [u8],
    at: usize,
    eof: bool,
}

/// C's `isspace`: space, `\t`, `\n`, `\v`, `\f`, `\r`.
fn is_space(c: u8) -> bool {
    c.is_ascii_whitespace() || c == 0x0b
}

/// Git's `iskeychar`.
fn is_key_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-'
}

impl<'a> Source<'a> {
    fn new(data: &'a [u8]) -> Result<Self, ()> {
        const BOM: &[u8] = b"\xef\xbb\xbf";
        let at = if data.starts_with(BOM) {
            BOM.len()
        } else if data.first() == Some(&BOM[0]) {
            // Git does not take part of a byte order mark.
            return Err(());
        } else {
            0
        };
        Ok(Self {
            data,
            at,
            eof: false,
        })
    }

    fn next(&mut self) -> u8 {
        let Some(&c) = self.data.get(self.at) else {
            self.eof = true;
            return b'\n';
        };
        self.at += 1;
        if c == b'\r' && self.data.get(self.at) == Some(&b'\n') {
            self.at += 1;
            return b'\n';
        }
        c
    }

    /// A section header after its `[`, appended to `name` (`get_base_var`).
    fn base_var(&mut self, name: &mut Vec<u8>) -> Result<(), ()> {
        loop {
            let c = self.next();
            if self.eof {
                return Err(());
            }
            if c == b']' {
                return Ok(());
            }
            if is_space(c) {
                return self.extended_base_var(name, c);
            }
            if !is_key_char(c) && c != b'.' {
                return Err(());
            }
            name.push(c.to_ascii_lowercase());
        }
    }

    /// `[section "subsection"]` after the space (`get_extended_base_var`).
    fn extended_base_var(&mut self, name: &mut Vec<u8>, mut c: u8) -> Result<(), ()> {
        loop {
            if c == b'\n' {
                return Err(());
            }
            c = self.next();
            if !is_space(c) {
                break;
            }
        }
        if c != b'"' {
            return Err(());
        }
        name.push(b'.');
        loop {
            let mut c = self.next();
            if c == b'\n' {
                return Err(());
            }
            if c == b'"' {
                break;
            }
            if c == b'\\' {
                c = self.next();
                if c == b'\n' {
                    return Err(());
                }
            }
            name.push(c);
        }
        if self.next() != b']' {
            return Err(());
        }
        Ok(())
    }

    /// The rest of a key's name, appended to `name`, and its value (`get_value`); `None` for
    /// a name without `=`.
    fn key_and_value(&mut self, name: &mut Vec<u8>) -> Result<Option<Vec<u8>>, ()> {
        let mut c;
        loop {
            c = self.next();
            if self.eof || !is_key_char(c) {
                break;
            }
            name.push(c.to_ascii_lowercase());
        }
        while c == b' ' || c == b'\t' {
            c = self.next();
        }
        if c == b'\n' {
            return Ok(None);
        }
        if c != b'=' {
            return Err(());
        }
        self.value().map(Some)
    }

    /// A value after its `=`, up to the end of its line (`parse_value`).
    fn value(&mut self) -> Result<Vec<u8>, ()> {
        let mut value = Vec::new();
        let (mut quote, mut comment) = (false, false);
        let mut trim_len = 0;
        loop {
            let mut c = self.next();
            if c == b'\n' {
                if quote {
                    return Err(());
                }
                if trim_len != 0 {
                    value.truncate(trim_len);
                }
                return Ok(value);
            }
            if comment {
                continue;
            }
            if is_space(c) && !quote {
                if trim_len == 0 {
                    trim_len = value.len();
                }
                if !value.is_empty() {
                    value.push(c);
                }
                continue;
            }
            if !quote && (c == b';' || c == b'#') {
                comment = true;
                continue;
            }
            trim_len = 0;
            if c == b'\\' {
                c = match self.next() {
                    b'\n' => continue,
                    b't' => b'\t',
                    b'b' => 0x08,
                    b'n' => b'\n',
                    c @ (b'\\' | b'"') => c,
                    _ => return Err(()),
                };
                value.push(c);
                continue;
            }
            if c == b'"' {
                quote = !quote;
                continue;
            }
            value.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strategy(text: &str) -> Result<Option<String>, ()> {
        last_value(text.as_bytes(), "options", "strategy")
            .map(|v| v.map(|v| String::from_utf8(v).unwrap()))
    }

    #[test]
    fn every_value_is_named_as_git_keys_it() {
        let text = "[core]\n\thooksPath = .husky\n[include]\n\tpath = a\n\tpath = b\n\
            [includeIf \"gitdir:~/Work/\"]\n\tpath = ../c\n[x.Sub]\n\tbare\n";
        let got: Vec<(String, Option<String>)> = values(text.as_bytes())
            .unwrap()
            .into_iter()
            .map(|(k, v)| (k, v.map(|v| String::from_utf8(v).unwrap())))
            .collect();
        let want = [
            ("core.hookspath", Some(".husky")),
            ("include.path", Some("a")),
            ("include.path", Some("b")),
            ("includeif.gitdir:~/Work/.path", Some("../c")),
            ("x.sub.bare", None),
        ];
        assert_eq!(
            got,
            want.map(|(k, v)| (k.to_string(), v.map(str::to_string)))
        );
        assert!(values(b"[core\n").is_err());
    }

    #[test]
    fn values_read_as_git_reads_them() {
        let some = |s: &str| Ok(Some(s.to_string()));
        // As git writes it.
        assert_eq!(
            strategy("[options]\n\tstrategy = ort\n\tstrategy-option = theirs\n"),
            some("ort")
        );
        assert_eq!(strategy("[options]\n\tedit = true\n"), Ok(None));
        assert_eq!(strategy(""), Ok(None));
        // Case, a header on the key's line, no spaces, no newline at the end.
        assert_eq!(strategy("[OPTIONS] STRATEGY=x/../evil"), some("x/../evil"));
        // The last one counts.
        assert_eq!(
            strategy("[options]\nstrategy = a\n[core]\nstrategy = b\n[options]\nstrategy = c\n"),
            some("c")
        );
        // Quoting, escapes, comments, trimmed spaces, continued lines, CRLF, a BOM.
        assert_eq!(
            strategy("[options]\r\n  strategy = \"x/../e vil\" # ort\r\n"),
            some("x/../e vil")
        );
        assert_eq!(
            strategy("[options]\nstrategy = a\\\n  b ; c\n"),
            some("a  b")
        );
        assert_eq!(
            strategy("[options]\nstrategy = a\\\"b\\\\\n"),
            some("a\"b\\")
        );
        assert_eq!(strategy("\u{feff}[options]\nstrategy = x\n"), some("x"));
        // Up to a NUL, as git's C string.
        assert_eq!(strategy("[options]\nstrategy = x\0y\n"), some("x"));
        // Other sections and subsections are other keys.
        assert_eq!(strategy("[options \"a\"]\nstrategy = x\n"), Ok(None));
        assert_eq!(strategy("[options.a]\nstrategy = x\n"), Ok(None));
        assert_eq!(strategy("[option]\nstrategy = x\n"), Ok(None));
        assert_eq!(strategy("# [options]\n;strategy = x\n"), Ok(None));
    }

    #[test]
    fn what_git_refuses_is_an_error() {
        for bad in [
            "[options\nstrategy = x\n",
            "[options]\nstrategy = \"x\n",
            "[options]\nstrategy = \\q\n",
            "[options]\nstrategy x\n",
            "[options]\n1strategy = x\n",
            "[options]\nstrategy\n",
            "[options \"a]\n",
            "[]\nx = 1\n",
        ] {
            assert_eq!(strategy(bad), Err(()), "{bad:?}");
        }
        // Part of a byte order mark.
        assert_eq!(
            last_value(b"\xef\xbb[options]\n", "options", "strategy"),
            Err(())
        );
    }
}
