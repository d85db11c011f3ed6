//! KV semantics of `k8s datastore` through the etcd-client crate, against
//! the real binary: revisions, Range options, Txn, compaction, concurrency.

mod common;

use std::collections::HashSet;

use common::{bounded, current_rev, expect_grpc_err, Datastore};
use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, DeleteOptions, GetOptions, KeyValue, PutOptions,
    SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse,
};

async fn store() -> (tempfile::TempDir, Datastore, Client) {
    let dir = tempfile::tempdir().unwrap();
    let ds = Datastore::start(dir.path()).await;
    let client = ds.client().await;
    (dir, ds, client)
}

fn keys(kvs: &[KeyValue]) -> Vec<String> {
    kvs.iter().map(|kv| String::from_utf8_lossy(kv.key()).into_owned()).collect()
}

fn values(kvs: &[KeyValue]) -> Vec<String> {
    kvs.iter().map(|kv| String::from_utf8_lossy(kv.value()).into_owned()).collect()
}

async fn put_rev(c: &mut Client, k: &str, v: &str) -> i64 {
    c.put(k, v, None).await.unwrap().header().unwrap().revision()
}

/// etcd starts a new store at revision 1 (mvcc's currentRev = 1), so the
/// first write gets revision 2.
#[tokio::test]
async fn fresh_store_is_at_revision_1() {
    bounded(30, "fresh store", async {
        let (_dir, _ds, mut c) = store().await;
        let got = c.get("nothing", None).await.unwrap();
        assert_eq!(got.header().unwrap().revision(), 1, "header revision of a fresh store");
        assert_eq!(put_rev(&mut c, "first", "v").await, 2, "revision of the first write");
    })
    .await
}

#[tokio::test]
async fn revisions_versions_and_recreate() {
    bounded(30, "revisions", async {
        let (_dir, _ds, mut c) = store().await;
        let base = current_rev(&mut c).await;

        // One counter across keys.
        let r1 = put_rev(&mut c, "k1", "a").await;
        let r2 = put_rev(&mut c, "k2", "b").await;
        let r3 = put_rev(&mut c, "k1", "c").await;
        assert_eq!((r1, r2, r3), (base + 1, base + 2, base + 3));

        let got = c.get("k1", None).await.unwrap();
        assert_eq!(got.header().unwrap().revision(), r3, "read header carries the current revision");
        let kv = &got.kvs()[0];
        assert_eq!((kv.create_revision(), kv.mod_revision(), kv.version()), (r1, r3, 2));
        assert_eq!(kv.value(), b"c");
        let kv2 = c.get("k2", None).await.unwrap().kvs()[0].clone();
        assert_eq!((kv2.create_revision(), kv2.mod_revision(), kv2.version()), (r2, r2, 1));

        // Put with prev_kv returns what was there.
        let resp = c.put("k2", "b2", Some(PutOptions::new().with_prev_key())).await.unwrap();
        let r4 = resp.header().unwrap().revision();
        assert_eq!(r4, r3 + 1);
        let prev = resp.prev_key().expect("prev_kv");
        assert_eq!((prev.value(), prev.mod_revision(), prev.version()), (&b"b"[..], r2, 1));

        // Delete, then re-create: version and create revision start over.
        let del = c.delete("k1", Some(DeleteOptions::new().with_prev_key())).await.unwrap();
        let r5 = del.header().unwrap().revision();
        assert_eq!((del.deleted(), r5), (1, r4 + 1));
        assert_eq!(del.prev_kvs()[0].value(), b"c");
        assert!(c.get("k1", None).await.unwrap().kvs().is_empty());
        let r6 = put_rev(&mut c, "k1", "again").await;
        assert_eq!(r6, r5 + 1);
        let kv = c.get("k1", None).await.unwrap().kvs()[0].clone();
        assert_eq!((kv.create_revision(), kv.mod_revision(), kv.version()), (r6, r6, 1));

        // A delete that matches nothing takes no revision.
        let del = c.delete("no-such-key", None).await.unwrap();
        assert_eq!(del.deleted(), 0);
        assert_eq!(del.header().unwrap().revision(), r6);
        assert_eq!(current_rev(&mut c).await, r6);

        // ignore_value keeps the value; on a missing key it is an error.
        let r7 = c.put("k1", "", Some(PutOptions::new().with_ignore_value())).await.unwrap().header().unwrap().revision();
        let kv = c.get("k1", None).await.unwrap().kvs()[0].clone();
        assert_eq!((kv.value(), kv.mod_revision(), kv.version()), (&b"again"[..], r7, 2));
        expect_grpc_err(c.put("missing", "", Some(PutOptions::new().with_ignore_value())).await, "etcdserver: key not found");

        // Range delete takes one revision for all the keys it removes.
        put_rev(&mut c, "d/1", "x").await;
        put_rev(&mut c, "d/2", "x").await;
        let r = put_rev(&mut c, "d/3", "x").await;
        let del = c.delete("d/", Some(DeleteOptions::new().with_prefix())).await.unwrap();
        assert_eq!((del.deleted(), del.header().unwrap().revision()), (3, r + 1));
    })
    .await
}

