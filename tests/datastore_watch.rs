//! Watch semantics of `k8s datastore` through the etcd-client crate,
//! against the real binary.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{bounded, current_rev, Datastore, Launch};
use etcd_client::{
    Client, CompactionOptions, EventType, PutOptions, Txn, TxnOp, WatchFilterType, WatchOptions,
    WatchResponse, WatchStream,
};

async fn store_with(extra: &[&str]) -> (tempfile::TempDir, Datastore, Client) {
    let dir = tempfile::tempdir().unwrap();
    let launch = Launch { extra: extra.iter().map(|s| s.to_string()).collect(), ..Default::default() };
    let ds = Datastore::start_with(dir.path(), launch).await;
    let client = ds.client().await;
    (dir, ds, client)
}

async fn store() -> (tempfile::TempDir, Datastore, Client) {
    store_with(&[]).await
}

/// The next response on a stream, within `secs`. Checks etcd's invariant
/// that a response's header revision is at least that of its events (the
/// header is the store revision the response was made at).
async fn next(stream: &mut WatchStream, secs: u64) -> WatchResponse {
    let r = next_raw(stream, secs).await;
    if let Some(bad) = header_behind(&r) {
        panic!("{bad}");
    }
    r
}

/// Describes a response whose header revision is below its events'.
fn header_behind(r: &WatchResponse) -> Option<String> {
    let ev_rev = r.events().last()?.kv().unwrap().mod_revision();
    let header = r.header().map_or(0, |h| h.revision());
    (header < ev_rev).then(|| format!("watch response header revision {header} is below its event revision {ev_rev}"))
}

/// The next response on a stream, within `secs`, unchecked.
async fn next_raw(stream: &mut WatchStream, secs: u64) -> WatchResponse {
    match tokio::time::timeout(Duration::from_secs(secs), stream.message()).await {
        Ok(Ok(Some(r))) => r,
        Ok(Ok(None)) => panic!("watch stream ended"),
        Ok(Err(e)) => panic!("watch stream failed: {e:?}"),
        Err(_) => panic!("no watch response within {secs}s"),
    }
}

/// Asserts that nothing arrives on the stream for `ms` milliseconds.
async fn quiet(stream: &mut WatchStream, ms: u64, why: &str) {
    if let Ok(r) = tokio::time::timeout(Duration::from_millis(ms), stream.message()).await {
        panic!("{why}: expected no response, got {r:?}");
    }
}

/// An event flattened for comparisons.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Ev {
    put: bool,
    key: String,
    value: String,
    rev: i64,
    prev: Option<String>,
}

fn evs(resp: &WatchResponse) -> Vec<Ev> {
    resp.events()
        .iter()
        .map(|e| {
            let kv = e.kv().expect("event kv");
            Ev {
                put: e.event_type() == EventType::Put,
                key: String::from_utf8_lossy(kv.key()).into_owned(),
                value: String::from_utf8_lossy(kv.value()).into_owned(),
                rev: kv.mod_revision(),
                prev: e.prev_kv().map(|p| String::from_utf8_lossy(p.value()).into_owned()),
            }
        })
        .collect()
}

fn put(key: &str, value: &str, rev: i64) -> Ev {
    Ev { put: true, key: key.into(), value: value.into(), rev, prev: None }
}

fn del(key: &str, rev: i64) -> Ev {
    Ev { put: false, key: key.into(), value: String::new(), rev, prev: None }
}

/// Reads responses for `watch_id` until `n` events came (other watch ids
/// and empty responses are skipped).
async fn collect(stream: &mut WatchStream, watch_id: i64, n: usize, secs: u64) -> Vec<Ev> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut out = Vec::new();
    while out.len() < n {
        let left = deadline.saturating_duration_since(Instant::now()).as_secs().max(1);
        assert!(Instant::now() < deadline, "only {} of {n} events within {secs}s: {out:?}", out.len());
        let r = next(stream, left).await;
        assert!(!r.canceled(), "watch {} canceled unexpectedly: {r:?}", r.watch_id());
        if r.watch_id() == watch_id {
            out.extend(evs(&r));
        }
    }
    assert_eq!(out.len(), n, "more events than expected: {out:?}");
    out
}

