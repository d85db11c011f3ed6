//! `k8s server`: the datastore, the control plane and (unless disabled) a
//! node, started in order with readiness gates under one supervisor, and
//! stopped in reverse order on SIGTERM ([`start`] draws the order).

mod addons;
pub mod config;
mod control_plane;
pub mod status;
mod store;

use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use k8s_openapi::api::core::v1::Node;
use kube::api::{ObjectMeta, Patch, PatchParams};

use crate::components::Supervisor;
use crate::fsutil::write_if_changed;
use crate::controllers::manifests::Deployer;
use crate::host::config::{Addon, Profile};
use crate::host::Layout;
use crate::payload::Components;
use crate::pki::{self, Identity, Pki, PkiParams};
use crate::{join, kubeclient, node, templates, upgrade};

pub use config::Config;

const API_READY_TIMEOUT: Duration = Duration::from_secs(180);

pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let started = Instant::now();
    let layout = Layout::new(&cfg.data_dir);
    preflight(&cfg, &layout)?;
    let _lock = layout.lock()?;
    tracing::info!(node = %cfg.node_name, ip = %cfg.node_ip, data_dir = %cfg.data_dir.display(), "k8s server starting");

    let components = locate_components(&cfg).await?;
    // A stop asked for while starting stops what was started so far.
    let stop = crate::signals::terminated();
    tokio::pin!(stop);
    let mut sup = Supervisor::default();
    let status = status::Writer::start(&layout, &cfg.node_name);
    let outcome = tokio::select! {
        result = start(&cfg, &layout, &components, &mut sup, &status) => Some(result),
        _ = &mut stop => None,
    };
    match outcome {
        Some(Ok(())) => {}
        Some(Err(e)) => {
            tracing::error!("start failed: {e:#}; stopping what was started");
            shutdown(sup, status).await;
            return Err(e);
        }
        None => {
            tracing::info!("stop requested while starting");
            shutdown(sup, status).await;
            return Ok(());
        }
    }
    tracing::info!(seconds = format!("{:.1}", started.elapsed().as_secs_f64()), "k8s server ready; kubectl: k8s kubectl get nodes");
    crate::systemd::notify_ready();
    status.set_ready(&sup);
    tokio::select! {
        _ = &mut stop => {}
        _ = status.refresh_forever(&sup) => {}
    }
    shutdown(sup, status).await;
    Ok(())
}

/// Everything from the join (HA) to the node Ready, each component started
/// under `sup` once what it needs is ready (see [`crate::components`] for
/// the lifecycle every component follows):
///
/// datastore → kube-apiserver (ready) → controller-manager, scheduler (the
/// three in one process) → addons → join endpoint → node (containerd,
/// kubelet, kube-proxy, Ready) → pod routes.
async fn start(cfg: &Config, layout: &Layout, components: &Components, sup: &mut Supervisor,
    status: &status::Writer) -> anyhow::Result<()> {
    let joined = store::join_if_needed(cfg, layout).await?;
    let pki = ensure_pki(cfg, layout)?;
    ensure_encryption(cfg, &pki)?;
    let kubeconfigs = Kubeconfigs::ensure(cfg, layout, &pki)?;
    store::start(cfg, layout, components, &pki, sup, joined).await?;
    bring_up(cfg, layout, components, &pki, &kubeconfigs, sup, status).await
}

/// Stops every component, last started first (the datastore last).
async fn shutdown(mut sup: Supervisor, status: status::Writer) {
    tracing::info!("k8s server stopping");
    sup.stop_all().await;
    status.remove();
    tracing::info!("k8s server stopped");
}