/// Writes the fixture used by the range tests under `s/` and returns the
/// revision before it. Final state (revision base+k is the k-th write):
///   s/a: create 2, mod 6,  version 2, value "4"
///   s/b: create 4, mod 4,  version 1, value "1"
///   s/c: create 1, mod 10, version 3, value "9"
///   s/d: create 3, mod 9,  version 4, value "2"
async fn sort_fixture(c: &mut Client) -> i64 {
    let base = current_rev(c).await;
    let writes = [
        ("s/c", "3"), ("s/a", "5"), ("s/d", "x"), ("s/b", "1"), ("s/d", "y"),
        ("s/a", "4"), ("s/d", "z"), ("s/c", "0"), ("s/d", "2"), ("s/c", "9"),
    ];
    for (i, (k, v)) in writes.iter().enumerate() {
        assert_eq!(put_rev(c, k, v).await, base + 1 + i as i64);
    }
    // Something outside the prefix on both sides.
    c.put("r", "outside", None).await.unwrap();
    c.put("t", "outside", None).await.unwrap();
    base
}

#[tokio::test]
async fn range_limit_count_keys_only_count_only() {
    bounded(30, "range", async {
        let (_dir, _ds, mut c) = store().await;
        sort_fixture(&mut c).await;
        let prefix = || GetOptions::new().with_prefix();

        let all = c.get("s/", Some(prefix())).await.unwrap();
        assert_eq!(keys(all.kvs()), ["s/a", "s/b", "s/c", "s/d"]);
        assert_eq!((all.count(), all.more()), (4, false));

        let lim = c.get("s/", Some(prefix().with_limit(2))).await.unwrap();
        assert_eq!(keys(lim.kvs()), ["s/a", "s/b"]);
        assert_eq!((lim.count(), lim.more()), (4, true), "count is the whole range, more says there is more");
        let exact = c.get("s/", Some(prefix().with_limit(4))).await.unwrap();
        assert_eq!((exact.kvs().len(), exact.count(), exact.more()), (4, 4, false));
        let over = c.get("s/", Some(prefix().with_limit(10))).await.unwrap();
        assert_eq!((over.kvs().len(), over.count(), over.more()), (4, 4, false));

        // Explicit [start, end) range and from-key.
        let span = c.get("s/b", Some(GetOptions::new().with_range("s/d"))).await.unwrap();
        assert_eq!(keys(span.kvs()), ["s/b", "s/c"]);
        let from = c.get("s/c", Some(GetOptions::new().with_from_key())).await.unwrap();
        assert_eq!(keys(from.kvs()), ["s/c", "s/d", "t"]);
        let every = c.get("", Some(GetOptions::new().with_all_keys())).await.unwrap();
        assert_eq!(keys(every.kvs()), ["r", "s/a", "s/b", "s/c", "s/d", "t"]);

        let ko = c.get("s/", Some(prefix().with_keys_only())).await.unwrap();
        assert_eq!(keys(ko.kvs()), ["s/a", "s/b", "s/c", "s/d"]);
        assert!(ko.kvs().iter().all(|kv| kv.value().is_empty()), "keys_only returns no values");
        assert!(ko.kvs().iter().all(|kv| kv.mod_revision() > 0 && kv.version() > 0));

        let co = c.get("s/", Some(prefix().with_count_only())).await.unwrap();
        assert!(co.kvs().is_empty(), "count_only returns no kvs");
        assert_eq!(co.count(), 4);
        let co_lim = c.get("s/", Some(prefix().with_count_only().with_limit(1))).await.unwrap();
        assert_eq!(co_lim.count(), 4);

        // Empty range (end <= start) is empty, not an error.
        let empty = c.get("s/d", Some(GetOptions::new().with_range("s/a"))).await.unwrap();
        assert_eq!((empty.kvs().len(), empty.count()), (0, 0));
    })
    .await
}