async fn rev_of_put(c: &mut Client, k: &str, v: &str) -> i64 {
    c.put(k, v, None).await.unwrap().header().unwrap().revision()
}

#[tokio::test]
async fn many_watches_on_one_stream() {
    bounded(30, "many watches", async {
        let (_dir, _ds, mut c) = store().await;
        let (mut watcher, mut stream) = c.watch("w/0", None).await.unwrap();
        let mut ids = HashMap::new();
        ids.insert(watcher.watch_id(), "w/0".to_string());
        for i in 1..20 {
            watcher.watch(format!("w/{i}"), None).await.unwrap();
        }
        watcher.watch("w/", Some(WatchOptions::new().with_prefix())).await.unwrap();
        let mut prefix_id = None;
        for i in 1..=20 {
            let r = next(&mut stream, 5).await;
            assert!(r.created(), "expected a created response, got {r:?}");
            assert!(!r.canceled());
            if i < 20 {
                assert!(ids.insert(r.watch_id(), format!("w/{i}")).is_none(), "watch ids must be unique");
            } else {
                prefix_id = Some(r.watch_id());
            }
        }
        let prefix_id = prefix_id.unwrap();
        assert!(!ids.contains_key(&prefix_id), "watch ids must be unique");

        let mut revs = HashMap::new();
        for i in (0..20).rev() {
            revs.insert(format!("w/{i}"), rev_of_put(&mut c, &format!("w/{i}"), &format!("v{i}")).await);
        }
        rev_of_put(&mut c, "unwatched", "x").await;
        let mut seen: HashMap<i64, Vec<Ev>> = HashMap::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while seen.values().map(Vec::len).sum::<usize>() < 40 {
            assert!(Instant::now() < deadline, "not all events arrived: {seen:?}");
            let r = next(&mut stream, 5).await;
            seen.entry(r.watch_id()).or_default().extend(evs(&r));
        }
        for (id, key) in &ids {
            let got = seen.get(id).cloned().unwrap_or_default();
            assert_eq!(got, vec![put(key, &format!("v{}", &key[2..]), revs[key])], "watch {id} on {key}");
        }
        let all = &seen[&prefix_id];
        let want: Vec<i64> = (0..20).rev().map(|i| revs[&format!("w/{i}")]).collect();
        assert_eq!(all.iter().map(|e| e.rev).collect::<Vec<_>>(), want, "prefix watch sees all, in order");
        quiet(&mut stream, 300, "no more events").await;
    })
    .await
}

#[tokio::test]
async fn start_revision_replays_history_in_order() {
    bounded(30, "history replay", async {
        let (_dir, _ds, mut c) = store().await;
        let mut history = Vec::new();
        for i in 0..60 {
            let key = format!("h/{}", i % 7);
            if i % 5 == 4 {
                let r = c.delete(key.as_str(), None).await.unwrap();
                if r.deleted() == 1 {
                    history.push(del(&key, r.header().unwrap().revision()));
                }
            } else {
                let v = format!("v{i}");
                history.push(put(&key, &v, rev_of_put(&mut c, &key, &v).await));
            }
            rev_of_put(&mut c, &format!("other/{i}"), "noise").await;
        }
        let first = history[0].rev;

        // From the beginning: everything, in order, then live events.
        let (_w, mut s) = c.watch("h/", Some(WatchOptions::new().with_prefix().with_start_revision(first))).await.unwrap();
        let id = _w.watch_id();
        let got = collect(&mut s, id, history.len(), 10).await;
        assert_eq!(got, history);
        let live = rev_of_put(&mut c, "h/live", "now").await;
        assert_eq!(collect(&mut s, id, 1, 5).await, vec![put("h/live", "now", live)]);

        // From the middle: only what happened at or after it.
        let mid = history[history.len() / 2].rev;
        let (w2, mut s2) = c.watch("h/", Some(WatchOptions::new().with_prefix().with_start_revision(mid))).await.unwrap();
        let want: Vec<Ev> = history.iter().filter(|e| e.rev >= mid).cloned().chain([put("h/live", "now", live)]).collect();
        assert_eq!(collect(&mut s2, w2.watch_id(), want.len(), 10).await, want);
        quiet(&mut s2, 300, "replay sends nothing twice").await;
    })
    .await
}

