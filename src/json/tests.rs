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

/// The free-text fields of the tests' skims.
const FREE: &[&str] = &["text", "content"];

/// The fast parse and serde_json agree on `body`: both refuse it, or both read the same
/// value and the same repeated-key flag, and the fast parse alone does not refuse it. A
/// skim refuses what they refuse and reads the same but for left-out free text.
fn agree(body: &[u8]) {
    let reference = parse_reference(body).ok();
    let shown = String::from_utf8_lossy(body);
    let full = fast(body, &[]).map(|p| (p.value, p.repeated));
    assert_eq!(full, reference, "{shown:?}");
    let skimmed = fast(body, FREE);
    assert_eq!(skimmed.is_some(), reference.is_some(), "{shown:?}");
    if let (Some(s), Some((value, repeated))) = (skimmed, reference) {
        assert_eq!(s.repeated, repeated, "{shown:?}");
        let mut left_out = false;
        assert!(
            differs_only_by_skim(&s.value, &value, FREE, &mut left_out),
            "{shown:?}"
        );
        // A left-out string a repeated key replaced later still counts as skimmed.
        assert!(
            s.skimmed == left_out || (s.skimmed && repeated),
            "{shown:?}"
        );
    }
}

/// Every string of up to four pieces that escapes are made of, at every offset around a 64-byte
/// block boundary: the block scan ends where the full parse ends and refuses what it refuses.
#[test]
fn the_block_scan_agrees_with_the_parse_on_every_short_escape() {
    const PIECES: &[&[u8]] = &[
        b"\\",
        b"\"",
        b"u",
        b"a",
        b"\\n",
        b"\\u00e9",
        b"\\ud83d",
        b"\\ude00",
        b"\\ud83d\\ude00",
        b"\\u0000",
        b"\\u00g",
        b"\x01",
        b"\\\\",
        b"n",
    ];
    let mut word = Vec::new();
    for len in 0..=4u32 {
        for mut k in 0..PIECES.len().pow(len) {
            word.clear();
            for _ in 0..len {
                word.extend_from_slice(PIECES[k % PIECES.len()]);
                k /= PIECES.len();
            }
            for pad in [0, 52, 58, 61, 62, 63] {
                let mut body = vec![b'"'];
                body.extend(std::iter::repeat_n(b'x', pad));
                body.extend_from_slice(&word);
                body.extend_from_slice(b"\"\"");
                scan_agrees(&body, &format!("{:?}", String::from_utf8_lossy(&body)));
            }
        }
    }
}

/// The block scan of the string that opens `body` ends where the full parse ends it (or
/// refuses it as the parse does), and the parse refuses exactly what serde_json refuses.
fn scan_agrees(body: &[u8], shown: &str) {
    // Invalid UTF-8 the parse refuses before any string.
    let full = std::str::from_utf8(body).ok().and_then(|text| {
        let mut p = Fast {
            text,
            w: Walk {
                bytes: body,
                at: 1,
                depth: 0,
            },
            repeated: false,
            scratch: String::new(),
            free_text: &[],
            size: 0,
            most: usize::MAX,
            left_out: 0,
            skimmed: false,
        };
        // Where the full parse ends the string: just before the cursor it leaves.
        p.string().map(|_| p.w.at - 1)
    });
    assert_eq!(skip_string(body, 1), full, "{shown}");
    // The scan without AVX2, which this CPU's would otherwise hide.
    assert_eq!(skip_string_by(body, 1, masks64), full, "{shown}");
    let closed = &body[..full.map_or(body.len(), |f| f + 1)];
    assert_eq!(full.is_some(), parse_reference(closed).is_ok(), "{shown}");
}

#[test]
fn the_block_scan_agrees_with_the_parse_on_every_byte_after_a_backslash() {
    for c in 0..=255u8 {
        // The escaped byte inside the backslash's block, and first in the next one.
        for pad in [10, 62] {
            let mut body = vec![b'"'];
            body.extend(std::iter::repeat_n(b'x', pad));
            body.extend_from_slice(&[b'\\', c]);
            body.extend_from_slice(b"0000 tail\"\"");
            // A lone byte from 0x80 is not UTF-8: refused by both.
            scan_agrees(&body, &format!("byte {c:#04x} after `\\`"));
        }
    }
}

