//! The model-glob matcher: `*` (any run of characters) and `?` (exactly one character).
//!
//! It runs on every request, so it allocates nothing and never recurses: the classic
//! two-pointer walk that remembers only the last `*`, linear for patterns with one star and
//! O(pattern × text) at worst. Patterns are ASCII (the scope parser and the token decoder
//! refuse anything else); the text is any model name a client sent, so `?` consumes a whole
//! UTF-8 character, never half of one.

/// Whether `text` matches the glob `pattern` in full (not a substring search).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p = pattern.as_bytes();
    let t = text.as_bytes();
    let (mut pi, mut ti) = (0usize, 0usize);
    // Where to resume after the last `*`: (pattern index after it, text index it has eaten to).
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some(b'*') => {
                pi += 1;
                star = Some((pi, ti));
                continue;
            }
            Some(b'?') => {
                pi += 1;
                ti += char_len(t[ti]);
                continue;
            }
            Some(&c) if c == t[ti] => {
                pi += 1;
                ti += 1;
                continue;
            }
            _ => {}
        }
        match star {
            // Let the last `*` eat one more character and retry from just after it.
            Some((sp, st)) => {
                let next = st + char_len(t[st]);
                star = Some((sp, next));
                pi = sp;
                ti = next;
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Length of the UTF-8 sequence that starts with `lead` (the text is a `&str`, so valid).
fn char_len(lead: u8) -> usize {
    match lead {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn literal_patterns_match_only_themselves() {
        assert!(glob_match("gpt-4o", "gpt-4o"));
        assert!(!glob_match("gpt-4o", "gpt-4o-mini"));
        assert!(!glob_match("gpt-4o-mini", "gpt-4o"));
        assert!(!glob_match("gpt-4o", ""));
        assert!(glob_match("", ""));
        assert!(!glob_match("", "a"));
    }

    #[test]
    fn star_matches_any_run_including_empty() {
        assert!(glob_match("*", ""));
        assert!(glob_match("*", "anything/at:all"));
        assert!(glob_match("gpt-4o*", "gpt-4o"));
        assert!(glob_match("gpt-4o*", "gpt-4o-mini"));
        assert!(!glob_match("gpt-4o*", "gpt-4"));
        assert!(glob_match("claude-*-haiku-*", "claude-3-5-haiku-20241022"));
        assert!(!glob_match(
            "claude-*-haiku-*",
            "claude-3-5-sonnet-20241022"
        ));
        assert!(glob_match("*mini", "gpt-4o-mini"));
        assert!(!glob_match("*mini", "gpt-4o-mini-2024"));
        assert!(glob_match("**", "x"));
        assert!(glob_match("a*b*c", "abc"));
        assert!(glob_match("a*b*c", "aXbYbZc"));
        assert!(!glob_match("a*b*c", "aXbYbZ"));
    }

    #[test]
    fn star_backtracks_past_false_starts() {
        assert!(glob_match("*ab", "aaab"));
        assert!(glob_match("*aab", "aaaab"));
        assert!(glob_match("a*aa", "aaa"));
        assert!(!glob_match("a*aa", "aa"));
        assert!(glob_match("*-mini", "gpt-4o-mini-mini"));
    }

    #[test]
    fn question_mark_is_exactly_one_character() {
        assert!(glob_match("gpt-?o", "gpt-4o"));
        assert!(!glob_match("gpt-?o", "gpt-o"));
        assert!(!glob_match("gpt-?o", "gpt-44o"));
        assert!(glob_match("?", "é"));
        assert!(!glob_match("??", "é"));
        assert!(glob_match("*?", "é"));
        assert!(!glob_match("?", ""));
        assert!(glob_match("*é*", "modèle-é-x"));
    }

    #[test]
    fn matching_is_case_sensitive_and_anchored() {
        assert!(!glob_match("gpt-4o", "GPT-4o"));
        assert!(!glob_match("4o", "gpt-4o"));
        assert!(!glob_match("gpt", "gpt-4o"));
    }

    #[test]
    fn pathological_patterns_finish_quickly() {
        let text = "a".repeat(200);
        let pattern = format!("{}b", "a*".repeat(50));
        assert!(!glob_match(&pattern, &text));
    }
}