/// Checks what a user can get wrong before anything is created.
fn preflight(cfg: &Config, layout: &Layout) -> anyhow::Result<()> {
    let addr = std::net::SocketAddr::new(cfg.bind_address, cfg.port);
    if let Err(e) = std::net::TcpListener::bind(addr) {
        bail!("cannot listen on {addr} for the API server: {e}; is another server (k8s, k3s, kube-apiserver) running? stop it or set https-listen-port");
    }
    let join = std::net::SocketAddr::new(cfg.bind_address, cfg.join_port);
    if let Err(e) = std::net::TcpListener::bind(join) {
        bail!("cannot listen on {join} for the join endpoint: {e}; stop what uses it or set join-port");
    }
    if cfg.datastore != config::Datastore::Sqlite {
        for port in [crate::etcd::CLIENT_PORT, crate::etcd::PEER_PORT] {
            let addr = std::net::SocketAddr::new(cfg.node_ip, port);
            if let Err(e) = std::net::TcpListener::bind(addr) {
                bail!("cannot listen on {addr} for etcd: {e}; is another etcd running? stop it");
            }
        }
    }
    if !cfg.disable_agent && crate::fsutil::which("iptables").is_none() {
        bail!("iptables is not installed; kube-proxy needs it (Debian/Ubuntu: apt-get install iptables)");
    }
    if !cfg.disable_agent {
        // Read again when containerd starts; checked here so a bad file creates nothing.
        node::registries::Registries::load(std::path::Path::new(crate::host::paths::REGISTRIES))?;
    }
    // Last: it creates the data dir.
    layout.check_writable()

}

async fn locate_components(cfg: &Config) -> anyhow::Result<Components> {
    let (data_dir, dir) = (cfg.data_dir.clone(), cfg.components_dir.clone());
    let t = Instant::now();
    let c = tokio::task::spawn_blocking(move || Components::locate(&data_dir, dir.as_deref())).await??;
    tracing::info!(dir = %c.dir.display(), kubernetes = %c.manifest.kubernetes_version, ms = t.elapsed().as_millis() as u64, "components ready");
    Ok(c)
}

fn ensure_pki(cfg: &Config, layout: &Layout) -> anyhow::Result<Pki> {
    let mut sans: Vec<String> = vec![
        "kubernetes".into(),
        "kubernetes.default".into(),
        "kubernetes.default.svc".into(),
        format!("kubernetes.default.svc.{}", cfg.cluster_domain),
        "localhost".into(),
        "127.0.0.1".into(),
        cfg.node_name.clone(),
        cfg.node_ip.to_string(),
        cfg.advertise_address.to_string(),
        cfg.api_service_ip().to_string(),
    ];
    sans.extend(cfg.tls_san.iter().cloned());
    sans.dedup();
    let params = PkiParams {
        dir: layout.pki_dir(),
        node_name: cfg.node_name.clone(),
        apiserver_sans: sans,
        kubelet_sans: vec![cfg.node_name.clone(), cfg.node_ip.to_string(), "localhost".into(), "127.0.0.1".into()],
        etcd_sans: etcd_sans(cfg, layout),
    };
    Ok(pki::ensure(&params)?)
}

/// Names on the etcd serving cert: an etcd member's addresses, or the
/// datastore socket's file name (what etcd's client checks for `unixs://`)
/// when the local datastore takes TLS; none otherwise.
fn etcd_sans(cfg: &Config, layout: &Layout) -> Option<Vec<String>> {
    if cfg.datastore != config::Datastore::Sqlite {
        return Some(vec![cfg.node_name.clone(), cfg.node_ip.to_string(), "localhost".into(), "127.0.0.1".into()]);
    }
    let socket = layout.datastore_socket();
    let name = socket.file_name().expect("a socket file").to_string_lossy().into_owned();
    cfg.datastore_tls().then(|| vec![name, "localhost".into()])
}

/// Secrets are encrypted at rest from a cluster's start: a single server
/// makes its key at any start (it is the only reader); in HA only the
/// first server of a new cluster does (before etcd holds data), and joining
/// servers get that key with the shared PKI. An HA cluster older than
/// encryption stays unencrypted rather than have servers with different keys.
fn ensure_encryption(cfg: &Config, pki: &Pki) -> anyhow::Result<()> {
    let starts_cluster = match cfg.datastore {
        config::Datastore::Sqlite => true,
        config::Datastore::EtcdInit => !crate::etcd::has_data(&cfg.data_dir),
        config::Datastore::EtcdJoin { .. } => false,
    };
    if starts_cluster && pki::encryption::ensure(pki)? {
        tracing::info!(file = %pki.encryption_config().display(), "secrets encryption at rest: a new key");
    } else if !pki.encryption_config().exists() {
        tracing::warn!("secrets are stored unencrypted: this HA cluster was created before k8s encrypted them");
    }
    Ok(())
}

