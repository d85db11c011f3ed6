//! The gRPC services: thin adapters from etcd requests to the writer and
//! the read pool.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::apply::{self, Applier};
use super::errors;
use super::pb::*;
use super::query;
use super::watch::WatchStream;
use super::writer::{Done, Op, Reply};
use super::Store;

type Res<T> = Result<Response<T>, Status>;
type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Responses per watch or keep-alive stream buffered for a slow client.
const STREAM_BUFFER: usize = 128;
/// Bytes per snapshot message.
const SNAPSHOT_CHUNK: usize = 1 << 20;
/// The etcd version the datastore answers Status with. The API server turns
/// watch progress requests (and with them consistent lists from its watch
/// cache) off for etcd 3.5.0–3.5.12, whose progress answers could overtake
/// events (etcd issues 15220, 17507); ours are sent in stream order after
/// every published event (see `watch.rs`), as etcd 3.6 does.
pub const ETCD_VERSION: &str = "3.6.0";

#[derive(Clone)]
pub struct Service(pub Arc<Store>);

/// etcd's default `--max-request-bytes`.
const MAX_REQUEST_BYTES: usize = 1536 * 1024;

fn check_size(req: &impl prost::Message) -> Result<(), Status> {
    if req.encoded_len() > MAX_REQUEST_BYTES {
        return Err(errors::request_too_large());
    }
    Ok(())
}

impl Service {
    async fn write(&self, op: Op) -> Result<Reply, Status> {
        self.0.writer.submit(op).await
    }

    fn header(&self, rev: i64) -> Option<ResponseHeader> {
        Some(self.0.header(rev))
    }

    fn current_rev(&self) -> i64 {
        self.0.progress.committed.load(Ordering::SeqCst)
    }
}

/// Sub-responses of a Txn carry the Txn's header, as in etcd.
fn fill_txn_headers(resp: &mut TxnResponse, header: &Option<ResponseHeader>) {
    resp.header = header.clone();
    for op in &mut resp.responses {
        match &mut op.response {
            Some(response_op::Response::ResponseRange(r)) => r.header = header.clone(),
            Some(response_op::Response::ResponsePut(r)) => r.header = header.clone(),
            Some(response_op::Response::ResponseDeleteRange(r)) => r.header = header.clone(),
            Some(response_op::Response::ResponseTxn(t)) => fill_txn_headers(t, header),
            None => {}
        }
    }
}

#[tonic::async_trait]
impl kv_server::Kv for Service {
    async fn range(&self, req: Request<RangeRequest>) -> Res<RangeResponse> {
        let req = req.into_inner();
        let pages = self.0.pages.clone();
        let (mut resp, rev) = self
            .0
            .readers
            .with(move |c| {
                let revs = query::revs(c).map_err(|e| errors::storage(&e))?;
                Ok((query::range(c, &req, revs, Some(&pages))?, revs.current))
            })
            .await?;
        let bytes: usize = resp.kvs.iter().map(|kv| kv.key.len() + kv.value.len()).sum();
        if bytes > self.0.tuning.max_response_bytes {
            return Err(errors::response_too_large(bytes, self.0.tuning.max_response_bytes));
        }
        resp.header = self.header(rev);
        Ok(Response::new(resp))
    }

    async fn put(&self, req: Request<PutRequest>) -> Res<PutResponse> {
        check_size(req.get_ref())?;
        let reply = self.write(Op::Put(req.into_inner())).await?;
        let Done::Put(mut resp) = reply.done else { unreachable!("put answers a put") };
        resp.header = self.header(reply.rev);
        Ok(Response::new(resp))
    }

    async fn delete_range(&self, req: Request<DeleteRangeRequest>) -> Res<DeleteRangeResponse> {
        let reply = self.write(Op::Delete(req.into_inner())).await?;
        let Done::Delete(mut resp) = reply.done else { unreachable!("delete answers a delete") };
        resp.header = self.header(reply.rev);
        Ok(Response::new(resp))
    }