#[tokio::test]
async fn replay_keeps_revisions_whole_and_in_order() {
    bounded(45, "large replay", async {
        let (_dir, _ds, mut c) = store().await;
        // 300 txns of 7 puts each: 2100 events; a revision must never be
        // split across responses (etcd splits only with `fragment`).
        let first = current_rev(&mut c).await + 1;
        for t in 0..300 {
            let ops: Vec<TxnOp> = (0..7).map(|k| TxnOp::put(format!("big/{k}"), format!("{t}"), None)).collect();
            c.txn(Txn::new().and_then(ops)).await.unwrap();
        }
        let last = current_rev(&mut c).await;
        assert_eq!(last - first + 1, 300);
        let (w, mut s) = c.watch("big/", Some(WatchOptions::new().with_prefix().with_start_revision(first))).await.unwrap();
        let mut per_response: Vec<Vec<i64>> = Vec::new();
        let mut n = 0;
        let deadline = Instant::now() + Duration::from_secs(30);
        while n < 2100 {
            assert!(Instant::now() < deadline, "only {n} of 2100 events");
            let r = next(&mut s, 10).await;
            assert_eq!(r.watch_id(), w.watch_id());
            let revs: Vec<i64> = r.events().iter().map(|e| e.kv().unwrap().mod_revision()).collect();
            n += revs.len();
            per_response.push(revs);
        }
        assert_eq!(n, 2100);
        let flat: Vec<i64> = per_response.iter().flatten().copied().collect();
        assert!(flat.windows(2).all(|w| w[0] <= w[1]), "events in revision order");
        let want: Vec<i64> = (first..=last).flat_map(|r| std::iter::repeat(r).take(7)).collect();
        assert_eq!(flat, want);
        for pair in per_response.windows(2) {
            if let (Some(a), Some(b)) = (pair[0].last(), pair[1].first()) {
                assert_ne!(a, b, "revision {a} was split across two watch responses");
            }
        }
    })
    .await
}

#[tokio::test]
async fn prefix_range_and_from_key_watches() {
    bounded(30, "range watches", async {
        let (_dir, _ds, mut c) = store().await;
        let (mut w, mut s) = c.watch("p/", Some(WatchOptions::new().with_prefix())).await.unwrap();
        let prefix_id = w.watch_id();
        w.watch("r/b", Some(WatchOptions::new().with_range("r/d"))).await.unwrap();
        let range_id = next(&mut s, 5).await.watch_id();
        w.watch("z", Some(WatchOptions::new().with_from_key())).await.unwrap();
        let from_id = next(&mut s, 5).await.watch_id();

        let mut revs = HashMap::new();
        for k in ["p", "p/1", "pq", "p/2/x", "q", "r/a", "r/b", "r/c", "r/cz", "r/d", "y", "z", "zz"] {
            revs.insert(k, rev_of_put(&mut c, k, "v").await);
        }
        let e = |k: &str| put(k, "v", revs[k]);
        // The stream is shared: read everything, then check per watcher.
        let mut seen: HashMap<i64, Vec<Ev>> = HashMap::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while seen.values().map(Vec::len).sum::<usize>() < 7 {
            assert!(Instant::now() < deadline, "{seen:?}");
            let r = next(&mut s, 5).await;
            seen.entry(r.watch_id()).or_default().extend(evs(&r));
        }
        assert_eq!(seen.get(&prefix_id).cloned().unwrap_or_default(), vec![e("p/1"), e("p/2/x")]);
        assert_eq!(seen.get(&range_id).cloned().unwrap_or_default(), vec![e("r/b"), e("r/c"), e("r/cz")]);
        assert_eq!(seen.get(&from_id).cloned().unwrap_or_default(), vec![e("z"), e("zz")]);
        quiet(&mut s, 300, "nothing outside the ranges").await;
    })
    .await
}