/// The kubeconfigs of the supervisor and the components.
struct Kubeconfigs {
    supervisor: std::path::PathBuf,
    controller_manager: std::path::PathBuf,
    scheduler: std::path::PathBuf,
    kubelet: std::path::PathBuf,
    kube_proxy: std::path::PathBuf,
}

impl Kubeconfigs {
    fn ensure(cfg: &Config, layout: &Layout, pki: &Pki) -> anyhow::Result<Kubeconfigs> {
        // Components talk to the local apiserver over loopback.
        let local = format!("https://127.0.0.1:{}", cfg.port);
        let dir = layout.kubeconfig_dir();
        let make = |id| pki::ensure_kubeconfig(pki, id, &cfg.node_name, &local, &dir);
        let admin = make(Identity::Admin)?;
        write_if_changed(&cfg.admin_kubeconfig, &std::fs::read(&admin)?, cfg.admin_kubeconfig_mode)
            .with_context(|| format!("writing the admin kubeconfig {}", cfg.admin_kubeconfig.display()))?;
        Ok(Kubeconfigs {
            supervisor: make(Identity::Supervisor)?,
            controller_manager: make(Identity::ControllerManager)?,
            scheduler: make(Identity::Scheduler)?,
            kubelet: make(Identity::Kubelet)?,
            kube_proxy: make(Identity::KubeProxy)?,
        })
    }
}

async fn bring_up(cfg: &Config, layout: &Layout, c: &Components, pki: &Pki, kc: &Kubeconfigs,
    sup: &mut Supervisor, status: &status::Writer) -> anyhow::Result<()> {
    let socket = layout.datastore_socket();
    let logs = layout.logs_dir();
    std::fs::create_dir_all(&logs)?;
    let store = match cfg.datastore {
        config::Datastore::Sqlite => control_plane::Store::Sqlite { socket: &socket, tls: cfg.datastore_tls() },
        _ => control_plane::Store::Etcd,
    };
    let (audit_policy, admission_config) = (layout.audit_policy(), layout.admission_config());
    write_if_changed(&audit_policy, templates::AUDIT_POLICY.as_bytes(), 0o600)?;
    let admission = match cfg.profile {
        Profile::Standard => templates::ADMISSION,
        Profile::Cis => templates::ADMISSION_CIS,
    };
    write_if_changed(&admission_config, admission.as_bytes(), 0o600)?;
    let inputs = control_plane::Inputs {
        store,
        controller_manager_kubeconfig: &kc.controller_manager,
        scheduler_kubeconfig: &kc.scheduler,
        logs: &logs,
        audit_policy: &audit_policy,
        admission_config: &admission_config,
    };
    // kube-apiserver now, kube-controller-manager and kube-scheduler once it
    // is ready: one process (control_plane).
    sup.start(control_plane::spec(c, pki, cfg, &inputs));
    status.refresh(sup);
    if !cfg.disable_agent {
        // containerd and the images do not need the API server: ready by the time it is.
        node::start_runtime(sup, c, &layout.node(), cfg.profile).await?;
    }
    let client = kubeclient::client(&kc.supervisor).await?;
    let t = Instant::now();
    kubeclient::wait_ready(&client, API_READY_TIMEOUT)
        .await
        .with_context(|| format!("the API server did not become ready; see {}", logs.join("kube-control-plane.log").display()))?;
    tracing::info!(ms = t.elapsed().as_millis() as u64, "kube-apiserver ready");
    let ca = pki.ca_cert();
    let settings = node::Settings {
        node_name: &cfg.node_name,
        node_ip: cfg.node_ip,
        cluster_dns: cfg.cluster_dns,
        cluster_domain: &cfg.cluster_domain,
        cluster_cidr: &cfg.cluster_cidr,
        client_ca: &ca,
        issued_kubelet_kubeconfig: &kc.kubelet,
        kubelet_cert: &pki.kubelet_cert(),
        kubelet_key: &pki.kubelet_key(),
        kube_proxy_kubeconfig: &kc.kube_proxy,
        kubelet_extra_args: &cfg.kubelet_arg,
        pod_network: cfg.pod_network,
        profile: cfg.profile,
        storage_dir: &cfg.storage_dir,
        network_policy: !cfg.disable.contains(&Addon::NetworkPolicy),
    };
    // The kubelet registers while the rest of the control plane starts.
    let kubelet = if cfg.disable_agent { None } else { Some(node::start(sup, c, &layout.node(), &settings).await?) };
    status.refresh(sup);
    deploy_manifests(cfg, layout, c, pki, &client, sup).await?;
    start_controllers(cfg, &client, sup);
    start_join_endpoint(cfg, pki, &client, sup).await?;
    start_upgrade_controller(cfg, pki, c, &client, sup).await?;
    let follower = crate::encryption::Follower { api: client.clone(), server: cfg.node_name.clone(), file: pki.encryption_config() };
    sup.spawn("encryption-config", move |stop| async move {
        stop.or(follower.run()).await;
        Ok(())
    });
    let (certs_of, admin, api, node) = (layout.clone(), cfg.admin_kubeconfig.clone(), client.clone(), cfg.node_name.clone());
    sup.spawn("certificate-expiry", move |stop| async move {
        stop.or(warn_of_expiring_certificates(certs_of, admin, api, node)).await;
        Ok(())
    });
    let (schedule, data_dir, node) = (cfg.backups.clone(), cfg.data_dir.clone(), cfg.node_name.clone());
    sup.spawn("backups", move |stop| async move {
        stop.or(schedule.run(data_dir, node)).await;
        Ok(())
    });
    let Some(kubelet) = kubelet else { return Ok(()) };
    node::join_pod_network(sup, &layout.node(), &settings, kubelet).await?;
    label_control_plane(&client, &cfg.node_name).await;
    // The server's node name is bound like an agent's: no agent token can take it.
    let password = join::binding::password(&cfg.data_dir.join("server"))?;
    if let Err(e) = join::binding::check_or_bind(&client, &cfg.node_name, &password).await {
        tracing::warn!("binding this server's node name: {e}");
    }
    upgrade::executor::Executor {
        kubelet: kubeclient::client(&layout.node().kubelet_kubeconfig).await?,
        kubelet_kubeconfig: layout.node().kubelet_kubeconfig,
        ca: pki.ca_cert(),
        node_name: cfg.node_name.clone(),
        host: upgrade::swap::Host::new(std::path::Path::new(crate::host::paths::BINARY), &cfg.data_dir),
        unit: crate::host::paths::SERVER_UNIT,
        server: Some(upgrade::executor::ServerSide {
            api: client.clone(),
            etcd: etcd_pki(cfg, pki),
            binaries: upgrade::swap::binaries_dir(&cfg.data_dir),
            sqlite: (cfg.datastore == config::Datastore::Sqlite).then(|| layout.datastore_dir()),
        }),
    }
    .spawn(sup);
    Ok(())
}

