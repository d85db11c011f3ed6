//! The join endpoint a server serves (HTTPS, the API server's certificate):
//! `GET /cacerts` (public: joiners pin it with their token's hash) and
//! `POST /v1/join/agent` (token-authenticated: a node's credentials) and,
//! in an HA cluster, `POST /v1/join/server` (server tokens only: the shared
//! PKI and a learner's place in etcd; one server at a time), and
//! `GET /v1/upgrade/binary/<sha256>` (a node's client certificate: the
//! `k8s` binary an upgrade plan rolls out, staged here by `k8s upgrade apply`),
//! `POST /v1/node/leave` (a node's client certificate: its name is released).
//!
//! Token checks read the records from memory (a watch, [`tokens::Cache`]);
//! at most [`throttle::MAX_CONNECTIONS`] connections are served at once, and
//! an address that keeps presenting wrong tokens waits longer each time
//! ([`throttle`]).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio_rustls::rustls;

use super::binding;
use super::throttle::{self, Throttle};
use super::token::{Role, Token};
use super::{tokens, AgentConfig, AgentRequest, ServerBundle, ServerRequest};
use crate::etcd::membership::{self, AdmitError};
use crate::pki::{self, Pki};

/// What the endpoint needs to answer.
pub struct Cluster {
    /// The supervisor's API access (token records are followed with it).
    pub api: kube::Client,
    pub pki: Pki,
    pub ca_pem: String,
    pub api_server: String,
    pub cluster_cidr: String,
    pub service_cidr: String,
    pub cluster_dns: std::net::IpAddr,
    pub cluster_domain: String,
    pub pod_network: crate::host::config::PodNetwork,
    pub profile: crate::host::config::Profile,
    /// Whether nodes enforce NetworkPolicies (not disabled).
    pub network_policy: bool,
    /// HA: servers may join (the datastore is etcd).
    pub servers_may_join: bool,
    /// One joining server at a time.
    pub joining: tokio::sync::Mutex<()>,
    /// Where `k8s upgrade apply` keeps binaries, by sha256.
    pub binaries: std::path::PathBuf,
    /// Bounds the binary downloads served at once (the rest wait their turn).
    pub downloads: Arc<tokio::sync::Semaphore>,
}

/// The endpoint's state: the cluster's settings, the token records and
/// the failures per address.
struct Endpoint {
    cluster: Cluster,
    tokens: tokens::Cache,
    throttle: Throttle,
}

impl std::ops::Deref for Endpoint {
    type Target = Cluster;
    fn deref(&self) -> &Cluster {
        &self.cluster
    }
}

/// The client certificate's common name, when the client presented one the
/// cluster CA signed.
#[derive(Clone)]
struct ClientIdentity(Option<String>);

type Shared = Arc<Endpoint>;
type Refusal = (StatusCode, String);

fn router(cluster: Shared) -> Router {
    Router::new()
        .route("/cacerts", get(|State(c): State<Shared>| async move { c.ca_pem.clone() }))
        .route("/v1/join/agent", post(join_agent))
        .route("/v1/join/server", post(join_server))
        .route("/v1/upgrade/binary/:sha256", get(upgrade_binary))
        .route("/v1/node/leave", post(node_leave))
        .with_state(cluster)
}

async fn join_agent(
    State(c): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(req): Json<AgentRequest>,
) -> Result<Json<AgentConfig>, Refusal> {
    authorize(&c, peer, &req.token, Role::Agent).await.inspect_err(|(_, why)| {
        tracing::warn!(node = %req.node_name, %peer, "join refused: {why}");
    })?;
    if let Err(e) = pki::node_dns_name(&req.node_name.to_lowercase()) {
        tracing::warn!(node = %req.node_name, %peer, "join refused: {e}");
        return Err((StatusCode::BAD_REQUEST, format!("{e}; set node-name to one")));
    }
    if req.node_password.len() < 32 {
        return Err((StatusCode::BAD_REQUEST, "the agent sent no node password (a k8s agent older than this server?); upgrade it".into()));
    }
    let node = req.node_name.to_lowercase();
    binding::check_or_bind(&c.api, &node, &req.node_password).await.map_err(|e| {
        tracing::warn!(%node, %peer, "join refused: {e}");
        match e {
            binding::BindError::Taken(_) => (StatusCode::FORBIDDEN, e.to_string()),
            binding::BindError::Api(_) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        }
    })?;
    let config = agent_config(&c, &req).map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))?;
    tracing::info!(node = %req.node_name, %peer, "agent joined");
    Ok(Json(config))
}