#[tokio::test]
async fn range_sort_orders() {
    bounded(30, "sort", async {
        let (_dir, _ds, mut c) = store().await;
        sort_fixture(&mut c).await;
        let cases: &[(SortTarget, SortOrder, [&str; 4])] = &[
            (SortTarget::Key, SortOrder::Descend, ["s/d", "s/c", "s/b", "s/a"]),
            (SortTarget::Key, SortOrder::Ascend, ["s/a", "s/b", "s/c", "s/d"]),
            (SortTarget::Version, SortOrder::Ascend, ["s/b", "s/a", "s/c", "s/d"]),
            (SortTarget::Version, SortOrder::Descend, ["s/d", "s/c", "s/a", "s/b"]),
            // etcd sorts ascending when a non-key target has no order.
            (SortTarget::Version, SortOrder::None, ["s/b", "s/a", "s/c", "s/d"]),
            (SortTarget::Create, SortOrder::Ascend, ["s/c", "s/a", "s/d", "s/b"]),
            (SortTarget::Create, SortOrder::Descend, ["s/b", "s/d", "s/a", "s/c"]),
            (SortTarget::Mod, SortOrder::Ascend, ["s/b", "s/a", "s/d", "s/c"]),
            (SortTarget::Mod, SortOrder::Descend, ["s/c", "s/d", "s/a", "s/b"]),
            (SortTarget::Value, SortOrder::Ascend, ["s/b", "s/d", "s/a", "s/c"]),
            (SortTarget::Value, SortOrder::Descend, ["s/c", "s/a", "s/d", "s/b"]),
        ];
        for (target, order, want) in cases {
            let opts = GetOptions::new().with_prefix().with_sort(*target, *order);
            let got = c.get("s/", Some(opts)).await.unwrap();
            assert_eq!(keys(got.kvs()), want, "sort {target:?} {order:?}");
        }
        // Sorting happens before the limit.
        let opts = GetOptions::new().with_prefix().with_sort(SortTarget::Mod, SortOrder::Descend).with_limit(2);
        let got = c.get("s/", Some(opts)).await.unwrap();
        assert_eq!(keys(got.kvs()), ["s/c", "s/d"]);
        assert_eq!((got.count(), got.more()), (4, true));
        assert_eq!(values(got.kvs()), ["9", "2"]);
    })
    .await
}

#[tokio::test]
async fn range_revision_filters() {
    bounded(30, "filters", async {
        let (_dir, _ds, mut c) = store().await;
        let b = sort_fixture(&mut c).await;
        let q = |o: GetOptions| o.with_prefix();
        let get = |c: &mut Client, o: GetOptions| {
            let mut c = c.clone();
            async move { c.get("s/", Some(o)).await.unwrap() }
        };
        assert_eq!(keys(get(&mut c, q(GetOptions::new().with_min_mod_revision(b + 6))).await.kvs()), ["s/a", "s/c", "s/d"]);
        assert_eq!(keys(get(&mut c, q(GetOptions::new().with_max_mod_revision(b + 6))).await.kvs()), ["s/a", "s/b"]);
        assert_eq!(keys(get(&mut c, q(GetOptions::new().with_min_create_revision(b + 3))).await.kvs()), ["s/b", "s/d"]);
        assert_eq!(keys(get(&mut c, q(GetOptions::new().with_max_create_revision(b + 2))).await.kvs()), ["s/a", "s/c"]);
        let both = q(GetOptions::new().with_min_mod_revision(b + 5).with_max_mod_revision(b + 9));
        assert_eq!(keys(get(&mut c, both).await.kvs()), ["s/a", "s/d"]);
        // Filters apply before the limit; count is still the whole range.
        let lim = get(&mut c, q(GetOptions::new().with_min_mod_revision(b + 6).with_limit(2))).await;
        assert_eq!(keys(lim.kvs()), ["s/a", "s/c"]);
        assert!(lim.more());
        assert_eq!(lim.count(), 4);
    })
    .await
}

