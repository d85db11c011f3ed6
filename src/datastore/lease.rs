//! Lease deadlines, kept in memory: a keep-alive only moves a deadline, so
//! it costs no disk write. The lease table on disk holds ids and TTLs;
//! after a restart every lease gets a full TTL again, as etcd does when a
//! new leader takes over.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// etcd's smallest TTL with its default election timeout: shorter requests
/// are raised to it.
pub const MIN_TTL: i64 = 2;
/// etcd's largest TTL.
pub const MAX_TTL: i64 = 9_000_000_000;

struct Deadline {
    ttl: i64,
    expires: Instant,
}

#[derive(Default)]
pub struct Leases {
    deadlines: Mutex<HashMap<i64, Deadline>>,
}

impl Leases {
    pub fn start(&self, id: i64, ttl: i64) {
        let expires = Instant::now() + Duration::from_secs(ttl as u64);
        self.deadlines.lock().unwrap().insert(id, Deadline { ttl, expires });
    }

    pub fn forget(&self, id: i64) {
        self.deadlines.lock().unwrap().remove(&id);
    }

    /// Keep-alive: a full TTL from now. None for an unknown lease.
    pub fn renew(&self, id: i64) -> Option<i64> {
        let mut map = self.deadlines.lock().unwrap();
        let d = map.get_mut(&id)?;
        d.expires = Instant::now() + Duration::from_secs(d.ttl as u64);
        Some(d.ttl)
    }

    /// Granted TTL and whole seconds left.
    pub fn remaining(&self, id: i64) -> Option<(i64, i64)> {
        let map = self.deadlines.lock().unwrap();
        let d = map.get(&id)?;
        let left = d.expires.saturating_duration_since(Instant::now()).as_secs() as i64;
        Some((d.ttl, left))
    }

    pub fn is_expired(&self, id: i64) -> bool {
        let map = self.deadlines.lock().unwrap();
        map.get(&id).is_some_and(|d| d.expires <= Instant::now())
    }

    pub fn expired(&self) -> Vec<i64> {
        let now = Instant::now();
        let map = self.deadlines.lock().unwrap();
        map.iter().filter(|(_, d)| d.expires <= now).map(|(id, _)| *id).collect()
    }

    pub fn ids(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self.deadlines.lock().unwrap().keys().copied().collect();
        ids.sort_unstable();
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renew_and_expire() {
        let leases = Leases::default();
        leases.start(7, 0);
        assert!(leases.is_expired(7));
        assert_eq!(leases.expired(), vec![7]);
        leases.forget(7);
        assert_eq!(leases.renew(7), None);
        leases.start(8, 60);
        assert_eq!(leases.renew(8), Some(60));
        assert!(!leases.is_expired(8));
        let (ttl, left) = leases.remaining(8).unwrap();
        assert_eq!(ttl, 60);
        assert!(left >= 59);
    }
}
