use super::*;

#[test]
fn migrations_apply_and_are_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.sqlite3");
    drop(Ledger::open(&path).unwrap());
    let l = Ledger::open(&path).unwrap();
    let v: i64 = l
        .conn()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(v as usize, MIGRATIONS.len());
}

/// Every request's row pays for each index on `requests`: the only one is the one the retention
/// prune searches.
#[test]
fn the_requests_table_keeps_only_the_index_its_queries_search() {
    let l = Ledger::open_in_memory().unwrap();
    // Column `i` of every row `sql` gives.
    let texts = |sql: &str, i: usize| -> Vec<String> {
        let mut stmt = l.conn().prepare(sql).unwrap();
        let rows = stmt.query_map([], |r| r.get(i)).unwrap();
        rows.collect::<Result<_, _>>().unwrap()
    };
    let indexes = texts(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'requests'",
        0,
    );
    assert_eq!(indexes, ["requests_at"]);
    let plan = texts("EXPLAIN QUERY PLAN DELETE FROM requests WHERE at < 1", 3);
    assert!(plan.iter().any(|p| p.contains("requests_at")), "{plan:?}");
}

#[test]
fn root_key_added_then_rotated() {
    let l = Ledger::open_in_memory().unwrap();
    l.record_root_key("openai", "aaaa0000", 10).unwrap();
    l.record_root_key("openai", "aaaa0000", 20).unwrap();
    assert_eq!(l.root_key("openai").unwrap().unwrap().rotated_at, None);
    l.record_root_key("openai", "bbbb1111", 30).unwrap();
    let meta = l.root_key("openai").unwrap().unwrap();
    assert_eq!(
        (meta.added_at, meta.rotated_at, meta.fingerprint.as_str()),
        (10, Some(30), "bbbb1111")
    );
    assert!(l.remove_root_key("openai").unwrap());
    assert!(l.root_keys().unwrap().is_empty());
}

#[test]
fn a_failed_rotation_can_put_the_old_row_back() {
    let l = Ledger::open_in_memory().unwrap();
    l.record_root_key("openai", "aaaa0000", 10).unwrap();
    let old = l.root_key("openai").unwrap().unwrap();
    l.record_root_key("openai", "bbbb1111", 30).unwrap();
    let ids = RootKeyIds {
        key_id: "key_new".into(),
        service_account_id: Some("svc_new".into()),
    };
    l.record_root_key_ids("openai", "bbbb1111", &ids, 30)
        .unwrap();
    l.restore_root_key(&old).unwrap();
    l.forget_root_key_ids("openai", "bbbb1111").unwrap();
    assert_eq!(l.root_key("openai").unwrap().unwrap(), old);
    assert_eq!(l.root_key_ids("openai", "bbbb1111").unwrap(), None);
}

#[test]
fn rotations_notices_and_admin_keys_round_trip() {
    let l = Ledger::open_in_memory().unwrap();
    let row = RotationRow {
        at: 5,
        target: "openai".into(),
        method: "admin".into(),
        ok: false,
        step: "verify".into(),
        message: "rejected".into(),
        old_fingerprint: Some("aaaa0000".into()),
        new_fingerprint: None,
        leftover_key_id: Some("key_x".into()),
    };
    l.record_rotation(&row).unwrap();
    assert_eq!(l.rotations(10).unwrap(), vec![row]);
    assert_eq!(l.notice_at("n").unwrap(), None);
    l.set_notice("n", 7).unwrap();
    l.set_notice("n", 8).unwrap();
    assert_eq!(l.notice_at("n").unwrap(), Some(8));
    l.record_admin_key("openai", "cccc2222", 1).unwrap();
    l.record_admin_key("openai", "dddd3333", 2).unwrap();
    let admin = l.admin_key("openai").unwrap().unwrap();
    assert_eq!((admin.added_at, admin.rotated_at), (1, Some(2)));
    // Admin keys never show up as root keys (the proxy loads every root key).
    assert!(l.root_keys().unwrap().is_empty());
}

#[test]
fn watch_generation_moves_only_with_watched_tables() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.sqlite3");
    let l = Ledger::open(&path).unwrap();
    let g0 = l.watch_generation().unwrap();
    // Request rows and events (the writer's traffic) leave it alone.
    let w = writer::Writer::start(&path).unwrap();
    w.handle().row(writer::RequestRow {
        provider: "openai".into(),
        status: 200,
        ..Default::default()
    });
    w.handle().event(1, None, None, "denial", "first".into());
    w.finish();
    assert_eq!(l.log(&query::LogFilter::default()).unwrap().len(), 1);
    assert_eq!(l.watch_generation().unwrap(), g0);
    let mut steps = Vec::new();
    l.record_root_key("openai", "aaaa0000", 10).unwrap();
    steps.push(l.watch_generation().unwrap());
    l.record_root_key("openai", "bbbb1111", 20).unwrap();
    steps.push(l.watch_generation().unwrap());
    l.revoke("00112233445566778899aabbccddeeff", None, 30)
        .unwrap();
    steps.push(l.watch_generation().unwrap());
    l.insert_mint("kid1", 40).unwrap();
    steps.push(l.watch_generation().unwrap());
    l.delete_mint("kid1").unwrap();
    steps.push(l.watch_generation().unwrap());
    l.remove_root_key("openai").unwrap();
    steps.push(l.watch_generation().unwrap());
    let mut last = g0;
    for g in steps {
        assert!(g > last, "generation did not move: {last} then {g}");
        last = g;
    }
}

#[test]
fn fingerprint_is_8_hex() {
    assert_eq!(fingerprint("sk-test-123").len(), 8);
    assert_ne!(fingerprint("a"), fingerprint("b"));
}

/// A key is recorded only while the mint key that signed it is current: one signed just before
/// `till rotate --mint` retired that mint key would be printed dead (or to die with the grace).
#[test]
fn a_key_is_recorded_only_under_a_current_mint_key() {
    let l = Ledger::open_in_memory().unwrap();
    let key = |binding: &str, kid: &str| KeyMeta {
        binding: binding.into(),
        name: None,
        kid: kid.into(),
        scope: "--scope openai".into(),
        body: "{}".into(),
        created_at: 100,
        expires_at: 10_000,
        revoked_at: None,
    };
    // No such mint key at all.
    assert!(!l.insert_key(&key("b0", "kid-a")).unwrap());
    l.insert_mint("kid-a", 100).unwrap();
    assert!(l.insert_key(&key("b1", "kid-a")).unwrap());
    l.insert_mint("kid-b", 200).unwrap();
    l.retire_mints("kid-b", 200, 300).unwrap();
    assert!(!l.insert_key(&key("b2", "kid-a")).unwrap());
    assert!(l.insert_key(&key("b3", "kid-b")).unwrap());
    let recorded: Vec<String> = l
        .conn()
        .prepare("SELECT binding FROM keys ORDER BY binding")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(recorded, ["b1", "b3"]);
}