#[tokio::test]
async fn prev_kv_and_event_shapes() {
    bounded(30, "prev_kv", async {
        let (_dir, _ds, mut c) = store().await;
        let (w1, mut with_prev) = c.watch("k", Some(WatchOptions::new().with_prev_key())).await.unwrap();
        let (w2, mut without) = c.watch("k", None).await.unwrap();
        let r1 = rev_of_put(&mut c, "k", "1").await;
        let r2 = rev_of_put(&mut c, "k", "2").await;
        let r3 = c.delete("k", None).await.unwrap().header().unwrap().revision();
        let got = collect(&mut with_prev, w1.watch_id(), 3, 5).await;
        assert_eq!(
            got,
            vec![
                put("k", "1", r1),
                Ev { prev: Some("1".into()), ..put("k", "2", r2) },
                Ev { prev: Some("2".into()), ..del("k", r3) },
            ]
        );
        let plain = collect(&mut without, w2.watch_id(), 3, 5).await;
        assert_eq!(plain, vec![put("k", "1", r1), put("k", "2", r2), del("k", r3)]);

        // Full event details: versions, create revision, delete tombstone.
        let (w3, mut s3) = c.watch("k", Some(WatchOptions::new().with_prev_key().with_start_revision(r1))).await.unwrap();
        let mut events = Vec::new();
        while events.len() < 3 {
            let r = next(&mut s3, 5).await;
            assert_eq!(r.watch_id(), w3.watch_id());
            events.extend(r.events().iter().cloned());
        }
        let kv0 = events[0].kv().unwrap();
        assert_eq!((kv0.create_revision(), kv0.version()), (r1, 1));
        assert!(events[0].prev_kv().is_none(), "a created key has no prev_kv");
        let kv1 = events[1].kv().unwrap();
        assert_eq!((kv1.create_revision(), kv1.version()), (r1, 2));
        let prev1 = events[1].prev_kv().unwrap();
        assert_eq!((prev1.mod_revision(), prev1.version()), (r1, 1));
        assert_eq!(events[2].event_type(), EventType::Delete);
        let tomb = events[2].kv().unwrap();
        assert_eq!((tomb.key(), tomb.mod_revision(), tomb.version(), tomb.create_revision()), (&b"k"[..], r3, 0, 0));
        assert_eq!(events[2].prev_kv().unwrap().mod_revision(), r2);
    })
    .await
}

#[tokio::test]
async fn noput_and_nodelete_filters() {
    bounded(30, "filters", async {
        let (_dir, _ds, mut c) = store().await;
        let (wp, mut no_put) = c.watch("f/", Some(WatchOptions::new().with_prefix().with_filters([WatchFilterType::NoPut]))).await.unwrap();
        let (wd, mut no_del) = c.watch("f/", Some(WatchOptions::new().with_prefix().with_filters([WatchFilterType::NoDelete]))).await.unwrap();
        let p1 = rev_of_put(&mut c, "f/a", "1").await;
        let d1 = c.delete("f/a", None).await.unwrap().header().unwrap().revision();
        let p2 = rev_of_put(&mut c, "f/b", "2").await;
        let d2 = c.delete("f/b", None).await.unwrap().header().unwrap().revision();
        assert_eq!(collect(&mut no_put, wp.watch_id(), 2, 5).await, vec![del("f/a", d1), del("f/b", d2)]);
        assert_eq!(collect(&mut no_del, wd.watch_id(), 2, 5).await, vec![put("f/a", "1", p1), put("f/b", "2", p2)]);
        quiet(&mut no_put, 200, "NOPUT").await;
        quiet(&mut no_del, 200, "NODELETE").await;
    })
    .await
}

