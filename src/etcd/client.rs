//! A client of the carried etcd's Cluster and Maintenance APIs over mTLS
//! (the apiserver's etcd client cert): membership changes and member status;
//! and a plain read of stored values (what `k8s secrets-encrypt` checks).

use std::time::Duration;

use anyhow::{bail, Context};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::datastore::pb::{
    cluster_client::ClusterClient, kv_client::KvClient, maintenance_client::MaintenanceClient, Member, MemberAddRequest,
    MemberListRequest, MemberPromoteRequest, MemberRemoveRequest, PutRequest, RangeRequest, RequestOp, SnapshotRequest, StatusRequest,
    StatusResponse, TxnRequest,
};
use crate::pki::Pki;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// A connection to one member (the first of `endpoints` that answers).
pub struct Client {
    channel: Channel,
}

impl Client {
    pub async fn connect(endpoints: &[String], pki: &Pki) -> anyhow::Result<Client> {
        let tls = tls(pki)?;
        let mut errors = Vec::new();
        for url in endpoints {
            let endpoint = Endpoint::from_shared(url.clone())?
                .tls_config(tls.clone())?
                .connect_timeout(CONNECT_TIMEOUT)
                .timeout(CALL_TIMEOUT);
            match endpoint.connect().await {
                Ok(channel) => return Ok(Client { channel }),
                Err(e) => errors.push(format!("{url}: {}", source_chain(&e))),
            }
        }
        bail!("cannot reach any etcd member ({})", errors.join("; "))
    }

    pub async fn status(&self) -> anyhow::Result<StatusResponse> {
        let mut m = MaintenanceClient::new(self.channel.clone());
        Ok(m.status(StatusRequest {}).await.map_err(rpc("status"))?.into_inner())
    }

    pub async fn members(&self) -> anyhow::Result<Vec<Member>> {
        let mut c = ClusterClient::new(self.channel.clone());
        let req = MemberListRequest { linearizable: false };
        Ok(c.member_list(req).await.map_err(rpc("member list"))?.into_inner().members)
    }

    /// Adds a learner; returns its id and the members after the change.
    pub async fn add_learner(&self, peer_url: &str) -> anyhow::Result<(u64, Vec<Member>)> {
        let mut c = ClusterClient::new(self.channel.clone());
        let req = MemberAddRequest { peer_ur_ls: vec![peer_url.to_string()], is_learner: true };
        let resp = c.member_add(req).await.map_err(rpc("member add"))?.into_inner();
        let id = resp.member.map(|m| m.id).context("etcd added a member but did not say its id")?;
        Ok((id, resp.members))
    }

    pub async fn promote(&self, id: u64) -> Result<(), tonic::Status> {
        let mut c = ClusterClient::new(self.channel.clone());
        c.member_promote(MemberPromoteRequest { id }).await.map(|_| ())
    }

    /// Every key under `prefix` with its value (linearizable).
    pub async fn values_under(&self, prefix: &[u8]) -> anyhow::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut kv = KvClient::new(self.channel.clone());
        let req = RangeRequest { key: prefix.to_vec(), range_end: crate::datastore::prefix_end(prefix), ..Default::default() };
        let resp = kv.range(req).await.map_err(rpc("range"))?.into_inner();
        Ok(resp.kvs.into_iter().map(|kv| (kv.key, kv.value)).collect())
    }

    /// Puts every key (no leases), in transactions of at most 100 writes
    /// (etcd's default limit is 128 operations per transaction).
    pub async fn put_all(&self, kvs: &[(Vec<u8>, Vec<u8>)]) -> anyhow::Result<()> {
        use crate::datastore::pb::request_op::Request;
        let mut kv = KvClient::new(self.channel.clone());
        for chunk in kvs.chunks(100) {
            let success = chunk
                .iter()
                .map(|(key, value)| RequestOp { request: Some(Request::RequestPut(PutRequest { key: key.clone(), value: value.clone(), ..Default::default() })) })
                .collect();
            kv.txn(TxnRequest { success, ..Default::default() }).await.map_err(rpc("txn"))?;
        }
        Ok(())
    }

    /// Streams the member's snapshot into `dest`; the revision it holds (at
    /// least: etcd's snapshot stream may not say, its status just before does).
    pub async fn snapshot_to(&self, dest: &std::path::Path) -> anyhow::Result<i64> {
        use tokio::io::AsyncWriteExt;
        let mut revision = self.status().await?.header.map_or(0, |h| h.revision);
        let mut m = MaintenanceClient::new(self.channel.clone());
        let mut stream = m.snapshot(SnapshotRequest {}).await.map_err(rpc("snapshot"))?.into_inner();
        let mut file = tokio::fs::File::create(dest).await.with_context(|| format!("writing {}", dest.display()))?;
        while let Some(chunk) = stream.message().await.map_err(rpc("snapshot"))? {
            if let Some(h) = chunk.header {
                revision = revision.max(h.revision);
            }
            file.write_all(&chunk.blob).await?;
        }
        file.sync_all().await?;
        Ok(revision)
    }

    pub async fn remove(&self, id: u64) -> anyhow::Result<()> {
        let mut c = ClusterClient::new(self.channel.clone());
        c.member_remove(MemberRemoveRequest { id }).await.map_err(rpc("member remove"))?;
        Ok(())
    }
}

fn tls(pki: &Pki) -> anyhow::Result<ClientTlsConfig> {
    let read = |p: std::path::PathBuf| std::fs::read(&p).with_context(|| format!("reading {}", p.display()));
    Ok(ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(pki.etcd_ca_cert())?))
        .identity(Identity::from_pem(read(pki.apiserver_etcd_client_cert())?, read(pki.apiserver_etcd_client_key())?)))
}

fn rpc(what: &'static str) -> impl Fn(tonic::Status) -> anyhow::Error {
    move |s| anyhow::anyhow!("etcd {what}: {}", s.message())
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}
