//! Applies etcd requests to the database inside an open transaction.
//!
//! All writes of one request share one new revision; a request that changes
//! nothing (a delete matching no key, a read-only Txn) takes none. The
//! writer runs this on its connection; read-only Txns run it on a reader.

use rusqlite::{params, Connection};
use tonic::Status;

use super::errors;
use super::keyrange::KeyRange;
use super::pb::{
    request_op::Request, response_op::Response, DeleteRangeRequest, DeleteRangeResponse, Event,
    EventType, KeyValue, PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp,
    ResponseOp, TxnRequest, TxnResponse,
};
use super::query::{self, Revs};

/// etcd's default `--max-txn-ops`.
pub const MAX_TXN_OPS: usize = 128;

pub struct Applier<'c> {
    conn: &'c Connection,
    /// The store's revisions before this request.
    revs: Revs,
    /// Events of this request, all at revision `revs.current + 1`.
    pub events: Vec<Event>,
}

fn storage(e: rusqlite::Error) -> Status {
    errors::storage(&e)
}

impl<'c> Applier<'c> {
    pub fn new(conn: &'c Connection, revs: Revs) -> Self {
        Applier { conn, revs, events: Vec::new() }
    }

    /// The revision this request's writes get.
    fn write_rev(&self) -> i64 {
        self.revs.current + 1
    }

    /// The revision the store is at from this request's point of view.
    pub fn rev(&self) -> i64 {
        if self.events.is_empty() { self.revs.current } else { self.write_rev() }
    }

    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse, Status> {
        // Reads inside a Txn see the Txn's earlier writes.
        query::range(self.conn, req, Revs { current: self.rev(), ..self.revs }, None)
    }

    pub fn put(&mut self, req: &PutRequest) -> Result<PutResponse, Status> {
        check_put(req)?;
        let prev = query::latest_with_ids(self.conn, &KeyRange::Single(req.key.clone()))
            .map_err(storage)?
            .pop();
        if (req.ignore_value || req.ignore_lease) && prev.is_none() {
            return Err(errors::key_not_found());
        }
        let prev_kv = prev.as_ref().map(|(_, kv)| kv);
        let lease = match prev_kv {
            Some(p) if req.ignore_lease => p.lease,
            _ => req.lease,
        };
        if lease != 0 && !self.lease_exists(lease)? {
            return Err(errors::lease_not_found());
        }
        let rev = self.write_rev();
        let kv = KeyValue {
            key: req.key.clone(),
            create_revision: prev_kv.map_or(rev, |p| p.create_revision),
            mod_revision: rev,
            version: prev_kv.map_or(1, |p| p.version + 1),
            value: match prev_kv {
                Some(p) if req.ignore_value => p.value.clone(),
                _ => req.value.clone(),
            },
            lease,
        };
        self.append(&kv, false, prev.as_ref().map(|(id, _)| *id))?;
        let (_, prev_kv) = prev.unzip();
        self.events.push(Event {
            r#type: EventType::Put as i32,
            kv: Some(kv),
            prev_kv: prev_kv.clone(),
        });
        Ok(PutResponse { header: None, prev_kv: prev_kv.filter(|_| req.prev_kv) })
    }

    pub fn delete(&mut self, req: &DeleteRangeRequest) -> Result<DeleteRangeResponse, Status> {
        if req.key.is_empty() {
            return Err(errors::empty_key());
        }
        let kr = KeyRange::new(&req.key, &req.range_end);
        let victims = self.delete_range(&kr)?;
        Ok(DeleteRangeResponse {
            header: None,
            deleted: victims.len() as i64,
            prev_kvs: if req.prev_kv { victims } else { Vec::new() },
        })
    }