#[tokio::test]
async fn range_reads_the_past() {
    bounded(30, "past reads", async {
        let (_dir, _ds, mut c) = store().await;
        let b = sort_fixture(&mut c).await;
        let at = |rev: i64| GetOptions::new().with_prefix().with_revision(rev);

        let r1 = c.get("s/", Some(at(b + 1))).await.unwrap();
        assert_eq!(keys(r1.kvs()), ["s/c"]);
        assert_eq!(values(r1.kvs()), ["3"]);
        let r3 = c.get("s/", Some(at(b + 3))).await.unwrap();
        assert_eq!(keys(r3.kvs()), ["s/a", "s/c", "s/d"]);
        assert_eq!(r3.count(), 3);
        let r5 = c.get("s/", Some(at(b + 5))).await.unwrap();
        assert_eq!(keys(r5.kvs()), ["s/a", "s/b", "s/c", "s/d"]);
        assert_eq!(values(r5.kvs()), ["5", "1", "3", "y"]);
        let d = &r5.kvs()[3];
        assert_eq!((d.create_revision(), d.mod_revision(), d.version()), (b + 3, b + 5, 2));

        // A past read with limit and count.
        let lim = c.get("s/", Some(at(b + 5).with_limit(1))).await.unwrap();
        assert_eq!((keys(lim.kvs()), lim.count(), lim.more()), (vec!["s/a".to_string()], 4, true));
        let cnt = c.get("s/", Some(at(b + 3).with_count_only())).await.unwrap();
        assert_eq!(cnt.count(), 3);

        // Deleted keys are visible before the delete, not after; a re-created
        // key shows its old life in the past.
        let del_rev = c.delete("s/b", None).await.unwrap().header().unwrap().revision();
        let now = c.get("s/", Some(GetOptions::new().with_prefix())).await.unwrap();
        assert_eq!(keys(now.kvs()), ["s/a", "s/c", "s/d"]);
        let before = c.get("s/b", Some(GetOptions::new().with_revision(del_rev - 1))).await.unwrap();
        assert_eq!(values(before.kvs()), ["1"]);
        let at_del = c.get("s/b", Some(GetOptions::new().with_revision(del_rev))).await.unwrap();
        assert!(at_del.kvs().is_empty());
        let re = put_rev(&mut c, "s/b", "new").await;
        let old = c.get("s/b", Some(GetOptions::new().with_revision(del_rev - 1))).await.unwrap();
        assert_eq!((old.kvs()[0].value(), old.kvs()[0].create_revision()), (&b"1"[..], b + 4));
        let cur = c.get("s/b", None).await.unwrap();
        assert_eq!((cur.kvs()[0].create_revision(), cur.kvs()[0].version()), (re, 1));

        // The header of a past read is still the current revision (as etcd).
        assert_eq!(r1.header().unwrap().revision(), b + 12);
        // Keys-only and sort on a past revision.
        let sorted = c
            .get("s/", Some(at(b + 10).with_sort(SortTarget::Version, SortOrder::Descend).with_keys_only()))
            .await
            .unwrap();
        assert_eq!(keys(sorted.kvs()), ["s/d", "s/c", "s/a", "s/b"]);
        assert!(sorted.kvs().iter().all(|kv| kv.value().is_empty()));

        expect_grpc_err(
            c.get("s/", Some(GetOptions::new().with_revision(re + 100))).await,
            "etcdserver: mvcc: required revision is a future revision",
        );
    })
    .await
}

fn txn_put_rev(r: &TxnOpResponse) -> i64 {
    match r {
        TxnOpResponse::Put(p) => p.header().map_or(-1, |h| h.revision()),
        other => panic!("expected a put response, got {other:?}"),
    }
}