    async fn txn(&self, req: Request<TxnRequest>) -> Res<TxnResponse> {
        check_size(req.get_ref())?;
        let req = req.into_inner();
        let (mut resp, rev) = if apply::txn_writes(&req) {
            let reply = self.write(Op::Txn(req)).await?;
            let Done::Txn(resp) = reply.done else { unreachable!("txn answers a txn") };
            (resp, reply.rev)
        } else {
            // Nothing to write: answer from a read snapshot, off the writer.
            self.0
                .readers
                .with(move |c| {
                    let revs = query::revs(c).map_err(|e| errors::storage(&e))?;
                    Ok((Applier::new(c, revs).txn(&req)?, revs.current))
                })
                .await?
        };
        fill_txn_headers(&mut resp, &self.header(rev));
        Ok(Response::new(resp))
    }

    async fn compact(&self, req: Request<CompactionRequest>) -> Res<CompactionResponse> {
        let req = req.into_inner();
        let reply = self.write(Op::Compact(req.revision)).await?;
        if req.physical {
            let mut physical = self.0.physical.clone();
            physical
                .wait_for(|done| *done >= req.revision)
                .await
                .map_err(|_| Status::unavailable("etcdserver: the datastore is shutting down"))?;
        }
        Ok(Response::new(CompactionResponse { header: self.header(reply.rev) }))
    }
}

#[tonic::async_trait]
impl watch_server::Watch for Service {
    type WatchStream = BoxStream<WatchResponse>;

