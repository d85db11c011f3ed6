//! Leader election on a coordination.k8s.io Lease, as client-go's
//! leaderelection does it (kube-runtime has none): a candidate takes the
//! Lease when it is free or expired, the holder renews it, and every write
//! carries the resourceVersion it read, so two candidates never both win.
//!
//! ```text
//!   campaign ──(lease free or expired: take it)──▶ leading ──(renew fails
//!      ▲                                              │      past the deadline)
//!      └──────────────── work stopped ◀───────────────┘
//! ```

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::runtime::events::{Recorder, Reporter};
use kube::{Api, Client};

/// How long a Lease holds without renewal.
const LEASE_DURATION: Duration = Duration::from_secs(15);
/// How often the holder renews (and a candidate retries).
const RETRY: Duration = Duration::from_secs(2);
/// A holder that could not renew for this long stops its work, before
/// the Lease expires for the others.
const RENEW_DEADLINE: Duration = Duration::from_secs(10);

/// A leader-elected controller: runs `work` with a client and an Event
/// recorder (reporting as controller `lease`, instance `identity`) while
/// this candidate holds the Lease `kube-system/<lease>`; never returns.
pub async fn run_controller<F, Fut>(client: Client, lease: &str, identity: &str, work: F)
where
    F: Fn(Client, Recorder) -> Fut,
    Fut: Future<Output = ()>,
{
    Election::new(client.clone(), lease, identity)
        .lead(|| {
            let reporter = Reporter { controller: lease.into(), instance: Some(identity.into()) };
            work(client.clone(), Recorder::new(client.clone(), reporter))
        })
        .await
}

pub struct Election {
    leases: Api<Lease>,
    name: String,
    identity: String,
}

impl Election {
    /// An election on the Lease `kube-system/<name>`; `identity` names
    /// this candidate (its node).
    pub fn new(client: Client, name: &str, identity: &str) -> Election {
        Election { leases: Api::namespaced(client, "kube-system"), name: name.into(), identity: identity.into() }
    }

    /// Runs `work` whenever this candidate leads, and drops it as soon as
    /// leadership is lost; never returns.
    pub async fn lead<F, Fut>(&self, work: F)
    where
        F: Fn() -> Fut,
        Fut: Future<Output = ()>,
    {
        loop {
            while !self.try_acquire().await {
                tokio::time::sleep(RETRY).await;
            }
            tracing::info!(lease = %self.name, identity = %self.identity, "leading");
            tokio::select! {
                _ = work() => {}
                _ = self.keep() => {}
            }
            tracing::warn!(lease = %self.name, "leadership lost; work stopped");
        }
    }

    /// Renews until a renewal fails for longer than the deadline.
    async fn keep(&self) {
        let mut last = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(RETRY).await;
            if self.try_acquire().await {
                last = tokio::time::Instant::now();
            } else if last.elapsed() > RENEW_DEADLINE {
                return;
            }
        }
    }

    /// Takes or renews the Lease once; true when this candidate holds it.
    pub async fn try_acquire(&self) -> bool {
        match self.acquire().await {
            Ok(held) => held,
            Err(e) => {
                tracing::debug!(lease = %self.name, "election: {e}");
                false
            }
        }
    }

    async fn acquire(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let Some(mut lease) = self.leases.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(self.name.clone()), ..Default::default() },
                spec: Some(self.held_since(now, 0)),
            };
            return created_or_lost(self.leases.create(&PostParams::default(), &lease).await);
        };
        let spec = lease.spec.take().unwrap_or_default();
        let ours = spec.holder_identity.as_deref() == Some(self.identity.as_str());
        let new_spec = if ours {
            LeaseSpec { renew_time: Some(MicroTime(now)), ..spec }
        } else if expired(&spec, now) {
            self.held_since(now, spec.lease_transitions.unwrap_or(0) + 1)
        } else {
            return Ok(false);
        };
        lease.spec = Some(new_spec);
        // The resourceVersion read above makes this a compare-and-swap.
        created_or_lost(self.leases.replace(&self.name, &PostParams::default(), &lease).await)
    }

    fn held_since(&self, now: Timestamp, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(LEASE_DURATION.as_secs() as i32),
            acquire_time: Some(MicroTime(now)),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }
}

/// A write that lost a race (409) means another candidate holds the Lease.
fn created_or_lost(result: Result<Lease, kube::Error>) -> Result<bool, kube::Error> {
    match result {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether the holder let the Lease run out (a Lease without a renew time
/// or a duration is free).
fn expired(spec: &LeaseSpec, now: Timestamp) -> bool {
    let (Some(renewed), Some(secs)) = (&spec.renew_time, spec.lease_duration_seconds) else { return true };
    renewed.0.as_second() + i64::from(secs) < now.as_second()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_expires_after_its_duration_without_renewal() {
        let renewed = Timestamp::from_second(1_000).unwrap();
        let spec = LeaseSpec { renew_time: Some(MicroTime(renewed)), lease_duration_seconds: Some(15), ..Default::default() };
        assert!(!expired(&spec, Timestamp::from_second(1_015).unwrap()));
        assert!(expired(&spec, Timestamp::from_second(1_016).unwrap()));
        assert!(expired(&LeaseSpec::default(), renewed), "an empty Lease is free");
    }
}