/// The API server's paginated LIST: pages of `limit` keys, each starting
/// after the last key of the previous one, all at the first page's
/// revision. Checked against a model at every revision of a history of
/// puts, deletes and re-creates (a deterministic pseudo-random walk).
#[tokio::test]
async fn pages_at_every_past_revision_match_a_model() {
    bounded(60, "paged ranges", async {
        let (_dir, _ds, mut c) = store().await;
        let mut model = std::collections::BTreeMap::new();
        let mut history = Vec::new();
        let mut seed: u64 = 7;
        for i in 0..240 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let key = format!("p/{:02}", (seed >> 33) % 40);
            let rev = if (seed >> 20) % 4 == 0 {
                let r = c.delete(key.as_str(), None).await.unwrap().header().unwrap().revision();
                model.remove(&key);
                r
            } else {
                let value = format!("v{i}");
                let r = put_rev(&mut c, &key, &value).await;
                model.insert(key, value);
                r
            };
            history.push((rev, model.clone()));
        }
        for (rev, want) in history.iter().step_by(3) {
            let mut got = Vec::new();
            let mut start = "p/".to_string();
            loop {
                let page = GetOptions::new().with_range("p0").with_revision(*rev).with_limit(7);
                let resp = c.get(start.as_str(), Some(page)).await.unwrap();
                let remaining = want.range(start.clone()..).count() as i64;
                assert_eq!(resp.count(), remaining, "count at rev {rev} from {start}");
                got.extend(keys(resp.kvs()).into_iter().zip(values(resp.kvs())));
                assert_eq!(resp.more(), remaining > 7, "more at rev {rev} from {start}");
                if !resp.more() {
                    break;
                }
                start = format!("{}\0", got.last().unwrap().0);
            }
            let want: Vec<(String, String)> = want.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            assert_eq!(got, want, "pages at revision {rev}");
        }
    })
    .await;
}

#[tokio::test]
async fn txn_compare_targets_and_results() {
    bounded(30, "txn compares", async {
        let (_dir, _ds, mut c) = store().await;
        let lease = c.lease_grant(60, None).await.unwrap().id();
        let cr = put_rev(&mut c, "t", "m").await;
        let mr = c.put("t", "m", Some(PutOptions::new().with_lease(lease))).await.unwrap().header().unwrap().revision();
        // t: version 2, create cr, mod mr, value "m", lease `lease`.

        use CompareOp::*;
        let cases: Vec<(Compare, bool)> = vec![
            (Compare::version("t", Equal, 2), true),
            (Compare::version("t", Equal, 1), false),
            (Compare::version("t", Greater, 1), true),
            (Compare::version("t", Greater, 2), false),
            (Compare::version("t", Less, 3), true),
            (Compare::version("t", Less, 2), false),
            (Compare::version("t", NotEqual, 1), true),
            (Compare::version("t", NotEqual, 2), false),
            (Compare::create_revision("t", Equal, cr), true),
            (Compare::create_revision("t", Greater, cr), false),
            (Compare::create_revision("t", Less, cr + 1), true),
            (Compare::create_revision("t", NotEqual, cr), false),
            (Compare::mod_revision("t", Equal, mr), true),
            (Compare::mod_revision("t", Equal, cr), false),
            (Compare::mod_revision("t", Greater, cr), true),
            (Compare::mod_revision("t", Less, mr), false),
            (Compare::mod_revision("t", NotEqual, cr), true),
            (Compare::value("t", Equal, "m"), true),
            (Compare::value("t", Equal, "n"), false),
            (Compare::value("t", Greater, "a"), true),
            (Compare::value("t", Greater, "z"), false),
            (Compare::value("t", Less, "z"), true),
            (Compare::value("t", Less, "m"), false),
            (Compare::value("t", NotEqual, "n"), true),
            (Compare::value("t", NotEqual, "m"), false),
            (Compare::lease("t", Equal, lease), true),
            (Compare::lease("t", Equal, 0), false),
            (Compare::lease("t", Greater, 0), true),
            (Compare::lease("t", Less, lease), false),
            (Compare::lease("t", NotEqual, lease), false),
            // A missing key compares as zeros, except by value.
            (Compare::version("absent", Equal, 0), true),
            (Compare::create_revision("absent", Equal, 0), true),
            (Compare::mod_revision("absent", Less, 1), true),
            (Compare::lease("absent", Equal, 0), true),
            (Compare::value("absent", Equal, ""), false),
            (Compare::value("absent", NotEqual, "x"), false),
        ];
        for (i, (cmp, want)) in cases.into_iter().enumerate() {
            let dbg = format!("{cmp:?}");
            let txn = Txn::new()
                .when([cmp])
                .and_then([TxnOp::get("t", None)])
                .or_else([TxnOp::get("absent", None)]);
            let resp = c.txn(txn).await.unwrap();
            assert_eq!(resp.succeeded(), want, "case {i}: {dbg}");
            // The branch that ran answered.
            match &resp.op_responses()[0] {
                TxnOpResponse::Get(g) => assert_eq!(g.kvs().len(), usize::from(want), "case {i}: branch output"),
                other => panic!("case {i}: {other:?}"),
            }
        }

        // Several compares: all must hold.
        let txn = Txn::new().when([Compare::version("t", Equal, 2), Compare::value("t", Equal, "x")]);
        assert!(!c.txn(txn).await.unwrap().succeeded());
        // A compare over a range holds only when every key in it holds.
        put_rev(&mut c, "cr/1", "a").await;
        put_rev(&mut c, "cr/2", "b").await;
        let all_exist = Txn::new().when([Compare::version("cr/", Greater, 0).with_prefix()]);
        assert!(c.txn(all_exist).await.unwrap().succeeded());
        let all_a = Txn::new().when([Compare::value("cr/", Equal, "a").with_prefix()]);
        assert!(!c.txn(all_a).await.unwrap().succeeded());
    })
    .await
}