/// The built-in controllers `disable` leaves on (in-process services, each
/// leader-elected).
fn start_controllers(cfg: &Config, client: &kube::Client, sup: &mut Supervisor) {
    use crate::controllers::{local_path, servicelb};
    if !cfg.disable.contains(&Addon::Servicelb) {
        let (api, identity) = (client.clone(), cfg.node_name.clone());
        sup.spawn("servicelb", move |stop| async move {
            stop.or(servicelb::run(api, identity)).await;
            Ok(())
        });
    }
    if !cfg.disable.contains(&Addon::LocalStorage) {
        let (api, identity) = (client.clone(), cfg.node_name.clone());
        sup.spawn("local-path", move |stop| async move {
            stop.or(local_path::run(api, identity)).await;
            Ok(())
        });
    }
}

/// Writes the default join tokens and serves the join endpoint (an
/// in-process service).
async fn start_join_endpoint(cfg: &Config, pki: &Pki, client: &kube::Client, sup: &mut Supervisor) -> anyhow::Result<()> {
    let ca_pem = std::fs::read_to_string(pki.ca_cert())?;
    let restored = Layout::new(&cfg.data_dir).restored_marker();
    if restored.exists() {
        // Hosts of the backup may have been reinstalled (new node passwords).
        let n = join::binding::release_all_but(client, &cfg.node_name).await.context("releasing the restored cluster's node names")?;
        tracing::info!(released = n, "restored from a backup: node names released for hosts to join again");
        std::fs::remove_file(&restored)?;
    }
    for role in [join::token::Role::Server, join::token::Role::Agent] {
        join::tokens::ensure_default(client, &cfg.data_dir, ca_pem.as_bytes(), role).await
            .context("writing the default join tokens")?;
    }
    let cluster = join::server::Cluster {
        api: client.clone(),
        pki: pki.clone(),
        ca_pem,
        api_server: format!("https://{}:{}", cfg.advertise_address, cfg.port),
        cluster_cidr: cfg.cluster_cidr.clone(),
        service_cidr: cfg.service_cidr.clone(),
        cluster_dns: cfg.cluster_dns,
        cluster_domain: cfg.cluster_domain.clone(),
        pod_network: cfg.pod_network,
        profile: cfg.profile,
        network_policy: !cfg.disable.contains(&Addon::NetworkPolicy),
        servers_may_join: cfg.datastore != config::Datastore::Sqlite,
        joining: Default::default(),
        binaries: upgrade::swap::binaries_dir(&cfg.data_dir),
        downloads: std::sync::Arc::new(tokio::sync::Semaphore::new(2)),
    };
    let bindings = client.clone();
    sup.spawn("node-bindings", move |stop| async move {
        stop.or(join::binding::release_orphans(bindings)).await;
        Ok(())
    });
    let addr = std::net::SocketAddr::new(cfg.bind_address, cfg.join_port);
    sup.spawn("join-endpoint", move |mut stop| async move {
        join::server::serve(addr, cluster, async move { stop.requested().await }).await
    });
    Ok(())
}