    /// Deletes every live key in `kr`; returns what was there.
    pub fn delete_range(&mut self, kr: &KeyRange) -> Result<Vec<KeyValue>, Status> {
        let live = query::latest_with_ids(self.conn, kr).map_err(storage)?;
        let rev = self.write_rev();
        let mut victims = Vec::with_capacity(live.len());
        for (id, kv) in live {
            let tombstone = KeyValue { key: kv.key.clone(), mod_revision: rev, ..Default::default() };
            self.append(&tombstone, true, Some(id))?;
            self.events.push(Event {
                r#type: EventType::Delete as i32,
                kv: Some(tombstone),
                prev_kv: Some(kv.clone()),
            });
            victims.push(kv);
        }
        Ok(victims)
    }

    /// Adds a history row and points the live-key index at it.
    fn append(&self, kv: &KeyValue, deleted: bool, prev_id: Option<i64>) -> Result<(), Status> {
        let mut insert = self
            .conn
            .prepare_cached(
                "INSERT INTO log (rev, key, create_rev, version, lease, value, deleted, prev_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .map_err(storage)?;
        insert
            .execute(params![
                kv.mod_revision, kv.key, kv.create_revision, kv.version, kv.lease, kv.value,
                deleted, prev_id
            ])
            .map_err(storage)?;
        let id = self.conn.last_insert_rowid();
        if deleted {
            self.conn
                .prepare_cached("DELETE FROM kv WHERE key = ?1")
                .and_then(|mut s| s.execute([&kv.key]))
                .map_err(storage)?;
        } else {
            self.conn
                .prepare_cached(
                    "INSERT INTO kv (key, id, lease) VALUES (?1, ?2, ?3)
                     ON CONFLICT (key) DO UPDATE SET id = excluded.id, lease = excluded.lease",
                )
                .and_then(|mut s| s.execute(params![kv.key, id, kv.lease]))
                .map_err(storage)?;
        }
        Ok(())
    }

    fn lease_exists(&self, id: i64) -> Result<bool, Status> {
        self.conn
            .prepare_cached("SELECT count(*) FROM lease WHERE id = ?1")
            .and_then(|mut s| s.query_row([id], |r| r.get::<_, i64>(0)))
            .map(|n| n > 0)
            .map_err(storage)
    }

    pub fn txn(&mut self, req: &TxnRequest) -> Result<TxnResponse, Status> {
        check_txn(req)?;
        let mut succeeded = true;
        for c in &req.compare {
            if !query::compare(self.conn, c).map_err(storage)? {
                succeeded = false;
                break;
            }
        }
        let ops = if succeeded { &req.success } else { &req.failure };
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            responses.push(ResponseOp { response: self.request(op)? });
        }
        Ok(TxnResponse { header: None, succeeded, responses })
    }

    fn request(&mut self, op: &RequestOp) -> Result<Option<Response>, Status> {
        Ok(match &op.request {
            Some(Request::RequestRange(r)) => Some(Response::ResponseRange(self.range(r)?)),
            Some(Request::RequestPut(r)) => Some(Response::ResponsePut(self.put(r)?)),
            Some(Request::RequestDeleteRange(r)) => {
                Some(Response::ResponseDeleteRange(self.delete(r)?))
            }
            Some(Request::RequestTxn(r)) => Some(Response::ResponseTxn(self.txn(r)?)),
            None => None,
        })
    }
}

/// True when a Txn may write (so it must go through the writer).
pub fn txn_writes(req: &TxnRequest) -> bool {
    req.success.iter().chain(&req.failure).any(|op| match &op.request {
        Some(Request::RequestPut(_)) | Some(Request::RequestDeleteRange(_)) => true,
        Some(Request::RequestTxn(t)) => txn_writes(t),
        _ => false,
    })
}

/// etcd's Put validation.
pub fn check_put(req: &PutRequest) -> Result<(), Status> {
    if req.key.is_empty() {
        return Err(errors::empty_key());
    }
    if req.ignore_value && !req.value.is_empty() {
        return Err(errors::value_provided());
    }
    if req.ignore_lease && req.lease != 0 {
        return Err(errors::lease_provided());
    }
    Ok(())
}