#[tokio::test]
async fn txn_revisions_nesting_and_errors() {
    use CompareOp::Equal;
    bounded(30, "txn", async {
        let (_dir, _ds, mut c) = store().await;
        let base = put_rev(&mut c, "x", "0").await;

        // Two keys written by one txn share one revision.
        let resp = c
            .txn(Txn::new().and_then([TxnOp::put("a", "1", None), TxnOp::put("b", "2", None), TxnOp::get("a", None)]))
            .await
            .unwrap();
        let rev = resp.header().unwrap().revision();
        assert_eq!(rev, base + 1, "a txn takes one revision");
        let ops = resp.op_responses();
        assert_eq!(txn_put_rev(&ops[0]), rev);
        // Reads inside the txn see its earlier writes.
        match &ops[2] {
            TxnOpResponse::Get(g) => {
                assert_eq!(values(g.kvs()), ["1"]);
                assert_eq!(g.kvs()[0].mod_revision(), rev);
            }
            other => panic!("{other:?}"),
        }
        let got = c.get("", Some(GetOptions::new().with_all_keys())).await.unwrap();
        let revs: Vec<i64> = got.kvs().iter().filter(|kv| kv.key() != b"x").map(|kv| kv.mod_revision()).collect();
        assert_eq!(revs, [rev, rev]);

        // A read-only txn takes no revision; neither does one whose taken
        // branch only reads.
        let ro = c.txn(Txn::new().and_then([TxnOp::get("a", None)])).await.unwrap();
        assert_eq!(ro.header().unwrap().revision(), rev);
        let failed = c
            .txn(Txn::new().when([Compare::value("a", Equal, "nope")]).and_then([TxnOp::put("a", "never", None)]).or_else([TxnOp::get("a", None)]))
            .await
            .unwrap();
        assert!(!failed.succeeded());
        assert_eq!(failed.header().unwrap().revision(), rev);
        let empty = c.txn(Txn::new()).await.unwrap();
        assert!(empty.succeeded());
        assert_eq!(current_rev(&mut c).await, rev);
        assert_eq!(values(c.get("a", None).await.unwrap().kvs()), ["1"]);

        // Failure branch writes.
        let fb = c
            .txn(Txn::new().when([Compare::version("a", Equal, 5)]).and_then([TxnOp::put("a", "s", None)]).or_else([TxnOp::put("a", "f", None), TxnOp::delete("b", None)]))
            .await
            .unwrap();
        assert!(!fb.succeeded());
        let rev2 = fb.header().unwrap().revision();
        assert_eq!(rev2, rev + 1);
        assert_eq!(values(c.get("a", None).await.unwrap().kvs()), ["f"]);
        assert!(c.get("b", None).await.unwrap().kvs().is_empty());

        // Nested txn: the inner compare sees the outer writes; all in one revision.
        let inner = Txn::new()
            .when([Compare::value("n1", Equal, "outer")])
            .and_then([TxnOp::put("n2", "inner-ok", None)])
            .or_else([TxnOp::put("n2", "inner-failed", None)]);
        let outer = Txn::new()
            .when([Compare::version("n1", Equal, 0)])
            .and_then([TxnOp::put("n1", "outer", None), TxnOp::txn(inner)]);
        let nested = c.txn(outer).await.unwrap();
        assert!(nested.succeeded());
        let rev3 = nested.header().unwrap().revision();
        assert_eq!(rev3, rev2 + 1);
        match &nested.op_responses()[1] {
            TxnOpResponse::Txn(t) => {
                assert!(t.succeeded(), "inner compare must see the outer put");
                assert_eq!(t.header().unwrap().revision(), rev3);
            }
            other => panic!("{other:?}"),
        }
        let n = c.get("n", Some(GetOptions::new().with_prefix())).await.unwrap();
        assert_eq!(values(n.kvs()), ["outer", "inner-ok"]);
        assert!(n.kvs().iter().all(|kv| kv.mod_revision() == rev3));

        // Duplicate keys are refused and nothing is written.
        let dup = c.txn(Txn::new().and_then([TxnOp::put("dup", "1", None), TxnOp::put("dup", "2", None)])).await;
        expect_grpc_err(dup, "etcdserver: duplicate key given in txn request");
        let dup_del = c
            .txn(Txn::new().and_then([TxnOp::delete("dd/", Some(DeleteOptions::new().with_prefix())), TxnOp::put("dd/x", "1", None)]))
            .await;
        expect_grpc_err(dup_del, "etcdserver: duplicate key given in txn request");
        let nested_dup = c
            .txn(Txn::new().and_then([TxnOp::put("nd", "1", None), TxnOp::txn(Txn::new().and_then([TxnOp::put("nd", "2", None)]))]))
            .await;
        expect_grpc_err(nested_dup, "etcdserver: duplicate key given in txn request");
        // The same key in the two branches is fine.
        let branches = c
            .txn(Txn::new().when([Compare::version("br", Equal, 0)]).and_then([TxnOp::put("br", "s", None)]).or_else([TxnOp::put("br", "f", None)]))
            .await
            .unwrap();
        assert!(branches.succeeded());
        assert!(c.get("dup", None).await.unwrap().kvs().is_empty());
        assert!(c.get("dd/x", None).await.unwrap().kvs().is_empty());
        assert!(c.get("nd", None).await.unwrap().kvs().is_empty());

        // A txn whose second op fails leaves no trace of the first.
        let before = current_rev(&mut c).await;
        let bad = c
            .txn(Txn::new().and_then([TxnOp::put("atomic", "1", None), TxnOp::put("atomic2", "2", Some(PutOptions::new().with_lease(0x7777)))]))
            .await;
        expect_grpc_err(bad, "etcdserver: requested lease not found");
        assert!(c.get("atomic", None).await.unwrap().kvs().is_empty(), "a failed txn must not apply its first put");
        assert_eq!(current_rev(&mut c).await, before);

        // etcd's default --max-txn-ops is 128.
        let many: Vec<TxnOp> = (0..129).map(|i| TxnOp::put(format!("many/{i}"), "v", None)).collect();
        expect_grpc_err(c.txn(Txn::new().and_then(many)).await, "etcdserver: too many operations in txn request");
        let ok: Vec<TxnOp> = (0..128).map(|i| TxnOp::put(format!("many/{i}"), "v", None)).collect();
        let r = c.txn(Txn::new().and_then(ok)).await.unwrap().header().unwrap().revision();
        assert_eq!(r, before + 1);
        let cnt = c.get("many/", Some(GetOptions::new().with_prefix().with_count_only())).await.unwrap();
        assert_eq!(cnt.count(), 128);
    })
    .await
}

