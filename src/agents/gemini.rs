//! Gemini CLI's one-time setup: `security.auth.selectedType = "gemini-api-key"` in its
//! `settings.json`.
//!
//! Gemini CLI (0.44 and later, checked on 0.61) takes `GOOGLE_GEMINI_BASE_URL` without a chosen
//! auth type to mean a "gateway" login, which its own validation then refuses ("Invalid auth
//! method selected."). With the API-key auth type chosen in its settings it sends
//! `GEMINI_API_KEY` to `GOOGLE_GEMINI_BASE_URL`, which is what `till run` sets. Its settings
//! can be overridden per run only by root-owned files, so this is a setting the user keeps.
//!
//! The edit is textual, so the user's formatting, key order and comments (the file is JSON
//! with comments) stay as they were: a small scanner finds the objects on the path and the
//! member is inserted right after the innermost existing object's opening brace.

/// The auth type that makes Gemini CLI use `GEMINI_API_KEY` with `GOOGLE_GEMINI_BASE_URL`.
pub const AUTH_TYPE: &str = "gemini-api-key";

/// Where the setting lives in `settings.json`.
pub const SETTING: &str = "security.auth.selectedType";

/// What pinning the auth type does to a settings file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pin {
    /// The setting is already there.
    Unchanged,
    /// The new text of the file.
    Changed(String),
    /// Another auth type is chosen (its value); left alone.
    Other(String),
}

/// Pins the API-key auth type in `text` (the settings file's contents, `None` when it does not
/// exist). `Err` names what the scanner could not read.
pub fn pin_auth_type(text: Option<&str>) -> Result<Pin, String> {
    let path = ["security", "auth", "selectedType"];
    let Some(text) = text.filter(|t| !t.trim().is_empty()) else {
        return Ok(Pin::Changed(format!(
            "{{\n  \"security\": {{\n    \"auth\": {{\n      \"selectedType\": \"{AUTH_TYPE}\"\n    }}\n  }}\n}}\n"
        )));
    };
    let s = Scanner(text.as_bytes());
    let root = s.skip_blank(0);
    if s.0.get(root) != Some(&b'{') {
        return Err("the file is not a JSON object".into());
    }
    let mut object = root;
    for (depth, key) in path.iter().enumerate() {
        match s.member(object, key)? {
            Some(value) if depth + 1 == path.len() => {
                let end = s.skip_value(value)?;
                let current: String = serde_json::from_str(&text[value..end])
                    .map_err(|_| format!("`{SETTING}` is not a string"))?;
                return Ok(if current == AUTH_TYPE {
                    Pin::Unchanged
                } else {
                    Pin::Other(current)
                });
            }
            Some(value) if s.0[value] == b'{' => object = value,
            Some(_) => return Err(format!("`{key}` is not an object")),
            None => {
                let empty = s.0.get(s.skip_blank(object + 1)) == Some(&b'}');
                let indent = "  ".repeat(depth + 1);
                let mut member = format!("\n{indent}");
                for k in &path[depth..path.len() - 1] {
                    member.push_str(&format!("\"{k}\": {{ "));
                }
                member.push_str(&format!("\"selectedType\": \"{AUTH_TYPE}\""));
                member.push_str(&" }".repeat(path.len() - 1 - depth));
                if !empty {
                    member.push(',');
                }
                let mut out = String::with_capacity(text.len() + member.len());
                out.push_str(&text[..=object]);
                out.push_str(&member);
                out.push_str(&text[object + 1..]);
                return Ok(Pin::Changed(out));
            }
        }
    }
    unreachable!("the loop returns at the last key")
}

/// A forward-only reader of JSON with comments, enough to find members and skip values.
struct Scanner<'a>(&'a [u8]);