/// etcd's Txn validation, done before any compare runs: bounded size,
/// every request of both branches well-formed, and no key written twice
/// (two puts, or a put inside a deleted range) on one path.
fn check_txn(req: &TxnRequest) -> Result<(), Status> {
    if req.compare.len() > MAX_TXN_OPS
        || req.success.len() > MAX_TXN_OPS
        || req.failure.len() > MAX_TXN_OPS
    {
        return Err(errors::too_many_ops());
    }
    if req.compare.iter().any(|c| c.key.is_empty()) {
        return Err(errors::empty_key());
    }
    for op in req.success.iter().chain(&req.failure) {
        match &op.request {
            Some(Request::RequestRange(r)) if r.key.is_empty() => return Err(errors::empty_key()),
            Some(Request::RequestDeleteRange(d)) if d.key.is_empty() => return Err(errors::empty_key()),
            Some(Request::RequestPut(p)) => check_put(p)?,
            _ => {}
        }
    }
    for branch in [&req.success, &req.failure] {
        let mut puts = Vec::new();
        let mut dels = Vec::new();
        writes_of(branch, &mut puts, &mut dels)?;
        if puts.iter().any(|k| dels.iter().any(|d: &KeyRange| d.contains(k))) {
            return Err(errors::duplicate_key());
        }
    }
    Ok(())
}

fn writes_of(ops: &[RequestOp], puts: &mut Vec<Vec<u8>>, dels: &mut Vec<KeyRange>) -> Result<(), Status> {
    for op in ops {
        match &op.request {
            Some(Request::RequestPut(p)) => {
                if puts.contains(&p.key) {
                    return Err(errors::duplicate_key());
                }
                puts.push(p.key.clone());
            }
            Some(Request::RequestDeleteRange(d)) => dels.push(KeyRange::new(&d.key, &d.range_end)),
            Some(Request::RequestTxn(t)) => {
                // Only one branch of a nested Txn runs: each may reuse keys of
                // the other, but neither may clash with this level.
                check_txn(t)?;
                let (mut ps, mut ds) = (Vec::new(), Vec::new());
                for branch in [&t.success, &t.failure] {
                    let (mut p, mut d) = (Vec::new(), Vec::new());
                    writes_of(branch, &mut p, &mut d)?;
                    ps.extend(p.into_iter().filter(|k| !ps.contains(k)).collect::<Vec<_>>());
                    ds.extend(d);
                }
                for k in ps {
                    if puts.contains(&k) {
                        return Err(errors::duplicate_key());
                    }
                    puts.push(k);
                }
                dels.extend(ds);
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(k: &str) -> RequestOp {
        RequestOp { request: Some(Request::RequestPut(PutRequest { key: k.into(), ..Default::default() })) }
    }

    fn del(k: &str, end: &str) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
                key: k.into(),
                range_end: end.into(),
                ..Default::default()
            })),
        }
    }

    #[test]
    fn duplicate_puts_are_refused() {
        let t = TxnRequest { success: vec![put("a"), put("a")], ..Default::default() };
        assert_eq!(check_txn(&t).unwrap_err().message(), errors::duplicate_key().message());
    }

    #[test]
    fn put_inside_deleted_range_is_refused() {
        let t = TxnRequest { success: vec![del("a", "c"), put("b")], ..Default::default() };
        assert!(check_txn(&t).is_err());
        let ok = TxnRequest { success: vec![put("a")], failure: vec![put("a")], ..Default::default() };
        assert!(check_txn(&ok).is_ok());
    }

    #[test]
    fn writes_are_detected_in_nested_txns() {
        let inner = TxnRequest { failure: vec![put("x")], ..Default::default() };
        let outer = TxnRequest {
            success: vec![RequestOp { request: Some(Request::RequestTxn(inner)) }],
            ..Default::default()
        };
        assert!(txn_writes(&outer));
        assert!(!txn_writes(&TxnRequest::default()));
    }
}