#[test]
fn a_skim_leaves_out_only_long_free_text() {
    let long = "x\\n".repeat(100);
    let body = format!(
        r#"{{"model":"{long}","messages":[{{"role":"user","content":"{long}"}},{{"content":"short","type":"{long}"}}],"text":["{long}"]}}"#
    );
    let s = fast(body.as_bytes(), FREE).unwrap();
    assert!(s.skimmed);
    let v = &s.value;
    assert_eq!(v["messages"][0]["content"], "");
    assert_eq!(v["messages"][1]["content"], "short");
    assert_eq!(v["model"].as_str().unwrap().len(), 200);
    assert_eq!(v["messages"][1]["type"].as_str().unwrap().len(), 200);
    // Only a field's own string: not strings inside an array under it.
    assert_eq!(v["text"][0].as_str().unwrap().len(), 200);
    // What a skim validates it refuses like the full parse, however long.
    for bad in [r#"\ud800"#, "\\q", "\u{1}"] {
        let body = format!(r#"{{"content":"{long}{bad}{long}"}}"#);
        assert!(fast(body.as_bytes(), FREE).is_none(), "{bad}");
        assert!(parse_reference(body.as_bytes()).is_err(), "{bad}");
    }
    // Found by the `json` fuzz target: a long free-text value a repeated key replaces
    // leaves no trace in the value, but the skim still says it left something out (so a
    // body till writes out again is parsed whole).
    let body = format!(r#"{{"text":"{long}","text":"short"}}"#);
    let s = fast(body.as_bytes(), FREE).unwrap();
    assert!(s.skimmed && s.repeated);
    assert_eq!(s.value["text"], "short");
    for n in [SKIM_FROM - 1, SKIM_FROM] {
        let body = format!(r#"{{"text":"{}"}}"#, "a".repeat(n));
        assert_eq!(fast(body.as_bytes(), FREE).unwrap().skimmed, n >= SKIM_FROM);
    }
}

#[test]
fn the_fast_parse_reads_exactly_what_serde_json_reads() {
    let cases: &[&[u8]] = &[
        b"{}",
        b"[]",
        b" \t\r\n{ \"a\" : [ 1 , 2 ] } \n",
        b"0",
        b"-0",
        b"-0.0",
        b"01",
        b"1.",
        b".5",
        b"1e",
        b"1e+",
        b"1E-2",
        b"-",
        b"--1",
        b"+1",
        b"123456789012345678",
        b"1234567890123456789",
        b"18446744073709551615",
        b"18446744073709551616",
        b"-9223372036854775808",
        b"-9223372036854775809",
        b"1e308",
        b"1e309",
        b"-1e999",
        b"1e-999",
        b"0.1000000000000000055511151231257827",
        b"955555555555555555555555555555555555",
        b"true",
        b"tru",
        b"truex",
        b"nul",
        b"null ",
        b"\"\\ud83d\\ude00\"",
        b"\"\\ud83d\"",
        b"\"\\ud83d\\n\"",
        b"\"\\ud83d\\ud83d\"",
        b"\"\\ude00\"",
        b"\"\\u00e9\\u0000\\uFFFF\"",
        b"\"\\u00g0\"",
        b"\"\\u00\"",
        b"\"\\x\"",
        b"\"\\/\\b\\f\\n\\r\\t\\\"\\\\\"",
        b"\"a\tb\"",
        b"\"a\x7fb\"",
        b"\"\xc3\xa9\"",
        b"\"\xc3\"",
        b"\"\xed\xa0\x80\"",
        b"\"unterminated",
        b"\"ends in escape\\",
        b"{\"a\":1,}",
        b"[1,]",
        b"[1 2]",
        b"{\"a\" 1}",
        b"{1:2}",
        b"{\"a\":1}{",
        b"{\"a\":1,\"a\":2}",
        b"{\"a\":{\"b\":1,\"b\":{}}}",
        b"{\"mod\\u0065l\":\"x\",\"model\":\"y\"}",
        b"\xef\xbb\xbf{}",
        b"",
        b"   ",
        b"{\"a\":[{},[],\"\",0,-1.5e3,true,false,null]}",
    ];
    for body in cases {
        agree(body);
    }
    for depth in [126, 127, 128, 129] {
        agree(format!("{}{}", "[".repeat(depth), "]".repeat(depth)).as_bytes());
        agree(format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth)).as_bytes());
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// The masks taken 32 bytes at a time are the masks taken 16 at a time, for blocks of
    /// the bytes the scan looks for (and their neighbours) in any order.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn both_block_masks_agree(block in proptest::array::uniform32(proptest::sample::select(
        vec![b'"', b'\\', b'n', b'm', b'x', 0x00, 0x1f, 0x20, 0x7f, 0x80, 0xff, b'o', b'!', b'#', b'[', b']'],
    )), tail in proptest::array::uniform32(proptest::prelude::any::<u8>())) {
        proptest::prop_assume!(std::arch::is_x86_feature_detected!("avx2"));
        let mut whole = [0u8; 64];
        whole[..32].copy_from_slice(&block);
        whole[32..].copy_from_slice(&tail);
        // SAFETY: the CPU has AVX2, just checked.
        let wide = unsafe { masks64_avx2(&whole) };
        proptest::prop_assert_eq!(wide, masks64(&whole));
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

    /// Bodies made of JSON's own characters, mostly almost-valid, read alike.
    #[test]
    fn json_like_bodies_read_alike(
        body in proptest::string::string_regex(
            r#"[ {}\[\]":,0-9eE.+\-a-z\\/tnul\u{e9}\u{1f600}\t\n]{0,60}"#
        ).unwrap()
    ) {
        agree(body.as_bytes());
    }

    /// Arbitrary bytes read alike.
    #[test]
    fn any_bytes_read_alike(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..48)) {
        agree(&body);
    }

    /// Valid documents, mutated at one byte, read alike.
    #[test]
    fn mutated_documents_read_alike(
        doc in arb_json(),
        at in proptest::prelude::any::<proptest::sample::Index>(),
        byte in proptest::prelude::any::<u8>(),
    ) {
        let mut body = serde_json::to_vec(&doc).unwrap();
        agree(&body);
        let i = at.index(body.len());
        body[i] = byte;
        agree(&body);
    }
}