impl Scanner<'_> {
    /// The position after whitespace and `//` or `/* */` comments from `i`.
    fn skip_blank(&self, mut i: usize) -> usize {
        let b = self.0;
        loop {
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
            if b[i..].starts_with(b"//") {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            } else if b[i..].starts_with(b"/*") {
                i = match b[i + 2..].windows(2).position(|w| w == b"*/") {
                    Some(p) => i + 2 + p + 2,
                    None => b.len(),
                };
            } else {
                return i;
            }
        }
    }

    /// The end of the string that starts at `i` (after its closing quote).
    fn skip_string(&self, mut i: usize) -> Result<usize, String> {
        let b = self.0;
        i += 1;
        while i < b.len() {
            match b[i] {
                b'\\' => i += 2,
                b'"' => return Ok(i + 1),
                _ => i += 1,
            }
        }
        Err("a string is not closed".into())
    }

    /// The end of the value that starts at `i`.
    fn skip_value(&self, i: usize) -> Result<usize, String> {
        let b = self.0;
        match b.get(i) {
            Some(b'"') => self.skip_string(i),
            Some(b'{' | b'[') => {
                let mut depth = 0usize;
                let mut j = i;
                while j < b.len() {
                    j = self.skip_blank(j);
                    match b.get(j) {
                        Some(b'"') => {
                            j = self.skip_string(j)?;
                            continue;
                        }
                        Some(b'{' | b'[') => depth += 1,
                        Some(b'}' | b']') => {
                            depth -= 1;
                            if depth == 0 {
                                return Ok(j + 1);
                            }
                        }
                        _ => {}
                    }
                    j += 1;
                }
                Err("an object or array is not closed".into())
            }
            Some(_) => {
                let mut j = i;
                while j < b.len()
                    && !matches!(b[j], b',' | b'}' | b']')
                    && !b[j].is_ascii_whitespace()
                {
                    j += 1;
                }
                Ok(j)
            }
            None => Err("a value is missing".into()),
        }
    }

    /// Where the value of member `key` of the object whose `{` is at `object` starts.
    fn member(&self, object: usize, key: &str) -> Result<Option<usize>, String> {
        let b = self.0;
        let mut i = object + 1;
        loop {
            i = self.skip_blank(i);
            match b.get(i) {
                Some(b'}') => return Ok(None),
                Some(b'"') => {}
                _ => return Err("expected a member name".into()),
            }
            let end = self.skip_string(i)?;
            let name: String = serde_json::from_slice(&b[i..end])
                .map_err(|_| "a member name is not a valid string".to_string())?;
            i = self.skip_blank(end);
            if b.get(i) != Some(&b':') {
                return Err(format!("expected `:` after \"{name}\""));
            }
            let value = self.skip_blank(i + 1);
            if name == key {
                return Ok(Some(value));
            }
            i = self.skip_blank(self.skip_value(value)?);
            match b.get(i) {
                Some(b',') => i += 1,
                Some(b'}') => return Ok(None),
                _ => return Err(format!("expected `,` or `}}` after \"{name}\"")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn pinned(text: Option<&str>) -> String {
        match pin_auth_type(text).unwrap() {
            Pin::Changed(t) => t,
            other => panic!("{other:?}"),
        }
    }

    fn selected(text: &str) -> Value {
        let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
        v.pointer("/security/auth/selectedType").cloned().unwrap()
    }

    #[test]
    fn writes_a_new_file_or_adds_to_any_depth() {
        for before in [
            None,
            Some(""),
            Some("{}"),
            Some("{\"theme\": \"Dracula\"}"),
            Some("{\"security\": {}}"),
            Some("{\"security\": {\"folderTrust\": {\"enabled\": true}}}"),
            Some(
                "{\"security\": {\"auth\": {\"useExternal\": false}}, \"x\": [1, {\"a\": \"}\"}]}",
            ),
        ] {
            let after = pinned(before);
            assert_eq!(selected(&after), AUTH_TYPE, "{before:?} → {after}");
            if let Some(b) = before.filter(|b| !b.is_empty()) {
                let (b, a): (Value, Value) = (
                    serde_json::from_str(b).unwrap(),
                    serde_json::from_str(&after).unwrap(),
                );
                assert_eq!(a["theme"], b["theme"]);
                assert_eq!(a["x"], b["x"]);
            }
        }
    }

    #[test]
    fn keeps_comments_and_order() {
        let before = "{\n  // my theme\n  \"theme\": \"Dracula\", /* keep */\n  \"model\": {\"name\": \"gemini-2.5-pro\"}\n}\n";
        let after = pinned(Some(before));
        assert!(after.contains("// my theme") && after.contains("/* keep */"));
        assert!(after.find("theme").unwrap() < after.find("model").unwrap());
        let stripped: String = after
            .lines()
            .map(|l| l.split("//").next().unwrap().replace("/* keep */", ""))
            .collect();
        assert_eq!(selected(&stripped), AUTH_TYPE);
    }

    #[test]
    fn leaves_a_chosen_auth_type_alone() {
        let same = "{\"security\": {\"auth\": {\"selectedType\": \"gemini-api-key\"}}}";
        assert_eq!(pin_auth_type(Some(same)).unwrap(), Pin::Unchanged);
        let other = "{\"security\": {\"auth\": {\"selectedType\": \"oauth-personal\"}}}";
        assert_eq!(
            pin_auth_type(Some(other)).unwrap(),
            Pin::Other("oauth-personal".into())
        );
        assert!(pin_auth_type(Some("[1]")).is_err());
        assert!(pin_auth_type(Some("{\"security\": 3}")).is_err());
        assert!(pin_auth_type(Some("{\"security\": {")).is_err());
    }
}