/// Installs the UpgradePlan resource and runs the upgrade controller (an
/// in-process service; one leader among the servers).
async fn start_upgrade_controller(cfg: &Config, pki: &Pki, c: &Components, client: &kube::Client, sup: &mut Supervisor)
    -> anyhow::Result<()> {
    upgrade::crd::install(client).await.context("installing the UpgradePlan resource")?;
    let setup = upgrade::controller::Setup {
        identity: cfg.node_name.clone(),
        etcd: etcd_pki(cfg, pki),
        etcd_version: c.manifest.parts.iter().find(|p| p.name == "etcd").map(|p| p.version.clone()),
    };
    let client = client.clone();
    sup.spawn("upgrade-controller", move |stop| async move {
        stop.or(upgrade::controller::run(client, setup)).await;
        Ok(())
    });
    Ok(())
}

/// Twice a day: a log line and a Warning Event on this server's Node for
/// each certificate within 30 days of its end (or past it), and each CA
/// that needs rotating. Leaves are renewed only at a start, so a server
/// that runs for most of a year needs a restart before they end.
async fn warn_of_expiring_certificates(layout: Layout, admin_kubeconfig: std::path::PathBuf, client: kube::Client, node: String) {
    use kube::runtime::events::{Event, EventType, Recorder, Reporter};
    let recorder = Recorder::new(client, Reporter { controller: "k8s-server".into(), instance: Some(node.clone()) });
    let node_ref = k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Node".into()),
        name: Some(node.clone()),
        uid: Some(node.clone()),
        ..Default::default()
    };
    loop {
        let now = time::OffsetDateTime::now_utc();
        let lt = pki::Lifetimes::from_env().unwrap_or(pki::Lifetimes::DEFAULT);
        match pki::expiry::check(&layout, &admin_kubeconfig, &lt, now) {
            Ok(rows) => {
                for row in pki::expiry::warnings(&rows, now) {
                    let note = format!("{} ({}) ends {} ({} days): {}; restart the server to renew a leaf (k8s certs check)",
                        row.file.display(), row.cert.subject_cn, row.cert.not_after.date(), row.days_left, row.status.as_str());
                    tracing::warn!("certificate: {note}");
                    let ev = Event { type_: EventType::Warning, reason: "CertificateExpiring".into(), note: Some(note), action: "CheckCertificates".into(), secondary: None };
                    if let Err(e) = recorder.publish(&ev, &node_ref).await {
                        tracing::debug!("certificate event: {e}");
                    }
                }
            }
            Err(e) => tracing::warn!("checking certificates: {e:#}"),
        }
        tokio::time::sleep(Duration::from_secs(12 * 3600)).await;
    }
}

/// The PKI that reaches this server's etcd member, when it runs one (HA).
fn etcd_pki(cfg: &Config, pki: &Pki) -> Option<Pki> {
    (cfg.datastore != config::Datastore::Sqlite).then(|| pki.clone())
}

