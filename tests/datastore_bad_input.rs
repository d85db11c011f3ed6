//! What the datastore does with bad surroundings and bad requests: corrupt
//! or truncated files, a read-only or full filesystem, a taken address,
//! malformed requests and garbage on the port.
//!
//! Mounts happen only inside a private mount namespace (`unshare -m`) that
//! the datastore process itself lives in: they disappear with it, so a
//! failing test never leaves a mount behind.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{bounded, expect_grpc_err, free_port, run_expect_exit, status_of, Datastore, Launch};
use etcd_client::{AlarmAction, AlarmType, GetOptions, PutOptions};

fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!("SKIPPED: this test needs root (mounts in a private namespace)");
            return;
        }
    };
}

fn db_path(dir: &Path) -> PathBuf {
    dir.join("datastore.db")
}

fn listen_any() -> Vec<String> {
    vec![format!("http://127.0.0.1:{}", free_port())]
}

/// Deterministic pseudo-random bytes.
fn garbage(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Runs a command in the mount namespace of `pid`.
fn in_ns(pid: u32, args: &[&str]) {
    let out = Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-m", "--"])
        .args(args)
        .output()
        .expect("run nsenter");
    assert!(out.status.success(), "nsenter {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// Asserts the process refused to start quickly and said why and where.
#[track_caller]
fn assert_refused(status: std::process::ExitStatus, stderr: &str, took: Duration, must_name: &str, hints: &[&str]) {
    assert!(!status.success(), "expected a non-zero exit, got {status}; stderr:\n{stderr}");
    assert!(status.code().is_some(), "expected an exit, not a signal ({status}); stderr:\n{stderr}");
    assert!(took < Duration::from_secs(10), "took {took:?} to give up");
    assert!(stderr.contains(must_name), "stderr should name {must_name}:\n{stderr}");
    assert!(
        hints.iter().any(|h| stderr.to_lowercase().contains(&h.to_lowercase())),
        "stderr should say what is wrong or what to do (one of {hints:?}):\n{stderr}"
    );
}

/// Asserts two byte strings are equal without printing megabytes.
#[track_caller]
fn assert_same_bytes(now: &[u8], before: &[u8], what: &str) {
    if now == before {
        return;
    }
    let first = now.iter().zip(before).position(|(a, b)| a != b).unwrap_or(now.len().min(before.len()));
    let diffs = now.iter().zip(before).filter(|(a, b)| a != b).count();
    panic!(
        "{what}: the file was changed: {} bytes before, {} now; first difference at offset {first} \
         ({:?} before, {:?} now), {diffs} differing bytes in the common length",
        before.len(),
        now.len(),
        before.get(first..(first + 8).min(before.len())),
        now.get(first..(first + 8).min(now.len())),
    );
}

/// A valid database with some data, written and cleanly stopped.
async fn make_valid_db(dir: &Path, values: usize, size: usize) {
    let mut ds = Datastore::start(dir).await;
    let mut c = ds.client().await;
    for i in 0..values {
        c.put(format!("data/{i:05}"), "d".repeat(size), None).await.unwrap();
    }
    // Move everything from the WAL into the main file.
    c.defragment().await.unwrap();
    let status = ds.terminate().await.expect("was running");
    assert!(status.success(), "clean stop failed: {status}; stderr:\n{}", ds.stderr());
}

#[test]
fn garbage_database_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_path(dir.path());
    let bytes = garbage(64 * 1024, 7);
    std::fs::write(&db, &bytes).unwrap();
    let (status, stderr, took) = run_expect_exit(dir.path(), &listen_any(), &Launch::default(), 15);
    assert_refused(status, &stderr, took, &db.display().to_string(), &["restore", "move it aside", "not a valid"]);
    assert_same_bytes(&std::fs::read(&db).unwrap(), &bytes, "corrupt database");
}

#[tokio::test]
async fn truncated_database_is_refused_and_left_alone() {
    bounded(60, "truncated db", async {
        let dir = tempfile::tempdir().unwrap();
        make_valid_db(dir.path(), 200, 8 * 1024).await;
        let db = db_path(dir.path());
        let full = std::fs::read(&db).unwrap();
        assert!(full.len() > 1 << 20, "fixture too small: {} bytes", full.len());
        // Cut mid-file, off a page boundary.
        let cut = full.len() / 2 + 123;
        std::fs::write(&db, &full[..cut]).unwrap();
        let (status, stderr, took) = run_expect_exit(dir.path(), &listen_any(), &Launch::default(), 15);
        assert_refused(status, &stderr, took, &db.display().to_string(), &["restore", "move it aside", "not a valid"]);
        assert_same_bytes(&std::fs::read(&db).unwrap(), &full[..cut], "truncated database");
    })
    .await
}

#[tokio::test]
async fn newer_schema_is_refused_and_left_alone() {
    bounded(60, "newer schema", async {
        let dir = tempfile::tempdir().unwrap();
        make_valid_db(dir.path(), 3, 10).await;
        let db = db_path(dir.path());
        let mut bytes = std::fs::read(&db).unwrap();
        // SQLite's user_version (our schema version) is at offset 60.
        bytes[60..64].copy_from_slice(&99u32.to_be_bytes());
        std::fs::write(&db, &bytes).unwrap();
        let (status, stderr, took) = run_expect_exit(dir.path(), &listen_any(), &Launch::default(), 15);
        assert_refused(status, &stderr, took, &db.display().to_string(), &["newer"]);
        assert_same_bytes(&std::fs::read(&db).unwrap(), &bytes, "database of a newer schema");
    })
    .await
}

fn read_only_bind(dir: &Path) -> Launch {
    let d = dir.display();
    Launch { ns_setup: Some(format!("mount --bind '{d}' '{d}'; mount -o remount,bind,ro '{d}' '{d}'")), ..Default::default() }
}

#[test]
fn read_only_empty_data_dir_is_refused() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let (status, stderr, took) = run_expect_exit(dir.path(), &listen_any(), &read_only_bind(dir.path()), 15);
    assert_refused(status, &stderr, took, &dir.path().display().to_string(), &["read-only", "read only"]);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "nothing may appear in the directory");
}