#[tokio::test]
async fn cancel_stops_one_watcher() {
    bounded(30, "cancel", async {
        let (_dir, _ds, mut c) = store().await;
        let (mut w, mut s) = c.watch("a", None).await.unwrap();
        let a_id = w.watch_id();
        w.watch("b", None).await.unwrap();
        let b_id = next(&mut s, 5).await.watch_id();
        let ra = rev_of_put(&mut c, "a", "1").await;
        assert_eq!(collect(&mut s, a_id, 1, 5).await, vec![put("a", "1", ra)]);

        w.cancel().await.unwrap();
        let r = next(&mut s, 5).await;
        assert!(r.canceled(), "expected a canceled response, got {r:?}");
        assert_eq!(r.watch_id(), a_id);
        rev_of_put(&mut c, "a", "2").await;
        let rb = rev_of_put(&mut c, "b", "1").await;
        let r = next(&mut s, 5).await;
        assert_eq!(r.watch_id(), b_id, "the canceled watcher must get nothing more: {r:?}");
        assert_eq!(evs(&r), vec![put("b", "1", rb)]);
        quiet(&mut s, 300, "after cancel").await;

        // Cancelling an unknown id is harmless; the stream goes on.
        w.cancel_by_id(12345).await.unwrap();
        let rb2 = rev_of_put(&mut c, "b", "2").await;
        let r = next(&mut s, 5).await;
        if r.canceled() {
            // etcd answers nothing for an unknown id; tolerate an explicit ack.
            assert_eq!(r.watch_id(), 12345);
            let r = next(&mut s, 5).await;
            assert_eq!(evs(&r), vec![put("b", "2", rb2)]);
        } else {
            assert_eq!(evs(&r), vec![put("b", "2", rb2)]);
        }
    })
    .await
}

#[tokio::test]
async fn progress_request_reports_current_revision() {
    bounded(30, "progress request", async {
        let (_dir, _ds, mut c) = store().await;
        let (mut w, mut s) = c.watch("pr", None).await.unwrap();
        let r1 = rev_of_put(&mut c, "pr", "1").await;
        for i in 0..5 {
            rev_of_put(&mut c, &format!("elsewhere/{i}"), "x").await;
        }
        let now = current_rev(&mut c).await;
        w.request_progress().await.unwrap();
        // Every event up to the progress revision comes before it.
        let first = next(&mut s, 5).await;
        assert_eq!(evs(&first), vec![put("pr", "1", r1)], "the event must precede the progress response");
        let progress = next(&mut s, 5).await;
        assert!(progress.events().is_empty(), "{progress:?}");
        assert!(!progress.canceled() && !progress.created());
        assert_eq!(progress.watch_id(), -1, "etcd answers a progress request with watch id -1");
        assert_eq!(progress.header().unwrap().revision(), now);

        // Again after more unrelated writes: still the current revision.
        rev_of_put(&mut c, "elsewhere/x", "y").await;
        w.request_progress().await.unwrap();
        let p2 = next(&mut s, 5).await;
        assert!(p2.events().is_empty());
        assert_eq!(p2.header().unwrap().revision(), now + 1);
    })
    .await
}

#[tokio::test]
async fn progress_notify_interval() {
    bounded(30, "progress notify", async {
        let (_dir, _ds, mut c) = store_with(&["--watch-progress-notify-interval", "1s"]).await;
        rev_of_put(&mut c, "elsewhere", "x").await;
        let (mut w, mut s) = c.watch("pn", Some(WatchOptions::new().with_progress_notify())).await.unwrap();
        let notify_id = w.watch_id();
        w.watch("silent", None).await.unwrap();
        let silent_id = next(&mut s, 5).await.watch_id();
        let now = current_rev(&mut c).await;

        let started = Instant::now();
        let r = next(&mut s, 4).await;
        assert!(r.events().is_empty(), "{r:?}");
        assert_eq!(r.watch_id(), notify_id, "only the watcher that asked hears progress");
        assert_eq!(r.header().unwrap().revision(), now);
        assert!(started.elapsed() < Duration::from_secs(4));

        // Progress follows the store revision even when the watcher's keys
        // do not change.
        rev_of_put(&mut c, "elsewhere", "y").await;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            assert!(Instant::now() < deadline, "progress did not advance to {}", now + 1);
            let r = next(&mut s, 4).await;
            assert_ne!(r.watch_id(), silent_id, "a watcher without progress_notify got {r:?}");
            assert!(r.events().is_empty());
            if r.header().unwrap().revision() == now + 1 {
                break;
            }
        }
        // Several notifications keep coming while idle (1s interval).
        let mut count = 0;
        let window = Instant::now();
        while window.elapsed() < Duration::from_millis(3500) {
            if let Ok(Ok(Some(r))) = tokio::time::timeout(Duration::from_millis(500), s.message()).await {
                assert_eq!(r.watch_id(), notify_id);
                count += 1;
            }
        }
        assert!((2..=5).contains(&count), "{count} progress notifications in 3.5s with a 1s interval");
    })
    .await
}