#[tokio::test]
async fn compaction() {
    bounded(30, "compaction", async {
        let (_dir, _ds, mut c) = store().await;
        let r1 = put_rev(&mut c, "c", "1").await;
        let r2 = put_rev(&mut c, "c", "2").await;
        let r3 = put_rev(&mut c, "other", "x").await;
        let r4 = c.delete("other", None).await.unwrap().header().unwrap().revision();
        let r5 = put_rev(&mut c, "c", "3").await;
        put_rev(&mut c, "gone", "g").await;
        let r7 = c.delete("gone", None).await.unwrap().header().unwrap().revision();
        let r8 = put_rev(&mut c, "late", "l").await;

        expect_grpc_err(c.compact(r8 + 10, None).await, "etcdserver: mvcc: required revision is a future revision");
        let resp = c.compact(r4, Some(CompactionOptions::new().with_physical())).await.unwrap();
        assert_eq!(resp.header().unwrap().revision(), r8, "compaction takes no revision");

        for rev in [r1, r2, r3] {
            expect_grpc_err(
                c.get("c", Some(GetOptions::new().with_revision(rev))).await,
                "etcdserver: mvcc: required revision has been compacted",
            );
        }
        // The compacted revision itself and later ones still read right.
        let at4 = c.get("", Some(GetOptions::new().with_all_keys().with_revision(r4))).await.unwrap();
        assert_eq!(keys(at4.kvs()), ["c"]);
        assert_eq!(values(at4.kvs()), ["2"]);
        assert_eq!((at4.kvs()[0].create_revision(), at4.kvs()[0].mod_revision(), at4.kvs()[0].version()), (r1, r2, 2));
        let at5 = c.get("c", Some(GetOptions::new().with_revision(r5))).await.unwrap();
        assert_eq!(values(at5.kvs()), ["3"]);
        assert_eq!(at5.kvs()[0].version(), 3, "version survives compaction");
        let at6 = c.get("gone", Some(GetOptions::new().with_revision(r7 - 1))).await.unwrap();
        assert_eq!(values(at6.kvs()), ["g"]);

        // Compacting again at or below the compacted revision is an error.
        expect_grpc_err(c.compact(r4, None).await, "etcdserver: mvcc: required revision has been compacted");
        expect_grpc_err(c.compact(r2, None).await, "etcdserver: mvcc: required revision has been compacted");

        // Compact to the current revision: the head stays readable.
        c.compact(r8, Some(CompactionOptions::new().with_physical())).await.unwrap();
        expect_grpc_err(
            c.get("c", Some(GetOptions::new().with_revision(r7))).await,
            "etcdserver: mvcc: required revision has been compacted",
        );
        let now = c.get("", Some(GetOptions::new().with_all_keys())).await.unwrap();
        assert_eq!(keys(now.kvs()), ["c", "late"]);
        let at8 = c.get("", Some(GetOptions::new().with_all_keys().with_revision(r8))).await.unwrap();
        assert_eq!(keys(at8.kvs()), ["c", "late"]);
        assert_eq!(at8.count(), 2);
        // Writes continue from the same counter.
        assert_eq!(put_rev(&mut c, "after", "a").await, r8 + 1);
        // A txn read at a compacted revision fails the same way.
        let t = c.txn(Txn::new().and_then([TxnOp::get("c", Some(GetOptions::new().with_revision(r2)))])).await;
        expect_grpc_err(t, "required revision has been compacted");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers() {
    bounded(60, "concurrent writers", async {
        let (_dir, ds, mut c) = store().await;
        const TASKS: usize = 16;
        const PUTS: usize = 200;
        let start = current_rev(&mut c).await;
        let mut clients = Vec::new();
        for _ in 0..4 {
            clients.push(ds.client().await);
        }
        let mut handles = Vec::new();
        for t in 0..TASKS {
            let mut client = clients[t % clients.len()].clone();
            handles.push(tokio::spawn(async move {
                let mut revs = Vec::with_capacity(PUTS);
                for i in 0..PUTS {
                    // Half the writes hit a shared key set, half fresh keys.
                    let key = if i % 2 == 0 { format!("cw/shared/{}", (i / 2) % 10) } else { format!("cw/{t}/{i}") };
                    let resp = client.put(key, format!("{t}-{i}"), None).await.expect("acknowledged put");
                    revs.push(resp.header().unwrap().revision());
                }
                revs
            }));
        }
        let mut all = Vec::new();
        for h in handles {
            let revs = h.await.unwrap();
            assert!(revs.windows(2).all(|w| w[0] < w[1]), "one client's sequential writes get increasing revisions");
            all.extend(revs);
        }
        let total = (TASKS * PUTS) as i64;
        assert_eq!(all.len() as i64, total);
        let unique: HashSet<i64> = all.iter().copied().collect();
        assert_eq!(unique.len() as i64, total, "every put got its own revision");
        all.sort_unstable();
        assert_eq!(all.first().copied(), Some(start + 1));
        assert_eq!(all.last().copied(), Some(start + total), "no gaps in the revisions");
        assert_eq!(current_rev(&mut c).await, start + total);
        let fresh = c.get("cw/", Some(GetOptions::new().with_prefix().with_count_only())).await.unwrap();
        assert_eq!(fresh.count(), (TASKS * PUTS / 2 + 10) as i64);
        // Each shared key has as many versions as writes it received.
        let shared = c.get("cw/shared/", Some(GetOptions::new().with_prefix())).await.unwrap();
        let versions: i64 = shared.kvs().iter().map(|kv| kv.version()).sum();
        assert_eq!(versions, (TASKS * PUTS / 2) as i64);
    })
    .await
}
