//! etcd's space quota and NOSPACE alarm: when the database would grow past
//! the quota (etcd's default: 2 GiB), the alarm is raised and kept (in
//! `meta`, so a restart keeps it); while it is raised, requests that add
//! data (Put, a Txn with a Put, LeaseGrant) fail with "database space
//! exceeded" and everything else works: reads, deletes, compaction,
//! defragmentation. `etcdctl alarm list` shows it and `etcdctl alarm
//! disarm` clears it (after compact + defrag made room, as with etcd).

use super::pb::request_op::Request;
use super::pb::{PutRequest, RequestOp, TxnRequest};
use super::writer::Op;

/// etcd's default `--quota-backend-bytes`.
pub const DEFAULT_BYTES: i64 = 2 << 30;
/// The `meta` row that keeps the alarm across restarts.
pub const ALARM_META: &str = "alarm_nospace";
/// Bytes a stored row costs besides its key and value (a `log` row and a
/// `kv` row, indexes), a rough upper bound like etcd's request cost.
const ROW_OVERHEAD: i64 = 256;

/// What `op` may add to the database; None when it adds nothing (it is
/// allowed while the alarm is raised).
pub fn cost(op: &Op) -> Option<i64> {
    match op {
        Op::Put(p) => Some(put_cost(p)),
        Op::Txn(t) => txn_cost(t),
        Op::LeaseGrant { .. } => Some(ROW_OVERHEAD),
        _ => None,
    }
}

fn put_cost(p: &PutRequest) -> i64 {
    2 * (p.key.len() + p.value.len()) as i64 + ROW_OVERHEAD
}

fn txn_cost(t: &TxnRequest) -> Option<i64> {
    // One branch runs: the dearer one counts.
    let branch = |ops: &[RequestOp]| ops.iter().filter_map(op_cost).reduce(|a, b| a + b);
    match (branch(&t.success), branch(&t.failure)) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0).max(b.unwrap_or(0))),
    }
}

fn op_cost(op: &RequestOp) -> Option<i64> {
    match &op.request {
        Some(Request::RequestPut(p)) => Some(put_cost(p)),
        Some(Request::RequestTxn(t)) => txn_cost(t),
        _ => None,
    }
}

/// Whether a request costing `cost` may be applied to a database of
/// `size` bytes: never while the alarm is raised; raises it (returns
/// `Exceeded`) when it would cross `quota` (negative: no quota).
pub fn admit(cost: i64, size: i64, quota: i64, alarmed: bool) -> Admit {
    if alarmed {
        Admit::Refused
    } else if quota >= 0 && size + cost > quota {
        Admit::Exceeded
    } else {
        Admit::Yes
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    Yes,
    /// Refused because the alarm is raised.
    Refused,
    /// Refused, and the alarm is to be raised now.
    Exceeded,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datastore::pb::DeleteRangeRequest;

    fn put(k: &str, v: usize) -> PutRequest {
        PutRequest { key: k.as_bytes().to_vec(), value: vec![0; v], ..Default::default() }
    }

    #[test]
    fn only_requests_that_add_data_cost_anything() {
        assert_eq!(cost(&Op::Put(put("k", 10))), Some(2 * 11 + ROW_OVERHEAD));
        assert_eq!(cost(&Op::Delete(DeleteRangeRequest::default())), None);
        assert_eq!(cost(&Op::Compact(5)), None);
        let txn = TxnRequest {
            success: vec![RequestOp { request: Some(Request::RequestPut(put("a", 100))) }],
            failure: vec![RequestOp { request: Some(Request::RequestDeleteRange(DeleteRangeRequest::default())) }],
            ..Default::default()
        };
        assert_eq!(cost(&Op::Txn(txn)), Some(2 * 101 + ROW_OVERHEAD));
        assert_eq!(cost(&Op::Txn(TxnRequest::default())), None, "a read-only Txn adds nothing");
    }

    #[test]
    fn the_alarm_refuses_until_disarmed() {
        assert_eq!(admit(100, 900, 1000, false), Admit::Yes);
        assert_eq!(admit(101, 900, 1000, false), Admit::Exceeded);
        assert_eq!(admit(1, 0, 1000, true), Admit::Refused);
        assert_eq!(admit(1 << 40, 1 << 40, -1, false), Admit::Yes, "a negative quota is none");
    }
}
