//! Lease semantics of `k8s datastore` through the etcd-client crate,
//! against the real binary, including a restart.

mod common;

use std::time::{Duration, Instant};

use common::{bounded, current_rev, expect_grpc_err, Datastore};
use etcd_client::{Client, GetOptions, LeaseGrantOptions, LeaseTimeToLiveOptions, PutOptions};

async fn store() -> (tempfile::TempDir, Datastore, Client) {
    let dir = tempfile::tempdir().unwrap();
    let ds = Datastore::start(dir.path()).await;
    let client = ds.client().await;
    (dir, ds, client)
}

async fn exists(c: &mut Client, key: &str) -> bool {
    !c.get(key, None).await.unwrap().kvs().is_empty()
}

async fn leased_put(c: &mut Client, key: &str, lease: i64) -> i64 {
    c.put(key, "v", Some(PutOptions::new().with_lease(lease))).await.unwrap().header().unwrap().revision()
}

/// Polls until `key` is gone; returns how long it took, failing after `secs`.
async fn wait_gone(c: &mut Client, key: &str, secs: u64) -> Duration {
    let started = Instant::now();
    while exists(c, key).await {
        assert!(started.elapsed() < Duration::from_secs(secs), "{key} still exists after {secs}s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    started.elapsed()
}

#[tokio::test]
async fn grant_ttl_rules_and_ids() {
    bounded(30, "grant", async {
        let (_dir, _ds, mut c) = store().await;
        let short = c.lease_grant(1, None).await.unwrap();
        assert_eq!(short.ttl(), 2, "etcd raises TTLs below its minimum (2s) to it");
        assert!(short.id() > 0);
        let normal = c.lease_grant(30, None).await.unwrap();
        assert_eq!(normal.ttl(), 30);
        assert_ne!(normal.id(), short.id());

        let chosen = c.lease_grant(30, Some(LeaseGrantOptions::new().with_id(4242))).await.unwrap();
        assert_eq!(chosen.id(), 4242);
        expect_grpc_err(
            c.lease_grant(30, Some(LeaseGrantOptions::new().with_id(4242))).await,
            "etcdserver: lease already exists",
        );
        expect_grpc_err(c.lease_grant(9_000_000_001, None).await, "etcdserver: too large lease TTL");

        let listed: Vec<i64> = c.leases().await.unwrap().leases().iter().map(|l| l.id()).collect();
        for id in [short.id(), normal.id(), 4242] {
            assert!(listed.contains(&id), "lease {id} missing from {listed:?}");
        }
        // Granting takes no revision.
        let rev = current_rev(&mut c).await;
        c.lease_grant(30, None).await.unwrap();
        assert_eq!(current_rev(&mut c).await, rev);
    })
    .await
}

#[tokio::test]
async fn time_to_live_with_keys() {
    bounded(30, "timetolive", async {
        let (_dir, _ds, mut c) = store().await;
        let id = c.lease_grant(10, None).await.unwrap().id();
        leased_put(&mut c, "ttl/b", id).await;
        leased_put(&mut c, "ttl/a", id).await;
        c.put("ttl/c", "not leased", None).await.unwrap();

        let t = c.lease_time_to_live(id, Some(LeaseTimeToLiveOptions::new().with_keys())).await.unwrap();
        assert_eq!(t.id(), id);
        assert_eq!(t.granted_ttl(), 10);
        assert!((8..=10).contains(&t.ttl()), "remaining ttl {}", t.ttl());
        let mut keys: Vec<&[u8]> = t.keys().iter().map(|k| k.as_slice()).collect();
        keys.sort();
        assert_eq!(keys, [&b"ttl/a"[..], &b"ttl/b"[..]]);

        let no_keys = c.lease_time_to_live(id, None).await.unwrap();
        assert!(no_keys.keys().is_empty(), "keys only when asked");

        // The key's lease field names the lease.
        let kv = c.get("ttl/a", None).await.unwrap().kvs()[0].clone();
        assert_eq!(kv.lease(), id);

        // Overwriting a key without a lease detaches it from the lease.
        c.put("ttl/b", "free", None).await.unwrap();
        let t = c.lease_time_to_live(id, Some(LeaseTimeToLiveOptions::new().with_keys())).await.unwrap();
        assert_eq!(t.keys(), [b"ttl/a".to_vec()]);
        c.lease_revoke(id).await.unwrap();
        assert!(!exists(&mut c, "ttl/a").await);
        assert!(exists(&mut c, "ttl/b").await, "a detached key survives the revoke");

        // Moving a key to another lease: revoking the old one leaves it.
        let a = c.lease_grant(60, None).await.unwrap().id();
        let b = c.lease_grant(60, None).await.unwrap().id();
        leased_put(&mut c, "ttl/moved", a).await;
        leased_put(&mut c, "ttl/moved", b).await;
        c.lease_revoke(a).await.unwrap();
        assert!(exists(&mut c, "ttl/moved").await, "revoking the old lease must not delete a key moved to another");
        c.lease_revoke(b).await.unwrap();
        assert!(!exists(&mut c, "ttl/moved").await);

        // Unknown lease: TTL -1, not an error (as etcd).
        let unknown = c.lease_time_to_live(id, None).await.unwrap();
        assert_eq!(unknown.ttl(), -1);
    })
    .await
}

#[tokio::test]
async fn keepalive_extends_the_lease() {
    bounded(30, "keepalive", async {
        let (_dir, _ds, mut c) = store().await;
        let id = c.lease_grant(3, None).await.unwrap().id();
        leased_put(&mut c, "ka", id).await;
        let (mut keeper, mut responses) = c.lease_keep_alive(id).await.unwrap();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(6) {
            tokio::time::sleep(Duration::from_millis(800)).await;
            keeper.keep_alive().await.unwrap();
            let r = tokio::time::timeout(Duration::from_secs(5), responses.message()).await.expect("keepalive answer").unwrap().unwrap();
            assert_eq!((r.id(), r.ttl()), (id, 3));
            assert!(exists(&mut c, "ka").await, "key expired at {:?} despite keep-alives", started.elapsed());
        }
        let t = c.lease_time_to_live(id, None).await.unwrap();
        assert!(t.ttl() >= 1, "remaining ttl right after a keep-alive: {}", t.ttl());
        // Stop: it expires one TTL later.
        drop(keeper);
        let took = wait_gone(&mut c, "ka", 8).await;
        assert!(took <= Duration::from_millis(5_500), "expiry took {took:?}");

        // Keep-alive of an unknown lease: TTL 0 (etcd-client reports it as an error).
        assert!(c.lease_keep_alive(id).await.is_err(), "keep-alive of an expired lease must fail");
    })
    .await
}

#[tokio::test]
async fn revoke_deletes_keys_and_unknown_leases_are_errors() {
    bounded(30, "revoke", async {
        let (_dir, _ds, mut c) = store().await;
        let id = c.lease_grant(60, None).await.unwrap().id();
        for k in ["rv/1", "rv/2", "rv/3"] {
            leased_put(&mut c, k, id).await;
        }
        let before = current_rev(&mut c).await;
        let resp = c.lease_revoke(id).await.unwrap();
        assert_eq!(resp.header().unwrap().revision(), before + 1, "a revoke deletes its keys in one revision");
        let left = c.get("rv/", Some(GetOptions::new().with_prefix())).await.unwrap();
        assert!(left.kvs().is_empty(), "revoke must delete attached keys");
        let listed: Vec<i64> = c.leases().await.unwrap().leases().iter().map(|l| l.id()).collect();
        assert!(!listed.contains(&id));
        assert_eq!(c.lease_time_to_live(id, None).await.unwrap().ttl(), -1);

        expect_grpc_err(c.lease_revoke(id).await, "etcdserver: requested lease not found");
        expect_grpc_err(c.lease_revoke(0x1234_5678).await, "etcdserver: requested lease not found");
        expect_grpc_err(
            c.put("orphan", "v", Some(PutOptions::new().with_lease(0x1234_5678))).await,
            "etcdserver: requested lease not found",
        );
        expect_grpc_err(
            c.put("orphan", "v", Some(PutOptions::new().with_lease(id))).await,
            "etcdserver: requested lease not found",
        );
        assert!(!exists(&mut c, "orphan").await);
        // A revoke of a lease without keys takes no revision.
        let empty = c.lease_grant(60, None).await.unwrap().id();
        let rev = current_rev(&mut c).await;
        assert_eq!(c.lease_revoke(empty).await.unwrap().header().unwrap().revision(), rev);
    })
    .await
}

#[tokio::test]
async fn expiry_deletes_keys_on_time() {
    bounded(30, "expiry", async {
        let (_dir, _ds, mut c) = store().await;
        let id = c.lease_grant(2, None).await.unwrap().id();
        let granted = Instant::now();
        leased_put(&mut c, "exp/a", id).await;
        leased_put(&mut c, "exp/b", id).await;
        c.put("exp/keep", "v", None).await.unwrap();
        wait_gone(&mut c, "exp/a", 10).await;
        let since_grant = granted.elapsed();
        assert!(since_grant >= Duration::from_millis(1_800), "expired too early: {since_grant:?} for a 2s lease");
        assert!(since_grant <= Duration::from_millis(4_500), "expired too late: {since_grant:?} for a 2s lease");
        assert!(!exists(&mut c, "exp/b").await);
        assert!(exists(&mut c, "exp/keep").await);
        assert_eq!(c.lease_time_to_live(id, None).await.unwrap().ttl(), -1);
        let listed: Vec<i64> = c.leases().await.unwrap().leases().iter().map(|l| l.id()).collect();
        assert!(!listed.contains(&id), "an expired lease is not listed");
        expect_grpc_err(c.lease_revoke(id).await, "etcdserver: requested lease not found");
    })
    .await
}

#[tokio::test]
async fn leases_survive_a_restart() {
    bounded(45, "restart", async {
        let dir = tempfile::tempdir().unwrap();
        let mut ds = Datastore::start(dir.path()).await;
        let mut c = ds.client().await;
        let long = c.lease_grant(60, None).await.unwrap().id();
        leased_put(&mut c, "rs/long", long).await;
        let short = c.lease_grant(3, None).await.unwrap().id();
        leased_put(&mut c, "rs/short", short).await;

        ds.kill9();
        ds.restart().await;
        let mut c = ds.client().await;
        let listed: Vec<i64> = c.leases().await.unwrap().leases().iter().map(|l| l.id()).collect();
        assert!(listed.contains(&long), "lease {long} lost in a restart: {listed:?}");
        assert!(exists(&mut c, "rs/long").await);
        let t = c.lease_time_to_live(long, Some(LeaseTimeToLiveOptions::new().with_keys())).await.unwrap();
        assert_eq!(t.granted_ttl(), 60);
        assert!(t.ttl() > 0);
        assert_eq!(t.keys(), [b"rs/long".to_vec()]);

        // New ids do not collide with old ones.
        let fresh = c.lease_grant(60, None).await.unwrap().id();
        assert!(fresh != long && fresh != short);

        // A short lease still expires after the restart (with a fresh TTL
        // at most, as etcd gives leases after a leader change).
        let took = wait_gone(&mut c, "rs/short", 8).await;
        assert!(took <= Duration::from_millis(5_500), "short lease expired {took:?} after restart");
        assert!(exists(&mut c, "rs/long").await);
        // The revoke works on a lease from before the restart.
        c.lease_revoke(long).await.unwrap();
        assert!(!exists(&mut c, "rs/long").await);
    })
    .await
}