async fn join_server(
    State(c): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(req): Json<ServerRequest>,
) -> Result<Json<ServerBundle>, Refusal> {
    if !c.servers_may_join {
        return Err((StatusCode::FORBIDDEN, "this server keeps its state in SQLite (a single-server cluster): other servers cannot join it; an HA cluster starts with cluster-init on its first server".into()));
    }
    authorize(&c, peer, &req.token, Role::Server).await.inspect_err(|(_, why)| {
        tracing::warn!(node = %req.node_name, %peer, "server join refused: {why}");
    })?;
    let _one_at_a_time = c.joining.lock().await;
    let node = req.node_name.to_lowercase();
    let admission = membership::admit(&c.pki, &node, &crate::etcd::peer_url(req.node_ip)).await.map_err(|e| match e {
        AdmitError::Busy => (StatusCode::CONFLICT, e.to_string()),
        AdmitError::Refused(why) => (StatusCode::BAD_REQUEST, why),
        AdmitError::Etcd(_) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    })?;
    let files = shared_files(&c.pki).map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))?;
    tracing::info!(node = %node, %peer, "server admitted as an etcd learner");
    Ok(Json(ServerBundle {
        files,
        initial_cluster: admission.initial_cluster,
        etcd_endpoints: admission.endpoints,
        cluster_cidr: c.cluster_cidr.clone(),
        service_cidr: c.service_cidr.clone(),
        cluster_dns: c.cluster_dns,
        cluster_domain: c.cluster_domain.clone(),
        pod_network: c.pod_network,
        profile: c.profile,
    }))
}

async fn upgrade_binary(
    State(c): State<Shared>,
    axum::Extension(ClientIdentity(who)): axum::Extension<ClientIdentity>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    axum::extract::Path(sha256): axum::extract::Path<String>,
    headers: axum::http::HeaderMap,
) -> Result<axum::response::Response, Refusal> {
    let node = node_of(&who).inspect_err(|_| tracing::warn!(%peer, "binary download refused: no node client certificate"))?;
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err((StatusCode::BAD_REQUEST, format!("{sha256:?} is not a sha256")));
    }
    let slot = c.downloads.clone().acquire_owned().await.map_err(|_| (StatusCode::SERVICE_UNAVAILABLE, "stopping".to_string()))?;
    let path = c.binaries.join(sha256.to_ascii_lowercase());
    let missing = || (StatusCode::NOT_FOUND, format!("this server has no binary {sha256}; run `k8s upgrade apply --binary FILE` on it"));
    let mut file = tokio::fs::File::open(&path).await.map_err(|_| missing())?;
    let size = file.metadata().await.map_err(|_| missing())?.len();
    // `Range: bytes=N-` resumes an interrupted download.
    let from = range_start(&headers).filter(|&n| n < size).unwrap_or(0);
    tokio::io::AsyncSeekExt::seek(&mut file, std::io::SeekFrom::Start(from)).await.map_err(|_| missing())?;
    tracing::info!(%node, %peer, %sha256, from, "upgrade binary sent");
    // The slot travels with the body: it is given back when the transfer ends.
    let chunks = futures::stream::unfold((file, slot), |(mut file, slot)| async move {
        let mut buf = vec![0u8; 256 << 10];
        match tokio::io::AsyncReadExt::read(&mut file, &mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(buf), (file, slot)))
            }
            Err(e) => Some((Err(e), (file, slot))),
        }
    });
    let mut response = axum::response::Response::builder()
        .status(if from > 0 { StatusCode::PARTIAL_CONTENT } else { StatusCode::OK })
        .header(axum::http::header::CONTENT_LENGTH, size - from)
        .header(axum::http::header::CONTENT_TYPE, "application/octet-stream");
    if from > 0 {
        response = response.header(axum::http::header::CONTENT_RANGE, format!("bytes {from}-{}/{size}", size - 1));
    }
    response.body(axum::body::Body::from_stream(chunks)).map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// A node leaving (`k8s reset` on an agent) releases its name: only its own
/// (the client certificate says which), so the host may join again as new.
async fn node_leave(
    State(c): State<Shared>,
    axum::Extension(ClientIdentity(who)): axum::Extension<ClientIdentity>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Result<&'static str, Refusal> {
    let node = node_of(&who)?;
    binding::release_name(&c.api, node).await.map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    tracing::info!(%node, %peer, "node left");
    Ok("released\n")
}

/// The node a client certificate names (`system:node:<name>`).
fn node_of(who: &Option<String>) -> Result<&str, Refusal> {
    who.as_deref()
        .and_then(|w| w.strip_prefix("system:node:"))
        .ok_or_else(|| (StatusCode::UNAUTHORIZED, "a node's client certificate (the kubelet's) is required".into()))
}

/// The start of a `Range: bytes=N-` header, if the request has one.
fn range_start(headers: &axum::http::HeaderMap) -> Option<u64> {
    let value = headers.get(axum::http::header::RANGE)?.to_str().ok()?;
    value.strip_prefix("bytes=")?.strip_suffix('-')?.parse().ok()
}

fn shared_files(pki: &Pki) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    pki.shared_files()
        .iter()
        .map(|path| {
            let name = path.strip_prefix(&pki.dir)?.to_string_lossy().into_owned();
            let pem = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            Ok((name, pem))
        })
        .collect()
}

