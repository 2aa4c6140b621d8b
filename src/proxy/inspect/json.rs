//! The one parse of a request body: serde_json's own `Value`, built the way serde_json builds
//! it (the last of a repeated key wins), that also says whether any object, at any depth,
//! repeated a key.
//!
//! A body without a repeated key reads the same to every conforming JSON parser (RFC 8259
//! leaves only repeated names to the parser's choice; serde_json refuses what else could
//! differ: invalid UTF-8, lone surrogates, numbers out of range, nesting past 128), so it may
//! go upstream as it came when till has nothing to change in it. A body with one is forwarded
//! as this parse, re-serialised, as every body used to be.

use std::cell::Cell;
use std::fmt;

use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Parses `body` as one JSON value; the flag says whether an object repeated a key.
pub fn parse(body: &[u8]) -> Result<(Value, bool), serde_json::Error> {
    let repeated = Cell::new(false);
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = Seed(&repeated).deserialize(&mut de)?;
    de.end()?;
    Ok((value, repeated.get()))
}

#[derive(Clone, Copy)]
struct Seed<'a>(&'a Cell<bool>);

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_f64<E>(self, n: f64) -> Result<Value, E> {
        Ok(Number::from_f64(n).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(v) = seq.next_element_seed(self)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(self)?;
            if out.insert(key, value).is_some() {
                self.0.set(true);
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parse_is_serde_jsons_and_repeats_are_flagged_at_any_depth() {
        for body in [
            r#"{"a":1,"b":[1,-2,3.5,1e300,"x\u00e9",null,true,{"c":{}}],"d":"\ud83d\ude00"}"#,
            r#" [1, {"a": 955555555555555555555555555555555555}] "#,
            r#""plain""#,
        ] {
            let (v, repeated) = parse(body.as_bytes()).unwrap();
            assert_eq!(v, serde_json::from_str::<Value>(body).unwrap(), "{body}");
            assert!(!repeated, "{body}");
        }
        for body in [
            r#"{"model":"a","model":"b"}"#,
            r#"{"m":[{"x":1,"y":2,"x":3}]}"#,
            r#"{"o":{"p":{"q":1,"q":1}}}"#,
            r#"{"mod\u0065l":"a","model":"b"}"#,
        ] {
            let (v, repeated) = parse(body.as_bytes()).unwrap();
            assert_eq!(v, serde_json::from_str::<Value>(body).unwrap(), "{body}");
            assert!(repeated, "{body}");
        }
    }

    #[test]
    fn what_serde_json_refuses_is_refused() {
        for body in [
            "{\"a\":1} x",
            "{\"a\":\"\\ud800\"}",
            "{\"a\":1e999}",
            "{\"a\":\"\u{1}\"}",
            "\u{feff}{}",
            "{\"a\":1,}",
        ] {
            assert!(parse(body.as_bytes()).is_err(), "{body:?}");
            assert!(serde_json::from_str::<Value>(body).is_err(), "{body:?}");
        }
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        assert!(parse(deep.as_bytes()).is_err());
        assert!(parse(b"{\"a\":\"\xff\"}").is_err());
    }
}