#[tokio::test]
async fn watch_from_compacted_revision_is_canceled() {
    bounded(30, "compacted watch", async {
        let (_dir, _ds, mut c) = store().await;
        let mut revs = Vec::new();
        for i in 0..10 {
            revs.push(rev_of_put(&mut c, "cw", &format!("{i}")).await);
        }
        let compact_at = revs[5];
        c.compact(compact_at, Some(CompactionOptions::new().with_physical())).await.unwrap();

        let (w, mut s) = c.watch("cw", Some(WatchOptions::new().with_start_revision(revs[2]))).await.unwrap();
        let r = next(&mut s, 5).await;
        assert_eq!(r.watch_id(), w.watch_id());
        assert!(r.canceled(), "a watch from a compacted revision must be canceled: {r:?}");
        assert_eq!(r.compact_revision(), compact_at);
        assert!(r.events().is_empty());

        // From the compacted revision itself: allowed, starts there.
        let (w2, mut s2) = c.watch("cw", Some(WatchOptions::new().with_start_revision(compact_at))).await.unwrap();
        let got = collect(&mut s2, w2.watch_id(), 5, 5).await;
        let want: Vec<Ev> = (5..10).map(|i| put("cw", &format!("{i}"), revs[i])).collect();
        assert_eq!(got, want);

        // A second watch on the same stream still works after a cancel.
        let (mut w3, mut s3) = c.watch("cw", Some(WatchOptions::new().with_start_revision(1))).await.unwrap();
        let r = next(&mut s3, 5).await;
        assert!(r.canceled() && r.compact_revision() == compact_at, "{r:?}");
        w3.watch("cw", None).await.unwrap();
        let created = next(&mut s3, 5).await;
        assert!(created.created());
        let live = rev_of_put(&mut c, "cw", "live").await;
        assert_eq!(collect(&mut s3, created.watch_id(), 1, 5).await, vec![put("cw", "live", live)]);
    })
    .await
}

#[tokio::test]
async fn lease_expiry_reaches_watchers() {
    bounded(30, "lease expiry watch", async {
        let (_dir, _ds, mut c) = store().await;
        let lease = c.lease_grant(2, None).await.unwrap().id();
        let r1 = c.put("leased/a", "1", Some(PutOptions::new().with_lease(lease))).await.unwrap().header().unwrap().revision();
        c.put("leased/b", "2", Some(PutOptions::new().with_lease(lease))).await.unwrap();
        let (w, mut s) = c.watch("leased/", Some(WatchOptions::new().with_prefix().with_prev_key().with_start_revision(r1))).await.unwrap();
        let started = Instant::now();
        let got = collect(&mut s, w.watch_id(), 4, 10).await;
        let waited = started.elapsed();
        assert!(got[0].put && got[1].put, "{got:?}");
        assert!(!got[2].put && !got[3].put, "expiry must delete both keys: {got:?}");
        assert_eq!(got[2].rev, got[3].rev, "one lease's keys go in one revision");
        assert_eq!((got[2].key.as_str(), got[2].prev.as_deref()), ("leased/a", Some("1")));
        assert_eq!((got[3].key.as_str(), got[3].prev.as_deref()), ("leased/b", Some("2")));
        assert!(waited < Duration::from_secs(5), "expiry took {waited:?} for a 2s lease");
        assert!(c.get("leased/", Some(etcd_client::GetOptions::new().with_prefix())).await.unwrap().kvs().is_empty());
    })
    .await
}