fn arb_json() -> impl proptest::strategy::Strategy<Value = Value> {
    use proptest::prelude::*;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
        // Around the skim's threshold, with escapes and multi-byte characters.
        "[a\"\\\\\n\u{e9}\u{1f600}\u{1}]{80,300}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 5, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            proptest::collection::vec(
                (
                    prop_oneof![
                        Just("text".to_string()),
                        Just("content".to_string()),
                        "[a-c\\\\\"]{0,3}".prop_map(String::from)
                    ],
                    inner
                ),
                0..5
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(500))]

    /// The size the parse counts as it goes is the size of what it built (a document from
    /// `serde_json` repeats no key), and a bound below it gives the parse up.
    #[test]
    fn the_size_counted_is_the_size_of_the_value(doc in arb_json()) {
        let body = serde_json::to_string(&doc).unwrap();
        let skimmed = skim_text(&body, &[]).unwrap();
        proptest::prop_assert_eq!(skimmed.size, size_of(&skimmed.value));
        proptest::prop_assert!(skim_text_within(&body, &[], skimmed.size).unwrap().is_some());
        if skimmed.size > 0 {
            proptest::prop_assert!(
                skim_text_within(&body, &[], skimmed.size - 1).unwrap().is_none()
            );
        }
    }
}

/// A body of many small values is given up on when its tree would pass the bound, long
/// before it is built: a megabyte of `{}` members would take some 25 times its length.
#[test]
fn many_small_values_are_given_up_on_at_the_bound() {
    let message = r#"{"role":"user","content":""},"#;
    let body = format!(
        r#"{{"model":"m","messages":[{}{{}}]}}"#,
        message.repeat(30_000)
    );
    let whole = skim_text(&body, &[]).unwrap();
    assert!(
        whole.size > 20 * body.len(),
        "{} for {} bytes",
        whole.size,
        body.len()
    );
    assert!(
        skim_text_within(&body, &[], 4 << 20).unwrap().is_none(),
        "a tree of {} bytes passed a bound of 4 MiB",
        whole.size
    );
    // A conversation of a few long messages is a little more than its length.
    let long = format!(r#"{{"role":"user","content":"{}"}},"#, "x".repeat(4000));
    let body = format!(r#"{{"model":"m","messages":[{}{{}}]}}"#, long.repeat(250));
    let skimmed = skim_text_within(&body, &["content"], 4 << 20)
        .unwrap()
        .unwrap();
    assert!(skimmed.size < body.len() / 2, "{}", skimmed.size);
}
