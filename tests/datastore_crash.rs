//! Crash safety: every write the datastore acknowledged survives SIGKILL,
//! with its value and revision, and revisions never go backwards.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{bounded, Datastore};
use etcd_client::{GetOptions, Txn, TxnOp};

/// One acknowledged write.
#[derive(Clone, Debug)]
struct Acked {
    key: String,
    value: String,
    rev: i64,
}

const TASKS: usize = 16;
const CLIENTS: usize = 4;
const CYCLES: usize = 3;

/// Writes from many tasks until `stop`; returns what was acknowledged.
async fn write_until_killed(ds: &Datastore, cycle: usize, stop: Arc<AtomicBool>) -> Vec<tokio::task::JoinHandle<Vec<Acked>>> {
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(ds.client().await);
    }
    let mut handles = Vec::new();
    for t in 0..TASKS {
        let mut c = clients[t % CLIENTS].clone();
        let stop = stop.clone();
        handles.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut i = 0usize;
            while !stop.load(Ordering::SeqCst) {
                let key = format!("crash/{cycle}/{t:02}/{i:06}");
                let value = format!("{cycle}-{t}-{i}-{}", "x".repeat(i % 200));
                if i % 10 == 9 {
                    // A txn writing two keys: both or neither, one revision.
                    let (ka, kb) = (format!("{key}/a"), format!("{key}/b"));
                    let txn = Txn::new().and_then([TxnOp::put(ka.clone(), value.clone(), None), TxnOp::put(kb.clone(), value.clone(), None)]);
                    match tokio::time::timeout(Duration::from_secs(2), c.txn(txn)).await {
                        Ok(Ok(r)) => {
                            let rev = r.header().unwrap().revision();
                            acked.push(Acked { key: ka, value: value.clone(), rev });
                            acked.push(Acked { key: kb, value, rev });
                        }
                        _ => break,
                    }
                } else {
                    match tokio::time::timeout(Duration::from_secs(2), c.put(key.clone(), value.clone(), None)).await {
                        Ok(Ok(r)) => acked.push(Acked { key, value, rev: r.header().unwrap().revision() }),
                        _ => break,
                    }
                }
                i += 1;
            }
            acked
        }));
    }
    handles
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_sigkill() {
    bounded(90, "crash cycles", async {
        let dir = tempfile::tempdir().unwrap();
        let mut ds = Datastore::start(dir.path()).await;
        let mut all: Vec<Acked> = Vec::new();
        for cycle in 0..CYCLES {
            let stop = Arc::new(AtomicBool::new(false));
            let handles = write_until_killed(&ds, cycle, stop.clone()).await;
            tokio::time::sleep(Duration::from_millis(1_500)).await;
            // Kill mid-stream: requests are in flight right now.
            ds.kill9();
            stop.store(true, Ordering::SeqCst);
            let mut acked = Vec::new();
            for h in handles {
                acked.extend(bounded(20, "writer task", h).await.unwrap());
            }
            assert!(acked.len() > 20, "cycle {cycle}: only {} writes acknowledged before the kill", acked.len());
            let per_rev: HashSet<i64> = acked.iter().map(|a| a.rev).collect();
            let txn_pairs = acked.iter().filter(|a| a.key.ends_with("/a")).count();
            assert_eq!(per_rev.len(), acked.len() - txn_pairs, "cycle {cycle}: two writes acknowledged with one revision");
            all.extend(acked);

            ds.restart().await;
            let mut c = ds.client().await;
            let (head, kvs) = get_all(&mut c, "crash/").await;
            let stored: HashMap<String, (String, i64)> = kvs
                .iter()
                .map(|kv| {
                    (String::from_utf8_lossy(kv.key()).into_owned(), (String::from_utf8_lossy(kv.value()).into_owned(), kv.mod_revision()))
                })
                .collect();
            let mut lost = Vec::new();
            for a in &all {
                match stored.get(&a.key) {
                    Some((v, rev)) if *v == a.value && *rev == a.rev => {}
                    other => lost.push(format!("{} (acked rev {}): found {:?}", a.key, a.rev, other.map(|(v, r)| (v.len(), *r)))),
                }
            }
            assert!(
                lost.is_empty(),
                "cycle {cycle}: {} of {} acknowledged writes lost or changed after SIGKILL, e.g.:\n{}",
                lost.len(),
                all.len(),
                lost.iter().take(10).cloned().collect::<Vec<_>>().join("\n")
            );
            let max_acked = all.iter().map(|a| a.rev).max().unwrap();
            assert!(head >= max_acked, "cycle {cycle}: store revision {head} is behind acknowledged revision {max_acked}");
            let next = c.put(format!("crash/next/{cycle}"), "n", None).await.unwrap().header().unwrap().revision();
            assert!(next > max_acked, "cycle {cycle}: revision {next} reused after restart (acked up to {max_acked})");
            assert_eq!(next, head + 1);
            eprintln!("cycle {cycle}: {} writes acknowledged in total, head revision {head}", all.len());
        }
    })
    .await
}

