use super::*;

#[test]
fn loopback_hosts_are_accepted() {
    for host in [
        "127.0.0.1",
        "127.0.0.1:8080",
        "127.1.2.3:1",
        "localhost",
        "LocalHost:443",
        "localhost.",
        "localhost.:65535",
        "[::1]",
        "[::1]:9000",
        "[0:0:0:0:0:0:0:1]:80",
    ] {
        assert!(is_loopback_host(host), "{host}");
    }
}

/// Regression: `127.evil.com` passed because any name starting with `127.` did, and
/// `[::1]evil` because only the part inside the brackets was looked at.
#[test]
fn names_that_only_look_like_loopback_are_refused() {
    for host in [
        "127.evil.com",
        "127.0.0.1.evil.com",
        "localhost.evil.com",
        "evil-localhost",
        "localhost..",
        "[::1]evil",
        "[::1]:80x",
        "[::1",
        "::1",
        "127.0.0.1:80@evil",
        "127.0.0.1:",
        "127.0.0.1:99999",
        "127.0.0.1:+80",
        "127.0.0.1.",
        "127.1",
        "0x7f.0.0.1",
        "10.0.0.1",
        "[::2]",
        "",
        "localhost:80:80",
        "127.0.0.1:80:80",
    ] {
        assert!(!is_loopback_host(host), "{host}");
    }
}

fn state_with_mint() -> (tempfile::TempDir, State, Arc<MintEntry>) {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&dir.path().join("ledger.sqlite3")).unwrap();
    let mint = crate::childkey::MintKey::generate().unwrap();
    let kid = mint.kid();
    let entry = MintEntry {
        key: mint,
        valid_until: None,
    };
    let state = State::new(
        Providers::from_config(&crate::config::Config::default()),
        ProxyOptions::default(),
        ledger,
        None,
        Vec::new(),
        vec![entry],
    )
    .unwrap();
    let entry = state.mints.read().unwrap().get(&kid).cloned().unwrap();
    (dir, state, entry)
}

fn minted(mint: &MintEntry) -> (String, Checked) {
    use crate::childkey::{Caveat, ModelPattern};
    let token = Token::mint(
        &mint.key,
        vec![
            Caveat::Allow(vec![ModelPattern::new("openai", None).unwrap()]),
            Caveat::Expires(crate::time::now_unix() + 3_600),
        ],
    )
    .unwrap();
    let text = token.encode();
    (text, Checked::new(token, &mint.key).unwrap())
}

/// A verified key is found by its exact text only, and the cache never holds more than
/// `KNOWN_KEYS` keys however many distinct valid keys arrive.
#[test]
fn the_verified_key_cache_answers_only_the_exact_text_and_stays_bounded() {
    let (_dir, state, mint) = state_with_mint();
    let (text, checked) = minted(&mint);
    assert!(state.known_key(&text).is_none());
    let kept = state.remember_key(&text, Arc::clone(&mint), checked);
    let found = state.known_key(&text).expect("a remembered key is found");
    assert!(Arc::ptr_eq(&kept, &found));
    assert!(Arc::ptr_eq(&found.mint, &mint));
    for other in [
        format!("{text}A"),
        text[..text.len() - 1].to_string(),
        text.to_uppercase(),
        String::new(),
    ] {
        assert!(state.known_key(&other).is_none(), "{other:?}");
    }

    let mut texts = vec![text];
    for _ in 0..KNOWN_KEYS * 2 + 10 {
        let (t, c) = minted(&mint);
        state.remember_key(&t, Arc::clone(&mint), c);
        texts.push(t);
        assert!(state.known.lock().unwrap().by_hash.len() <= KNOWN_KEYS);
    }
    assert!(state.known_key(texts.last().unwrap()).is_some());
    assert!(
        state.known_key(&texts[0]).is_none(),
        "a full cache is emptied, so the first key is gone"
    );
}

#[test]
fn same_bytes_is_equality_at_every_length_and_every_position() {
    for len in 0..40usize {
        let a: Vec<u8> = (0..len).map(|i| i as u8 ^ 0x5a).collect();
        assert!(super::same_bytes(&a, &a.clone()), "{len}");
        for at in 0..len {
            for bit in [0x01u8, 0x80] {
                let mut b = a.clone();
                b[at] ^= bit;
                assert!(!super::same_bytes(&a, &b), "{len} {at} {bit}");
            }
        }
        assert!(!super::same_bytes(&a, &a[..len.saturating_sub(1)]) || len == 0);
        let mut longer = a.clone();
        longer.push(0);
        assert!(!super::same_bytes(&a, &longer));
    }
}