    async fn watch(&self, req: Request<Streaming<WatchRequest>>) -> Res<Self::WatchStream> {
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        tokio::spawn(WatchStream::new(self.0.clone(), tx).run(req.into_inner()));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

#[tonic::async_trait]
impl lease_server::Lease for Service {
    type LeaseKeepAliveStream = BoxStream<LeaseKeepAliveResponse>;

    async fn lease_grant(&self, req: Request<LeaseGrantRequest>) -> Res<LeaseGrantResponse> {
        let req = req.into_inner();
        let reply = self.write(Op::LeaseGrant { id: req.id, ttl: req.ttl }).await?;
        let Done::LeaseGranted { id, ttl } = reply.done else { unreachable!("grant answers a grant") };
        Ok(Response::new(LeaseGrantResponse { header: self.header(reply.rev), id, ttl, error: String::new() }))
    }

    async fn lease_revoke(&self, req: Request<LeaseRevokeRequest>) -> Res<LeaseRevokeResponse> {
        let reply = self.write(Op::LeaseRevoke(req.into_inner().id)).await?;
        Ok(Response::new(LeaseRevokeResponse { header: self.header(reply.rev) }))
    }

    async fn lease_keep_alive(&self, req: Request<Streaming<LeaseKeepAliveRequest>>)
        -> Res<Self::LeaseKeepAliveStream> {
        let mut requests = req.into_inner();
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let this = self.clone();
        let closed = self.0.closed();
        tokio::spawn(async move {
            tokio::pin!(closed);
            loop {
                let req = tokio::select! {
                    _ = &mut closed => return,
                    req = requests.message() => match req {
                        Ok(Some(req)) => req,
                        _ => return,
                    },
                };
                // An unknown or expired lease answers TTL 0, as in etcd.
                let ttl = this.0.leases.renew(req.id).unwrap_or(0);
                let resp = LeaseKeepAliveResponse { header: this.header(this.current_rev()), id: req.id, ttl };
                if tx.send(Ok(resp)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn lease_time_to_live(&self, req: Request<LeaseTimeToLiveRequest>) -> Res<LeaseTimeToLiveResponse> {
        let req = req.into_inner();
        let header = self.header(self.current_rev());
        let Some((granted, left)) = self.0.leases.remaining(req.id) else {
            // etcd reports an unknown lease as TTL -1, not as an error.
            return Ok(Response::new(LeaseTimeToLiveResponse { header, id: req.id, ttl: -1, ..Default::default() }));
        };
        let keys = if req.keys {
            let id = req.id;
            self.0.readers.with(move |c| query::lease_keys(c, id).map_err(|e| errors::storage(&e))).await?
        } else {
            Vec::new()
        };
        Ok(Response::new(LeaseTimeToLiveResponse { header, id: req.id, ttl: left, granted_ttl: granted, keys }))
    }

    async fn lease_leases(&self, _: Request<LeaseLeasesRequest>) -> Res<LeaseLeasesResponse> {
        let leases = self.0.leases.ids().into_iter().map(|id| LeaseStatus { id }).collect();
        Ok(Response::new(LeaseLeasesResponse { header: self.header(self.current_rev()), leases }))
    }
}

impl Service {
    fn member(&self) -> Member {
        Member {
            id: self.0.ids.member,
            name: hostname(),
            peer_ur_ls: Vec::new(),
            client_ur_ls: self.0.client_urls.clone(),
            is_learner: false,
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "k8s".into())
}

#[tonic::async_trait]
impl cluster_server::Cluster for Service {
    async fn member_add(&self, _: Request<MemberAddRequest>) -> Res<MemberAddResponse> {
        Err(errors::not_supported("adding members"))
    }

    async fn member_remove(&self, _: Request<MemberRemoveRequest>) -> Res<MemberRemoveResponse> {
        Err(errors::not_supported("removing members"))
    }

    async fn member_update(&self, _: Request<MemberUpdateRequest>) -> Res<MemberUpdateResponse> {
        Err(errors::not_supported("updating members"))
    }

    async fn member_list(&self, _: Request<MemberListRequest>) -> Res<MemberListResponse> {
        Ok(Response::new(MemberListResponse { header: self.header(self.current_rev()), members: vec![self.member()] }))
    }

    async fn member_promote(&self, _: Request<MemberPromoteRequest>) -> Res<MemberPromoteResponse> {
        Err(errors::not_supported("promoting members"))
    }
}

#[tonic::async_trait]
impl maintenance_server::Maintenance for Service {
    type SnapshotStream = BoxStream<SnapshotResponse>;

    /// etcd's alarms, of which this store raises one: NOSPACE (see
    /// `quota`). GET lists it, DEACTIVATE clears it (what `etcdctl alarm
    /// list|disarm` send); raising one by hand is not supported.
    async fn alarm(&self, req: Request<AlarmRequest>) -> Res<AlarmResponse> {
        use super::pb::alarm_request::AlarmAction;
        let req = req.into_inner();
        let nospace = AlarmMember { member_id: self.0.ids.member, alarm: AlarmType::Nospace as i32 };
        let raised = self.0.alarm.load(Ordering::SeqCst);
        let alarms = match AlarmAction::try_from(req.action) {
            Ok(AlarmAction::Get) => raised.then_some(nospace).into_iter().collect(),
            Ok(AlarmAction::Deactivate) if raised && matches!(AlarmType::try_from(req.alarm), Ok(AlarmType::Nospace | AlarmType::None)) => {
                self.write(Op::AlarmDisarm).await?;
                vec![nospace]
            }
            Ok(AlarmAction::Deactivate) => Vec::new(),
            _ => return Err(errors::not_supported("raising alarms by hand")),
        };
        Ok(Response::new(AlarmResponse { header: self.header(self.current_rev()), alarms }))
    }

    async fn status(&self, _: Request<StatusRequest>) -> Res<StatusResponse> {
        let (db_size, in_use) = self
            .0
            .readers
            .with(|c| super::schema::sizes(c).map_err(|e| errors::storage(&e)))
            .await?;
        let wal = std::fs::metadata(super::schema::db_path(&self.0.data_dir).with_extension("db-wal")).map_or(0, |m| m.len() as i64);
        let rev = self.current_rev();
        Ok(Response::new(StatusResponse {
            header: self.header(rev),
            version: ETCD_VERSION.into(),
            db_size: db_size + wal,
            leader: self.0.ids.member,
            raft_index: rev as u64,
            raft_term: 1,
            raft_applied_index: rev as u64,
            errors: if self.0.alarm.load(Ordering::SeqCst) {
                vec![format!("memberID:{} alarm:NOSPACE ", self.0.ids.member)]
            } else {
                Vec::new()
            },
            db_size_in_use: in_use,
            is_learner: false,
            storage_version: ETCD_VERSION.into(),
            db_size_quota: self.0.tuning.quota().max(0),
        }))
    }

    async fn defragment(&self, _: Request<DefragmentRequest>) -> Res<DefragmentResponse> {
        let reply = self.write(Op::Defragment).await?;
        Ok(Response::new(DefragmentResponse { header: self.header(reply.rev) }))
    }

    async fn hash(&self, _: Request<HashRequest>) -> Res<HashResponse> {
        let (hash, rev) = self.kv_hash(0).await?;
        Ok(Response::new(HashResponse { header: self.header(rev), hash }))
    }

    async fn hash_kv(&self, req: Request<HashKvRequest>) -> Res<HashKvResponse> {
        let (hash, rev) = self.kv_hash(req.into_inner().revision).await?;
        let compacted = self.0.progress.compacted.load(Ordering::SeqCst);
        Ok(Response::new(HashKvResponse { header: self.header(rev), hash, compact_revision: compacted, hash_revision: rev }))
    }

    async fn snapshot(&self, _: Request<SnapshotRequest>) -> Res<Self::SnapshotStream> {
        let dir = self.0.data_dir.clone();
        let (file, rev) = tokio::task::spawn_blocking(move || super::schema::snapshot(&dir))
            .await
            .map_err(|e| Status::internal(format!("snapshot task failed: {e}")))?
            .map_err(|e| Status::internal(format!("cannot take a snapshot: {e}")))?;
        let (tx, rx) = mpsc::channel(4);
        let header = self.header(rev);
        tokio::task::spawn_blocking(move || stream_snapshot(file, header, tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn move_leader(&self, _: Request<MoveLeaderRequest>) -> Res<MoveLeaderResponse> {
        Err(errors::not_supported("moving the leader"))
    }
}

impl Service {
    /// A hash of every live key and value at a revision (HashKV's purpose:
    /// comparing stores), with the revision it covers.
    async fn kv_hash(&self, revision: i64) -> Result<(u32, i64), Status> {
        self.0
            .readers
            .with(move |c| {
                let revs = query::revs(c).map_err(|e| errors::storage(&e))?;
                let req = RangeRequest { key: vec![0], range_end: vec![0], revision, ..Default::default() };
                let resp = query::range(c, &req, revs, None)?;
                let mut h: u32 = 0x811c_9dc5;
                for kv in &resp.kvs {
                    for b in kv.key.iter().chain(&kv.value).chain(&kv.mod_revision.to_le_bytes()) {
                        h = (h ^ *b as u32).wrapping_mul(0x0100_0193);
                    }
                }
                Ok((h, if revision > 0 { revision } else { revs.current }))
            })
            .await
    }
}

/// Streams a snapshot file in chunks followed by its sha256, which etcd
/// appends and etcdctl checks, then removes the file.
fn stream_snapshot(file: tempfile::TempPath, header: Option<ResponseHeader>, tx: mpsc::Sender<Result<SnapshotResponse, Status>>) {
    use sha2::Digest;
    use std::io::Read;
    let fail = |e: std::io::Error| {
        let _ = tx.blocking_send(Err(Status::internal(format!("cannot read snapshot: {e}"))));
    };
    let mut f = match std::fs::File::open(&file) {
        Ok(f) => f,
        Err(e) => return fail(e),
    };
    let mut remaining = f.metadata().map(|m| m.len()).unwrap_or(0) + 32;
    let mut hasher = sha2::Sha256::new();
    let mut header = header;
    while remaining > 0 {
        let mut blob = vec![0u8; SNAPSHOT_CHUNK.min(remaining as usize - 32)];
        if let Err(e) = f.read_exact(&mut blob) {
            return fail(e);
        }
        hasher.update(&blob);
        remaining -= blob.len() as u64;
        if remaining == 32 {
            blob.extend_from_slice(&hasher.clone().finalize());
            remaining = 0;
        }
        let resp = SnapshotResponse { header: header.take(), remaining_bytes: remaining, blob, version: ETCD_VERSION.into() };
        if tx.blocking_send(Ok(resp)).is_err() {
            return;
        }
    }
}

/// Serves all five etcd services.
pub fn routes(svc: Service) -> tonic::service::Routes {
    let limit = 2 * 1024 * 1024 + 512 * 1024;
    tonic::service::Routes::new(kv_server::KvServer::new(svc.clone()).max_decoding_message_size(limit).max_encoding_message_size(usize::MAX))
        .add_service(watch_server::WatchServer::new(svc.clone()).max_decoding_message_size(limit).max_encoding_message_size(usize::MAX))
        .add_service(lease_server::LeaseServer::new(svc.clone()))
        .add_service(cluster_server::ClusterServer::new(svc.clone()))
        .add_service(maintenance_server::MaintenanceServer::new(svc).max_encoding_message_size(usize::MAX))
}