/// A clean stop (SIGTERM, as systemd does) keeps everything and the next
/// start continues the revision counter.
#[tokio::test]
async fn clean_stop_keeps_data() {
    bounded(30, "clean stop", async {
        let dir = tempfile::tempdir().unwrap();
        let mut ds = Datastore::start(dir.path()).await;
        let mut c = ds.client().await;
        let mut last = 0;
        for i in 0..50 {
            last = c.put(format!("clean/{i}"), format!("{i}"), None).await.unwrap().header().unwrap().revision();
        }
        drop(c);
        let status = ds.terminate().await.expect("running");
        assert!(status.success(), "SIGTERM exit status {status}; stderr:\n{}", ds.stderr());
        ds.restart().await;
        let mut c = ds.client().await;
        let got = c.get("clean/", Some(GetOptions::new().with_prefix())).await.unwrap();
        assert_eq!(got.count(), 50);
        assert_eq!(got.header().unwrap().revision(), last);
        assert_eq!(c.put("clean/next", "n", None).await.unwrap().header().unwrap().revision(), last + 1);
    })
    .await
}

/// kube-apiserver always holds watches open: SIGTERM must still stop the
/// datastore promptly (etcd closes its streams on shutdown), and the
/// client must see its stream end rather than hang.
#[tokio::test]
async fn sigterm_with_an_open_watch_stops_promptly() {
    bounded(30, "stop with open watch", async {
        let dir = tempfile::tempdir().unwrap();
        let mut ds = Datastore::start(dir.path()).await;
        let mut c = ds.client().await;
        c.put("w", "1", None).await.unwrap();
        let (_watcher, mut stream) = c.watch("w", None).await.unwrap();
        match ds.terminate_within(5).await {
            Ok(Some(status)) => assert!(status.success(), "exit status {status}; stderr:\n{}", ds.stderr()),
            Ok(None) => unreachable!(),
            Err(waited) => panic!(
                "datastore still running {waited:?} after SIGTERM while a watch stream was open (killed it); stderr:\n{}",
                ds.stderr()
            ),
        }
        let end = tokio::time::timeout(Duration::from_secs(5), stream.message()).await;
        assert!(matches!(end, Ok(Ok(None)) | Ok(Err(_))), "the watch stream should end with the server: {end:?}");
    })
    .await
}

/// An idle or stuck client connection must not keep a stopping datastore
/// alive either.
#[tokio::test]
async fn sigterm_with_an_idle_connection_stops_promptly() {
    bounded(30, "stop with idle connection", async {
        let dir = tempfile::tempdir().unwrap();
        let mut ds = Datastore::start(dir.path()).await;
        // Connected, never says anything (a hung or half-open client).
        let _silent = std::net::TcpStream::connect(format!("127.0.0.1:{}", ds.port)).unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        match ds.terminate_within(5).await {
            Ok(Some(status)) => assert!(status.success(), "exit status {status}; stderr:\n{}", ds.stderr()),
            Ok(None) => unreachable!(),
            Err(waited) => panic!(
                "datastore still running {waited:?} after SIGTERM with one idle TCP connection open (killed it); stderr:\n{}",
                ds.stderr()
            ),
        }
    })
    .await
}

/// Every key under `prefix` at one revision, in pages (a single answer can
/// exceed the client's 4 MiB message limit).
async fn get_all(c: &mut etcd_client::Client, prefix: &str) -> (i64, Vec<etcd_client::KeyValue>) {
    let end = format!("{}{}", &prefix[..prefix.len() - 1], (prefix.as_bytes()[prefix.len() - 1] + 1) as char);
    let mut start = prefix.as_bytes().to_vec();
    let (mut head, mut all) = (0, Vec::new());
    loop {
        let mut opts = GetOptions::new().with_range(end.clone()).with_limit(1000);
        if head > 0 {
            opts = opts.with_revision(head);
        }
        let page = c.get(start.clone(), Some(opts)).await.unwrap();
        if head == 0 {
            head = page.header().unwrap().revision();
        }
        let more = page.more();
        let kvs = page.kvs().to_vec();
        if let Some(last) = kvs.last() {
            start = last.key().to_vec();
            start.push(0);
        }
        all.extend(kvs);
        if !more {
            return (head, all);
        }
    }
}
