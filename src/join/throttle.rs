//! What keeps the join endpoint from being worn down or brute-forced: a cap
//! on connections served at once, and a per-address backoff after failed
//! token checks (the first few mistakes are free; then each failure doubles
//! the wait, up to five minutes; a success clears the address).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Connections served at once; more are closed at accept.
pub const MAX_CONNECTIONS: usize = 64;
/// Failed token checks an address may make before it has to wait.
const FREE_FAILURES: u32 = 3;
const MAX_WAIT: Duration = Duration::from_secs(300);
/// Addresses remembered at most; the least recently failing go first.
const MAX_ADDRESSES: usize = 4096;
/// An address that has not failed for this long starts afresh.
const FORGET_AFTER: Duration = Duration::from_secs(900);

#[derive(Clone, Copy)]
struct Strikes {
    failures: u32,
    blocked_until: Instant,
    last: Instant,
}

#[derive(Default)]
pub struct Throttle {
    strikes: Mutex<HashMap<IpAddr, Strikes>>,
}

impl Throttle {
    /// Ok when `ip` may try now; else how long it must wait.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let strikes = self.strikes.lock().expect("throttle lock");
        match strikes.get(&ip) {
            Some(s) if s.blocked_until > now => Err(s.blocked_until - now),
            _ => Ok(()),
        }
    }

    /// A failed token check from `ip`.
    pub fn failed(&self, ip: IpAddr, now: Instant) {
        let mut strikes = self.strikes.lock().expect("throttle lock");
        if strikes.len() >= MAX_ADDRESSES && !strikes.contains_key(&ip) {
            strikes.retain(|_, s| now.duration_since(s.last) < FORGET_AFTER);
            if strikes.len() >= MAX_ADDRESSES {
                let oldest = strikes.iter().min_by_key(|(_, s)| s.last).map(|(ip, _)| *ip);
                oldest.map(|o| strikes.remove(&o));
            }
        }
        let s = strikes.entry(ip).or_insert(Strikes { failures: 0, blocked_until: now, last: now });
        if now.duration_since(s.last) >= FORGET_AFTER {
            s.failures = 0;
        }
        s.failures += 1;
        s.last = now;
        s.blocked_until = now + wait(s.failures);
    }

    /// A successful join from `ip`: its record goes.
    pub fn succeeded(&self, ip: IpAddr) {
        self.strikes.lock().expect("throttle lock").remove(&ip);
    }
}

/// The wait after the `n`th failure in a row.
fn wait(n: u32) -> Duration {
    if n <= FREE_FAILURES {
        return Duration::ZERO;
    }
    let doubled = Duration::from_secs(1u64 << (n - FREE_FAILURES - 1).min(16));
    doubled.min(MAX_WAIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_back_off_per_address_and_success_clears() {
        let t = Throttle::default();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let now = Instant::now();
        for _ in 0..3 {
            t.failed(a, now);
            assert!(t.check(a, now).is_ok(), "typos are free");
        }
        t.failed(a, now);
        assert_eq!(t.check(a, now), Err(Duration::from_secs(1)));
        t.failed(a, now);
        assert_eq!(t.check(a, now), Err(Duration::from_secs(2)));
        assert!(t.check(b, now).is_ok(), "another address is not held up");
        for _ in 0..20 {
            t.failed(a, now);
        }
        assert_eq!(t.check(a, now), Err(MAX_WAIT), "at most five minutes");
        assert!(t.check(a, now + MAX_WAIT).is_ok());
        t.succeeded(a);
        t.failed(a, now);
        assert!(t.check(a, now).is_ok(), "a success starts afresh");
    }

    #[test]
    fn old_failures_are_forgotten_and_the_table_is_bounded() {
        let t = Throttle::default();
        let now = Instant::now();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..5 {
            t.failed(a, now);
        }
        t.failed(a, now + FORGET_AFTER);
        assert!(t.check(a, now + FORGET_AFTER).is_ok(), "one failure after a long pause is free again");
        for i in 0..(MAX_ADDRESSES as u32 + 100) {
            t.failed(IpAddr::from(i.to_be_bytes()), now);
        }
        assert!(t.strikes.lock().unwrap().len() <= MAX_ADDRESSES);
    }
}