#[tokio::test]
async fn read_only_data_dir_with_database_is_refused() {
    require_root!();
    bounded(60, "read-only db", async {
        let dir = tempfile::tempdir().unwrap();
        make_valid_db(dir.path(), 5, 100).await;
        let db = db_path(dir.path());
        let before = std::fs::read(&db).unwrap();
        let (status, stderr, took) = run_expect_exit(dir.path(), &listen_any(), &read_only_bind(dir.path()), 15);
        assert_refused(status, &stderr, took, &dir.path().display().to_string(), &["read-only", "read only"]);
        assert_same_bytes(&std::fs::read(&db).unwrap(), &before, "database in a read-only dir");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_is_nospace_then_recovers() {
    require_root!();
    bounded(90, "full disk", async {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        // A 3 MiB filesystem of its own with a 1 MiB file we can free later.
        let launch = Launch {
            ns_setup: Some(format!("mount -t tmpfs -o size=3m tmpfs '{d}'; dd if=/dev/zero of='{d}/filler' bs=64k count=16 2>/dev/null")),
            ..Default::default()
        };
        let mut ds = Datastore::start_with(dir.path(), launch).await;
        let pid = ds.pid();
        let mut c = ds.client().await;
        let value = |i: usize| format!("{i:06}-{}", "v".repeat(4000));

        let mut acked = fill_until_nospace(&mut c, "full", &value, "8 MB of writes fit in a 3 MiB filesystem?").await;
        assert!(acked.len() > 10, "only {} writes fit", acked.len());

        // Still up: reads work, every acknowledged write is there, writes keep
        // failing the same way (not with another error, not a crash).
        for _ in 0..3 {
            expect_grpc_err(c.put("full/more", value(0), None).await, "etcdserver: mvcc: database space exceeded");
        }
        assert!(ds.is_running(), "the datastore died on a full disk; stderr:\n{}", ds.stderr());
        let check = |c: &mut etcd_client::Client, acked: Vec<(usize, i64)>| {
            let mut c = c.clone();
            async move {
                let got = c.get("full/", Some(GetOptions::new().with_prefix())).await.expect("reads work on a full disk");
                let stored: std::collections::HashMap<Vec<u8>, (Vec<u8>, i64)> =
                    got.kvs().iter().map(|kv| (kv.key().to_vec(), (kv.value().to_vec(), kv.mod_revision()))).collect();
                for (i, rev) in &acked {
                    let key = format!("full/{i:06}").into_bytes();
                    let (v, r) = stored.get(&key).unwrap_or_else(|| panic!("acknowledged write {i} lost"));
                    assert_eq!((v.as_slice(), *r), (value(*i).as_bytes(), *rev), "acknowledged write {i}");
                }
                got.header().unwrap().revision()
            }
        };
        let head = check(&mut c, acked.clone()).await;
        assert_eq!(head, acked.last().unwrap().1, "failed writes must not take revisions");
        c.status().await.expect("status on a full disk");

        // Free space: writes succeed again, continuing the revision counter.
        in_ns(pid, &["rm", &format!("{d}/filler")]);
        let deadline = Instant::now() + Duration::from_secs(5);
        let next_rev = loop {
            match c.put("full/after-free", "ok", None).await {
                Ok(r) => break r.header().unwrap().revision(),
                Err(e) => assert!(Instant::now() < deadline, "writes still fail after freeing space: {e:?}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(next_rev, head + 1);
        // Grow the filesystem: a steady stream of writes works.
        in_ns(pid, &["mount", "-o", "remount,size=64m", &d]);
        let start = acked.len() + 10;
        for i in start..start + 300 {
            let r = c.put(format!("full/{i:06}"), value(i), Some(PutOptions::new())).await.expect("write after growing the disk");
            acked.push((i, r.header().unwrap().revision()));
        }
        check(&mut c, acked).await;
        assert!(ds.is_running());
    })
    .await
}

/// Writes `<prefix>/<i>` = `value(i)` (at most 2000) until the store
/// answers etcd's NOSPACE, which must come; the writes acknowledged before
/// it, with their revisions.
async fn fill_until_nospace(c: &mut etcd_client::Client, prefix: &str, value: &dyn Fn(usize) -> String, never: &str) -> Vec<(usize, i64)> {
    let mut acked = Vec::new();
    for i in 0..2_000 {
        match c.put(format!("{prefix}/{i:06}"), value(i), None).await {
            Ok(r) => acked.push((i, r.header().unwrap().revision())),
            Err(err) => {
                let status = status_of(&err).unwrap_or_else(|| panic!("expected a gRPC status, got {err:?}")).clone();
                assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
                assert_eq!(status.message(), "etcdserver: mvcc: database space exceeded");
                return acked;
            }
        }
    }
    panic!("{never}")
}

/// etcd's space quota: past `--quota-backend-bytes` the NOSPACE alarm is
/// raised and kept across a restart; writes that add data fail, reads and
/// deletes work, and compaction + defragmentation + `alarm disarm` bring
/// writes back, with nothing acknowledged lost.
#[tokio::test]
async fn the_quota_raises_nospace_until_disarmed() {
    bounded(120, "quota", async {
        let dir = tempfile::tempdir().unwrap();
        let launch = Launch { extra: vec!["--quota-backend-bytes".into(), (1 << 20).to_string()], ..Default::default() };
        let mut ds = Datastore::start_with(dir.path(), launch).await;
        let mut c = ds.client().await;
        let value = |i: usize| format!("{i:06}-{}", "q".repeat(4000));
        let acked = fill_until_nospace(&mut c, "q", &value, "8 MB of writes under a 1 MiB quota?").await;
        assert!(acked.len() > 10, "only {} writes fit under 1 MiB", acked.len());

        let alarms = c.alarm(AlarmAction::Get, AlarmType::None, None).await.unwrap();
        assert_eq!(alarms.alarms().iter().map(|a| a.alarm()).collect::<Vec<_>>(), [AlarmType::Nospace]);
        let st = c.status().await.unwrap();
        assert!(st.errors().iter().any(|e| e.contains("alarm:NOSPACE")), "{:?}", st.errors());
        // Kept across a restart, and small writes are refused too.
        ds.restart().await;
        let mut c = ds.client().await;
        expect_grpc_err(c.put("q/small", "x", None).await, "database space exceeded");
        expect_grpc_err(c.lease_grant(60, None).await, "database space exceeded");

        // Reads and deletes work; every acknowledged write is there.
        let got = c.get("q/", Some(GetOptions::new().with_prefix())).await.expect("reads under the alarm");
        assert_eq!(got.kvs().len(), acked.len(), "acknowledged writes lost");
        for ((i, rev), kv) in acked.iter().zip(got.kvs()) {
            assert_eq!((kv.value(), kv.mod_revision()), (value(*i).as_bytes(), *rev));
        }
        let deleted = c.delete("q/", Some(etcd_client::DeleteOptions::new().with_prefix())).await.expect("deletes under the alarm");
        assert_eq!(deleted.deleted() as usize, acked.len());

        // Disarming alone is not enough while the file is still that large:
        // the next write raises the alarm again (as etcd does).
        c.alarm(AlarmAction::Deactivate, AlarmType::Nospace, None).await.unwrap();
        expect_grpc_err(c.put("q/small", "x", None).await, "database space exceeded");
        let rev = deleted.header().unwrap().revision();
        c.compact(rev, Some(etcd_client::CompactionOptions::new().with_physical())).await.expect("compaction under the alarm");
        c.defragment().await.expect("defragmentation under the alarm");
        let st = c.status().await.unwrap();
        assert!(st.db_size() < (1 << 20) / 2, "defragmentation gave the free pages back: {} bytes left", st.db_size());
        c.alarm(AlarmAction::Deactivate, AlarmType::Nospace, None).await.unwrap();
        assert!(c.alarm(AlarmAction::Get, AlarmType::None, None).await.unwrap().alarms().is_empty());
        let r = c.put("q/after", "ok", None).await.unwrap_or_else(|e| {
            panic!("writes work again after compact, defrag and disarm: {e:?}; stderr:\n{}", ds.stderr())
        });
        assert_eq!(r.header().unwrap().revision(), rev + 1, "refused writes took no revision");
        assert!(ds.is_running());
    })
    .await
}

/// Watchers and Range answers have caps: past them a request is refused
/// with a reason, and the store goes on serving.
#[tokio::test]
async fn watchers_and_answers_are_bounded() {
    bounded(60, "bounds", async {
        let dir = tempfile::tempdir().unwrap();
        let extra = ["--max-watchers", "3", "--max-response-bytes", "100000"].map(String::from).to_vec();
        let ds = Datastore::start_with(dir.path(), Launch { extra, ..Default::default() }).await;
        let mut c = ds.client().await;

        let (mut watcher, mut stream) = c.watch("w/0", None).await.expect("the first watcher");
        for i in 1..3 {
            watcher.watch(format!("w/{i}"), None).await.unwrap();
            let created = stream.message().await.unwrap().unwrap();
            assert!(created.created() && !created.canceled(), "watcher {i} of 3");
        }
        watcher.watch("w/3", None).await.unwrap();
        let refused = stream.message().await.unwrap().unwrap();
        assert!(refused.created() && refused.canceled(), "the 4th watcher is refused");
        assert!(refused.cancel_reason().contains("too many watchers"), "{}", refused.cancel_reason());
        // A canceled watcher gives its place back.
        watcher.cancel().await.unwrap();
        let canceled = stream.message().await.unwrap().unwrap();
        assert!(canceled.canceled());
        watcher.watch("w/4", None).await.unwrap();
        let again = stream.message().await.unwrap().unwrap();
        assert!(again.created() && !again.canceled(), "a place was free again: {}", again.cancel_reason());

        for i in 0..30 {
            c.put(format!("big/{i:02}"), "v".repeat(5000), None).await.unwrap();
        }
        let err = c.get("big/", Some(GetOptions::new().with_prefix())).await.expect_err("150 kB over a 100 kB cap");
        let status = status_of(&err).unwrap().clone();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert!(status.message().contains("page it with a limit"), "{}", status.message());
        let page = c.get("big/", Some(GetOptions::new().with_prefix().with_limit(10))).await.expect("a page fits");
        assert_eq!((page.kvs().len(), page.count()), (10, 30));
    })
    .await
}

#[tokio::test]
async fn address_in_use_is_reported() {
    bounded(30, "address in use", async {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap().to_string();
        let dir = tempfile::tempdir().unwrap();
        let (status, stderr, took) = run_expect_exit(dir.path(), &[format!("http://{addr}")], &Launch::default(), 15);
        assert_refused(status, &stderr, took, &addr, &["in use", "another", "listen"]);

        // A unix socket served by a running datastore is not stolen.
        let sock_dir = tempfile::tempdir().unwrap();
        let sock = sock_dir.path().join("ds.sock").display().to_string();
        let launch = Launch { extra: vec!["--listen".into(), format!("unix://{sock}")], ..Default::default() };
        let first_dir = tempfile::tempdir().unwrap();
        let first = Datastore::start_with(first_dir.path(), launch.clone()).await;
        let other = tempfile::tempdir().unwrap();
        let (status, stderr, took) = run_expect_exit(other.path(), &listen_any(), &launch, 15);
        assert_refused(status, &stderr, took, &sock, &["in use", "running"]);
        let mut c = first.client().await;
        c.put("still", "serving", None).await.expect("the first datastore keeps serving");
        assert!(std::path::Path::new(&sock).exists(), "the running server's socket was removed");
    })
    .await
}

/// Two processes writing one database would hand out the same revisions
/// twice; etcd locks its data dir (bbolt flock) for this reason.
#[tokio::test]
async fn second_datastore_on_same_data_dir_is_refused() {
    bounded(30, "data dir in use", async {
        let dir = tempfile::tempdir().unwrap();
        let first = Datastore::start(dir.path()).await;
        let mut c1 = first.client().await;
        c1.put("before", "v", None).await.unwrap();
        let port = free_port();
        let logs = tempfile::tempdir().unwrap();
        let log = logs.path().join("stderr");
        let mut second = common::command(dir.path(), &[format!("http://127.0.0.1:{port}")], &Launch::default())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(8) {
            if let Some(status) = second.try_wait().unwrap() {
                let stderr = std::fs::read_to_string(&log).unwrap_or_default();
                assert_refused(status, &stderr, started.elapsed(), &dir.path().display().to_string(), &["in use", "locked", "another"]);
                c1.put("after", "v", None).await.expect("the first datastore keeps serving");
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Still running: show what that costs, then fail.
        let mut c2 = etcd_client::Client::connect([format!("http://127.0.0.1:{port}")], None).await.unwrap();
        let r1 = c1.put("via-first", "1", None).await.map(|r| r.header().unwrap().revision());
        let r2 = c2.put("via-second", "2", None).await.map(|r| r.header().unwrap().revision());
        let _ = second.kill();
        let _ = second.wait();
        panic!(
            "a second datastore on the same data dir kept running for 8s instead of refusing; \
             a put through each got revisions {r1:?} and {r2:?}"
        );
    })
    .await
}

#[tokio::test]
async fn malformed_requests_are_refused() {
    bounded(30, "malformed requests", async {
        let dir = tempfile::tempdir().unwrap();
        let ds = Datastore::start(dir.path()).await;
        let mut c = ds.client().await;
        expect_grpc_err(c.put("", "v", None).await, "etcdserver: key is not provided");
        expect_grpc_err(c.get("", None).await, "etcdserver: key is not provided");
        expect_grpc_err(c.delete("", None).await, "etcdserver: key is not provided");
        let s = expect_grpc_err(c.put("", "v", None).await, "etcdserver: key is not provided");
        assert_eq!(s.code(), tonic::Code::InvalidArgument);

        // A request larger than the server accepts fails; the server lives on.
        let huge = c.put("huge", vec![b'h'; 3 << 20], None).await;
        assert!(huge.is_err(), "a 3 MiB put must be refused");
        c.put("big", vec![b'b'; 1 << 20], None).await.expect("a 1 MiB put is fine");
        assert_eq!(c.get("big", None).await.unwrap().kvs()[0].value().len(), 1 << 20);
        assert!(c.get("huge", None).await.unwrap().kvs().is_empty());
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_grpc_port_does_not_crash() {
    bounded(30, "garbage bytes", async {
        let dir = tempfile::tempdir().unwrap();
        let mut ds = Datastore::start(dir.path()).await;
        let addr = format!("127.0.0.1:{}", ds.port);
        let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        let mut payloads: Vec<Vec<u8>> = vec![
            garbage(64 * 1024, 1),
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec(), // a TLS hello on a plain port
            [preface.clone(), garbage(4096, 2)].concat(),
            // Preface, then a SETTINGS frame claiming 16 MiB of payload.
            [preface.clone(), vec![0xff, 0xff, 0xff, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00]].concat(),
            // Preface, then HEADERS on stream 1 with a broken HPACK block.
            [preface.clone(), vec![0x00, 0x00, 0x04, 0x01, 0x05, 0x00, 0x00, 0x00, 0x01, 0xff, 0xff, 0xff, 0xff]].concat(),
            preface[..10].to_vec(),
            Vec::new(),
        ];
        for i in 0..20 {
            payloads.push(garbage(1 + i * 997, 100 + i as u64));
        }
        let mut tasks = Vec::new();
        for p in payloads {
            let addr = addr.clone();
            tasks.push(tokio::task::spawn_blocking(move || {
                let mut s = std::net::TcpStream::connect(&addr).expect("connect");
                s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
                let _ = s.write_all(&p);
                let mut buf = [0u8; 4096];
                let _ = std::io::Read::read(&mut s, &mut buf);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(ds.is_running(), "garbage bytes killed the datastore; stderr:\n{}", ds.stderr());
        let mut c = ds.client().await;
        c.put("after-garbage", "ok", None).await.expect("still serving");
        assert_eq!(c.get("after-garbage", None).await.unwrap().kvs()[0].value(), b"ok");
        c.status().await.expect("status after garbage");
    })
    .await
}