/// One lineage holds at most half of the bodies' room, a largest body and several smaller
/// ones included; others take the rest; what is given back is another's to take, and a
/// lineage that holds nothing keeps no entry.
#[test]
fn body_bytes_give_one_lineage_half_the_room() {
    let bodies = BodyBytes::new(1000);
    assert_eq!((bodies.limit(), bodies.share()), (8000, 4000));
    let (a, b, c) = (Binding([1; 32]), Binding([2; 32]), Binding([3; 32]));
    let lineages = |bodies: &BodyBytes| bodies.held.lock().unwrap().by_lineage.len();

    let mut largest = bodies.hold(a);
    assert_eq!(largest.grow_to(1000), Ok(()));
    let mut smaller: Vec<_> = (0..3).map(|_| bodies.hold(a)).collect();
    for h in &mut smaller {
        assert_eq!(h.grow_to(999), Ok(()));
    }
    // 3,997 bytes held: three more fill the lineage's share; a fourth is refused, however
    // much room is left.
    let mut more = bodies.hold(a);
    assert_eq!(more.grow_to(3), Ok(()));
    assert_eq!(more.grow_to(4), Err(NoRoom::Lineage));
    assert_eq!(bodies.take(a, u64::MAX), Err(NoRoom::Lineage));
    // Another lineage takes the other half, then nothing more is left to a third.
    assert_eq!(bodies.take(b, 4000), Ok(()));
    assert_eq!(bodies.take(c, 1), Err(NoRoom::All));
    assert_eq!(lineages(&bodies), 2, "a refused take leaves no entry");
    // What the first gives back is there for the third.
    drop(smaller.pop());
    assert_eq!(bodies.take(c, 999), Ok(()));
    assert_eq!(bodies.take(c, 1), Err(NoRoom::All));
    drop((largest, smaller, more));
    bodies.give(b, 4000);
    bodies.give(c, 999);
    let held = bodies.held.lock().unwrap();
    assert_eq!((held.total, held.by_lineage.len()), (0, 0));
}

fn root_meta(provider: &str, fingerprint: &str) -> crate::ledger::RootKeyMeta {
    crate::ledger::RootKeyMeta {
        provider: provider.to_string(),
        fingerprint: fingerprint.to_string(),
        added_at: 0,
        rotated_at: None,
    }
}

/// A provider the ledger stops naming is marked removed (and named again once a key is
/// added); one it never named is left out, so a key handed to the proxy directly is not
/// taken for a removed one.
#[test]
fn root_keys_the_ledger_stops_naming_are_marked_removed() {
    let mut seen = Map::default();
    follow_root_keys(
        &mut seen,
        vec![root_meta("openai", "aaaa"), root_meta("gemini", "cccc")],
    );
    follow_root_keys(&mut seen, vec![root_meta("gemini", "cccc")]);
    assert_eq!(seen.get("openai"), Some(&None));
    assert_eq!(seen.get("gemini"), Some(&Some("cccc".to_string())));
    assert_eq!(seen.get("anthropic"), None);
    follow_root_keys(&mut seen, vec![root_meta("openai", "bbbb")]);
    assert_eq!(seen.get("openai"), Some(&Some("bbbb".to_string())));
    assert_eq!(seen.get("gemini"), Some(&None));
}

/// A shared `till serve` keeps three quarters of its connections for other keys; `till run`
/// serves one agent's keys (its session's), and gives them all.
#[test]
fn a_keys_share_of_the_connections_is_all_of_them_under_till_run() {
    let dir = tempfile::tempdir().unwrap();
    let state = |session: Option<&str>| {
        State::new(
            Providers::from_config(&crate::config::Config::default()),
            ProxyOptions {
                session: session.map(str::to_string),
                max_connections: 1024,
                ..ProxyOptions::default()
            },
            Ledger::open(&dir.path().join("ledger.sqlite3")).unwrap(),
            None,
            Vec::new(),
            Vec::new(),
        )
        .unwrap()
    };
    assert_eq!(state(None).sockets_per_lineage(), 256);
    assert_eq!(state(Some("s1")).sockets_per_lineage(), 1024);
}