/// The built-in addons' manifests: file name in the manifests dir, the
/// addon that disables it (none: always deployed), the rendered text.
fn builtin_manifests(cfg: &Config, c: &Components, pki: &Pki) -> anyhow::Result<Vec<(&'static str, Option<Addon>, String)>> {
    let coredns = templates::render(templates::COREDNS, &[
        ("cluster_domain", &cfg.cluster_domain),
        ("cluster_dns", &cfg.cluster_dns.to_string()),
        ("coredns_image", &c.image("coredns")?),
    ]);
    Ok(vec![
        ("coredns.yaml", Some(Addon::Coredns), coredns),
        ("node-certificates.yaml", None, templates::NODE_CERTIFICATES.to_string()),
        ("local-storage.yaml", Some(Addon::LocalStorage), templates::LOCAL_STORAGE.to_string()),
        ("network-policy.yaml", Some(Addon::NetworkPolicy), templates::NETWORK_POLICY.to_string()),
        ("metrics-server.yaml", Some(Addon::MetricsServer), addons::metrics_server(&c.image("metrics-server")?, pki)?),
    ])
}

/// Writes the enabled built-in addons into the manifests dir (removing the
/// disabled ones, and their objects), applies the dir until the built-ins
/// are in (a minute while the API server settles: RBAC, discovery), then
/// keeps the dir applied ([`Deployer`], an in-process service).
async fn deploy_manifests(cfg: &Config, layout: &Layout, c: &Components, pki: &Pki, client: &kube::Client,
    sup: &mut Supervisor) -> anyhow::Result<()> {
    let dir = layout.manifests_dir();
    let mut required = Vec::new();
    for (name, addon, manifest) in builtin_manifests(cfg, c, pki)? {
        let file = dir.join(name);
        if addon.is_some_and(|a| cfg.disable.contains(&a)) {
            remove_addon(client, &file, &manifest).await?;
        } else {
            write_if_changed(&file, manifest.as_bytes(), 0o600)?;
            required.push(name);
        }
    }
    let mut deployer = Deployer::new(client.clone(), &dir, &layout.manifests_record());
    let deadline = Instant::now() + Duration::from_secs(60);
    let failed = loop {
        let failed = deployer.sync().await;
        match failed.iter().find(|(name, _)| required.contains(&name.as_str())) {
            None => break failed,
            Some((name, e)) if Instant::now() >= deadline => bail!("applying {}: {e}", dir.join(name).display()),
            Some((name, e)) => tracing::debug!("applying {name}: {e}; retrying"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    for (name, e) in failed {
        deployer.report(&name, &e);
    }
    sup.spawn("manifests", move |stop| async move {
        stop.or(deployer.run()).await;
        Ok(())
    });
    Ok(())
}

/// A disabled addon: its file leaves the manifests dir, and its objects the
/// cluster (also those a server applied before the dir kept a record).
async fn remove_addon(client: &kube::Client, file: &std::path::Path, manifest: &str) -> anyhow::Result<()> {
    match std::fs::remove_file(file) {
        Ok(()) => tracing::info!(manifest = %file.display(), "addon disabled: manifest removed"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing the disabled addon's {}", file.display())),
    }
    for object in kubeclient::parse_manifest(manifest)?.iter().rev() {
        let types = object.types.as_ref().context("a built-in manifest names its kinds")?;
        let name = object.metadata.name.as_deref().unwrap_or_default();
        if kubeclient::delete_object(client, &types.api_version, &types.kind, object.metadata.namespace.as_deref(), name).await? {
            tracing::info!("addon disabled: {} {name} deleted", types.kind);
        }
    }
    Ok(())
}

/// Marks the node as a control-plane node (kubelets may not set node-role
/// labels on themselves).
async fn label_control_plane(client: &kube::Client, node_name: &str) {
    let patch = Node {
        metadata: ObjectMeta {
            labels: Some([("node-role.kubernetes.io/control-plane".to_string(), "true".to_string())].into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let nodes: kube::Api<Node> = kube::Api::all(client.clone());
    if let Err(e) = nodes.patch(node_name, &PatchParams::default(), &Patch::Merge(&patch)).await {
        tracing::warn!("cannot label node {node_name}: {e}");
    }
}