/// Checks a token: our CA, a known id, the right secret and role, not
/// expired. A server token may also join agents. An address that failed
/// too often is told to wait, without a check.
async fn authorize(c: &Endpoint, peer: SocketAddr, presented: &str, role: Role) -> Result<(), Refusal> {
    let now = std::time::Instant::now();
    if let Err(wait) = c.throttle.check(peer.ip(), now) {
        let why = format!("too many failed joins from {}; try again in {} s", peer.ip(), wait.as_secs().max(1));
        return Err((StatusCode::TOO_MANY_REQUESTS, why));
    }
    let checked = check_token(c, presented, role).await;
    match &checked {
        Ok(()) => c.throttle.succeeded(peer.ip()),
        Err((StatusCode::UNAUTHORIZED, _)) => c.throttle.failed(peer.ip(), now),
        Err(_) => {}
    }
    checked
}

async fn check_token(c: &Endpoint, presented: &str, role: Role) -> Result<(), Refusal> {
    let refused = |why: &str| (StatusCode::UNAUTHORIZED, why.to_string());
    let token = Token::parse(presented).map_err(|e| refused(&e.to_string()))?;
    if token.ca_hash != super::token::ca_hash(c.ca_pem.as_bytes()) {
        return Err(refused("the token belongs to another cluster (its CA hash differs)"));
    }
    let record = c.tokens.find(&token.id).await.map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}")))?;
    let admitted = record.is_some_and(|r| r.admits(&token, role) || r.admits(&token, Role::Server));
    if admitted { Ok(()) } else { Err(refused("unknown, revoked or expired token")) }
}

fn agent_config(c: &Cluster, req: &AgentRequest) -> anyhow::Result<AgentConfig> {
    let node = req.node_name.to_lowercase();
    let kubelet = pki::issue_client(&c.pki, &format!("system:node:{node}"), Some("system:nodes"))?;
    let proxy = pki::issue_client(&c.pki, "system:kube-proxy", None)?;
    let serving = pki::issue_kubelet_serving(&c.pki, &node, req.node_ip)?;
    Ok(AgentConfig {
        ca_pem: c.ca_pem.clone(),
        kubelet_kubeconfig: pki::render_kubeconfig(&c.ca_pem, &c.api_server, "kubelet", &kubelet)?,
        kube_proxy_kubeconfig: pki::render_kubeconfig(&c.ca_pem, &c.api_server, "kube-proxy", &proxy)?,
        kubelet_cert_pem: serving.cert_pem,
        kubelet_key_pem: serving.key_pem,
        api_server: c.api_server.clone(),
        cluster_cidr: c.cluster_cidr.clone(),
        cluster_dns: c.cluster_dns,
        cluster_domain: c.cluster_domain.clone(),
        pod_network: c.pod_network,
        profile: c.profile,
        network_policy: c.network_policy,
    })
}

/// Serves until `stop` resolves.
pub async fn serve(addr: SocketAddr, cluster: Cluster, stop: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    let tls = tls_acceptor(&cluster.pki)?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for the join endpoint; is another server running?"))?;
    let (tokens, follower) = tokens::Cache::start(&cluster.api);
    let _follower = AbortOnDrop(follower);
    let app = router(Arc::new(Endpoint { cluster, tokens, throttle: Throttle::default() }));
    let connections = Arc::new(tokio::sync::Semaphore::new(throttle::MAX_CONNECTIONS));
    tracing::info!(%addr, "join endpoint ready");
    tokio::pin!(stop);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut stop => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => { tracing::warn!("join endpoint accept: {e}"); continue; }
            },
        };
        let Ok(slot) = connections.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "join endpoint: {} connections already; closing this one", throttle::MAX_CONNECTIONS);
            continue;
        };
        let (tls, app) = (tls.clone(), app.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let Ok(Ok(stream)) = tokio::time::timeout(std::time::Duration::from_secs(10), tls.accept(tcp)).await else { return };
            let identity = ClientIdentity(client_common_name(&stream));
            let app = app.layer(axum::Extension(ConnectInfo(peer))).layer(axum::Extension(identity));
            let service = hyper_util::service::TowerToHyperService::new(app);
            let conn = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let _ = tokio::time::timeout(std::time::Duration::from_secs(60), conn).await;
        });
    }
}

/// Ends the token follower with the endpoint.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The common name of the client certificate rustls verified against the
/// cluster CA, if the client sent one.
fn client_common_name(stream: &tokio_rustls::server::TlsStream<tokio::net::TcpStream>) -> Option<String> {
    let der = stream.get_ref().1.peer_certificates()?.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?.to_string();
    Some(cn)
}

/// The API server's certificate; client certificates are optional (the
/// join routes authenticate by token) and, when sent, must chain to the
/// cluster CA.
fn tls_acceptor(pki: &Pki) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    let cert = std::fs::read(pki.apiserver_cert())?;
    let key = std::fs::read(pki.apiserver_key())?;
    let chain = rustls_pemfile::certs(&mut cert.as_slice()).collect::<Result<Vec<_>, _>>()?;
    let key = rustls_pemfile::private_key(&mut key.as_slice())?.context("no key in the API server key file")?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in rustls_pemfile::certs(&mut std::fs::read(pki.ca_cert())?.as_slice()) {
        roots.add(ca?)?;
    }
    let clients = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots)).allow_unauthenticated().build()?;
    let config = rustls::ServerConfig::builder().with_client_cert_verifier(clients).with_single_cert(chain, key)?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