/// A watcher that stops reading must not slow writers down, and when it
/// reads again it gets every event in order, or is told it fell behind a
/// compaction; never a silent gap. 20k events in 5k revisions: more
/// revisions than the server buffers per stream, so it must catch up.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_watcher_does_not_block_writers_or_lose_events() {
    bounded(60, "slow watcher", async {
        let (_dir, ds, mut c) = store().await;
        let value = "v".repeat(2048);
        let mut writers = Vec::new();
        for _ in 0..4 {
            writers.push(ds.client().await);
        }
        const PER_TXN: usize = 4;

        /// `n` txns of PER_TXN puts from 32 tasks; returns their revisions.
        async fn write_burst(writers: &[Client], prefix: &str, n: usize, value: &str) -> (Vec<i64>, Duration) {
            const TASKS: usize = 32;
            let started = Instant::now();
            let mut handles = Vec::new();
            for t in 0..TASKS {
                let mut c = writers[t % writers.len()].clone();
                let (prefix, value) = (prefix.to_string(), value.to_string());
                handles.push(tokio::spawn(async move {
                    let mut revs = Vec::new();
                    for i in (t..n).step_by(TASKS) {
                        let ops: Vec<TxnOp> =
                            (0..PER_TXN).map(|j| TxnOp::put(format!("{prefix}{}/{j}", i % 1000), value.clone(), None)).collect();
                        let r = c.txn(Txn::new().and_then(ops)).await.expect("txn");
                        revs.push(r.header().unwrap().revision());
                    }
                    revs
                }));
            }
            let mut revs = Vec::new();
            for h in handles {
                revs.extend(h.await.unwrap());
            }
            (revs, started.elapsed())
        }

        // Baseline rate with nobody watching.
        const BASE: usize = 1_000;
        let (_, base_took) = write_burst(&writers, "base/", BASE, &value).await;
        let base_rate = BASE as f64 / base_took.as_secs_f64();

        // A watcher on its own connection that does not read.
        let mut watch_client = ds.client().await;
        let (_w, mut slow) = watch_client.watch("slow/", Some(WatchOptions::new().with_prefix())).await.unwrap();
        const N: usize = 5_000;
        let (mut revs, took) = write_burst(&writers, "slow/", N, &value).await;
        let rate = N as f64 / took.as_secs_f64();
        eprintln!("baseline {base_rate:.0} txns/s, with a stalled watcher {rate:.0} txns/s ({} events)", N * PER_TXN);
        assert!(
            rate >= base_rate / 4.0,
            "writes slowed down by a stalled watcher: {rate:.0}/s vs {base_rate:.0}/s"
        );
        revs.sort_unstable();
        revs.dedup();
        assert_eq!(revs.len(), N, "each txn has its own revision");
        let last = *revs.last().unwrap();
        assert_eq!(current_rev(&mut c).await, last);
        let want: Vec<i64> = revs.iter().flat_map(|r| std::iter::repeat(*r).take(PER_TXN)).collect();

        // Now read: all events in order, or a compacted cancel.
        let mut got: Vec<i64> = Vec::with_capacity(want.len());
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut canceled = None;
        let mut stale_headers = Vec::new();
        while got.len() < want.len() {
            assert!(Instant::now() < deadline, "slow watcher caught up to only {} of {} events", got.len(), want.len());
            let r = next_raw(&mut slow, 20).await;
            stale_headers.extend(header_behind(&r));
            if r.canceled() {
                canceled = Some(r);
                break;
            }
            got.extend(r.events().iter().map(|e| e.kv().unwrap().mod_revision()));
        }
        assert!(got.windows(2).all(|w| w[0] <= w[1]), "events out of revision order");
        if let Some(r) = canceled {
            assert!(r.compact_revision() > 0, "a slow watcher may only be canceled as compacted: {r:?}");
            eprintln!("slow watcher canceled at compact revision {} after {} events", r.compact_revision(), got.len());
            assert_eq!(got[..], want[..got.len()], "events before the cancel must have no gaps");
            return;
        }
        if got != want {
            let first = got.iter().zip(&want).position(|(a, b)| a != b).unwrap_or(got.len().min(want.len()));
            panic!(
                "slow watcher got {} events, expected {}; first difference at #{first}: got {:?}, expected {:?}",
                got.len(),
                want.len(),
                got.get(first..first + 8),
                want.get(first..first + 8)
            );
        }
        quiet(&mut slow, 300, "no duplicates after catching up").await;
        assert!(
            stale_headers.is_empty(),
            "all events arrived, but {} catch-up responses had a header revision below their events', e.g. {}",
            stale_headers.len(),
            stale_headers[0]
        );
    })
    .await
}
