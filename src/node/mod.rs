//! The node part of a server and of an agent: containerd with the carried
//! images, kubelet, kube-proxy and the pod network, brought up the same way
//! by both ([`bring_up`]).

pub mod api_balancer;
pub mod client_cert;
pub mod host_ports;
mod host_settings;
pub mod images;
pub mod local_path;
mod masquerade;
pub mod network_policy;
pub mod registries;
pub mod routes;
pub mod vxlan;

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use k8s_openapi::api::core::v1::Node;
use kube::api::{ObjectMeta, Patch, PatchParams};

use crate::components::{Spec, Supervisor};
use crate::fsutil::write_if_changed;
use crate::host::facts;
use crate::host::layout::NodePaths as Paths;
use crate::kubeclient;
use crate::payload::Components;
use crate::templates;
use crate::version::VERSION;

pub use crate::host::config::{PodNetwork, Profile};

/// What the node needs to know about the cluster and itself.
pub struct Settings<'a> {
    pub node_name: &'a str,
    pub node_ip: IpAddr,
    pub cluster_dns: IpAddr,
    pub cluster_domain: &'a str,
    pub cluster_cidr: &'a str,
    pub client_ca: &'a Path,
    /// The kubeconfig the cluster issued for this node's kubelet: it seeds
    /// the kubelet's certificate store ([`client_cert`]).
    pub issued_kubelet_kubeconfig: &'a Path,
    pub kubelet_cert: &'a Path,
    pub kubelet_key: &'a Path,
    pub kube_proxy_kubeconfig: &'a Path,
    pub kubelet_extra_args: &'a [String],
    pub pod_network: PodNetwork,
    pub profile: Profile,
    /// Where this node's local-path volumes go.
    pub storage_dir: &'a Path,
    /// Whether this node enforces NetworkPolicies (the cluster's
    /// `network-policy` addon).
    pub network_policy: bool,
}

/// The Node annotation with the `k8s` version the node runs (the kubelet
/// reports only Kubernetes'), published at every start.
pub const VERSION_ANNOTATION: &str = "upgrade.k8s.local/version";
/// The Node annotation saying whether `k8s` runs as a systemd service
/// here ("systemd") or not ("none"): an upgrade's rollback guard needs it.
pub const INIT_ANNOTATION: &str = "upgrade.k8s.local/init";

/// How long a node may take from its kubelet's start to each of
/// "has a pod CIDR" and "Ready".
const READY_TIMEOUT: Duration = Duration::from_secs(300);

/// A node's bring-up, the same for `k8s server` and `k8s agent`, once
/// [`start_runtime`] has run (a server runs it while its API server starts):
///
/// 1. kubelet and kube-proxy start ([`start`]; a server does this as soon
///    as its API server is ready, and the rest once its control plane is);
///    NetworkPolicies are enforced from now on, before pods run
///    ([`network_policy`]), or their rules removed when the cluster
///    disables them;
/// 2. the kubelet registers the Node and the controller-manager gives it a
///    pod CIDR (watched, with a timeout);
/// 3. this host's end of the pod network is made for that CIDR (the VXLAN
///    device, masquerading, the CNI configuration), so the Node turns Ready;
/// 4. once Ready, the route follower starts (an in-process service): routes
///    to the other nodes' pods follow the Node objects from then on; and
///    the host's listening ports are published on the Node ([`host_ports`]),
///    and the node's local volumes followed ([`local_path`]).
pub async fn bring_up(sup: &mut Supervisor, c: &Components, p: &Paths, s: &Settings<'_>) -> anyhow::Result<()> {
    let kubelet = start(sup, c, p, s).await?;
    join_pod_network(sup, p, s, kubelet).await
}

/// Steps 2 to 4 of [`bring_up`], once [`start`] has run; `kubelet` is the
/// client it returned.
pub async fn join_pod_network(sup: &mut Supervisor, p: &Paths, s: &Settings<'_>, kubelet: kube::Client) -> anyhow::Result<()> {
    let see_log = || format!("see {}", p.logs.join("kubelet.log").display());
    let pod_cidr = kubeclient::wait_node(&kubelet, s.node_name, READY_TIMEOUT, "registered with a pod CIDR", kubeclient::pod_cidr)
        .await
        .with_context(see_log)?;
    let backend = routes::Backend::prepare(s.pod_network, s.node_ip, &pod_cidr, &p.kubelet_kubeconfig).await?;
    write_pod_network(p, &pod_cidr, s.cluster_cidr, backend.pod_mtu())?;
    kubeclient::wait_node(&kubelet, s.node_name, READY_TIMEOUT, "Ready", |n| kubeclient::node_ready(n).then_some(()))
        .await
        .with_context(see_log)?;
    tracing::info!(node = %s.node_name, "node Ready");
    publish_version(&kubelet, s.node_name).await?;
    let (own, api) = (s.node_name.to_string(), kubelet.clone());
    sup.spawn("host-ports", move |stop| async move {
        stop.or(host_ports::follow(api, own)).await;
        Ok(())
    });
    let (own, dir) = (s.node_name.to_string(), s.storage_dir.to_path_buf());
    sup.spawn("local-volumes", move |stop| async move {
        stop.or(local_path::follow(kubelet, own, dir)).await;
        Ok(())
    });
    // kube-proxy's identity may watch all Nodes; the kubelet's may not.
    let watcher = kubeclient::client(s.kube_proxy_kubeconfig).await?;
    let own = s.node_name.to_string();
    sup.spawn("pod-routes", move |stop| async move {
        stop.or(routes::follow(watcher, own, backend)).await;
        Ok(())
    });
    Ok(())
}

fn enforce_network_policies(sup: &mut Supervisor, kubelet: &kube::Client, s: &Settings<'_>) -> anyhow::Result<()> {
    if !s.network_policy {
        return network_policy::remove().context("removing the network policy rules (the cluster disables network-policy)");
    }
    let (api, own) = (kubelet.clone(), s.node_name.to_string());
    sup.spawn("network-policies", move |stop| async move {
        stop.or(network_policy::follow(api, own)).await;
        Ok(())
    });
    Ok(())
}

/// Writes [`VERSION_ANNOTATION`] and [`INIT_ANNOTATION`] on this node's
/// Node (the kubelet's identity may change its own Node).
async fn publish_version(kubelet: &kube::Client, node_name: &str) -> anyhow::Result<()> {
    // systemd sets INVOCATION_ID for every service it runs.
    let init = if std::env::var_os("INVOCATION_ID").is_some() { "systemd" } else { "none" };
    let patch = Node {
        metadata: ObjectMeta {
            annotations: Some([
                (VERSION_ANNOTATION.to_string(), VERSION.to_string()),
                (INIT_ANNOTATION.to_string(), init.to_string()),
            ].into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let nodes: kube::Api<Node> = kube::Api::all(kubelet.clone());
    nodes.patch(node_name, &PatchParams::default(), &Patch::Merge(&patch)).await
        .with_context(|| format!("publishing the k8s version on node {node_name}"))?;
    Ok(())
}

/// The host settings a node needs, then containerd with the registries of
/// `/etc/k8s/registries.yaml` (that file watched, [`registries`]) and the
/// carried images and those of the images dir imported (that dir watched,
/// [`images`]): nothing here needs the API server.
pub async fn start_runtime(sup: &mut Supervisor, c: &Components, p: &Paths, profile: Profile) -> anyhow::Result<()> {
    host_settings::prepare_network()?;
    if profile == Profile::Cis {
        host_settings::kernel_defaults()?;
    }
    let registries_file = Path::new(crate::host::paths::REGISTRIES);
    let registries = registries::Registries::load(registries_file)?;
    registries.apply(&p.registry_hosts)?;
    if !registries.names().is_empty() {
        tracing::info!(file = %registries_file.display(), registries = registries.names(), "registry settings applied");
    }
    start_containerd(sup, c, p, &registries).await?;
    registries::watch(registries_file.to_path_buf(), p.registry_hosts.clone(), &registries);
    images::import_carried(c, p).await?;
    let mut failed = images::Failed::new();
    images::import_dir(c, p, &mut failed).await?;
    images::watch(c.clone(), p.clone(), failed);
    Ok(())
}

/// Step 1 of [`bring_up`]: starts kubelet and kube-proxy, and the network
/// policies' enforcement; returns a client with the kubelet's identity.
pub async fn start(sup: &mut Supervisor, c: &Components, p: &Paths, s: &Settings<'_>) -> anyhow::Result<kube::Client> {
    client_cert::seed(s.issued_kubelet_kubeconfig, p)?;
    start_kubelet(sup, c, p, s)?;
    start_kube_proxy(sup, c, p, s)?;
    let kubelet = kubeclient::client(&p.kubelet_kubeconfig).await?;
    enforce_network_policies(sup, &kubelet, s)?;
    Ok(kubelet)
}

fn path_env(c: &Components) -> (String, String) {
    // containerd finds its shim and CNI plugins, kubelet and kube-proxy
    // find nothing else there: the host's tools (iptables, mount) follow.
    let host = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    ("PATH".into(), format!("{}:{host}", c.dir.join("bin").display()))
}

async fn start_containerd(sup: &mut Supervisor, c: &Components, p: &Paths, registries: &registries::Registries) -> anyhow::Result<()> {
    let systemd_cgroup = facts::cgroups() == facts::Cgroups::V2 && facts::systemd_is_init();
    let pause = c.image("pause")?;
    let config = templates::render(templates::CONTAINERD, &[
        ("root", &p.containerd_root.display().to_string()),
        ("state", &p.containerd_state.display().to_string()),
        ("socket", &p.containerd_socket.display().to_string()),
        ("pause_image", &pause),
        ("cni_bin_dir", &c.bin("cni").display().to_string()),
        ("cni_conf_dir", &p.cni_conf_dir.display().to_string()),
        ("runc", &c.bin("runc").display().to_string()),
        ("systemd_cgroup", if systemd_cgroup { "true" } else { "false" }),
        ("restrict_oom_score_adj", if facts::has_sys_resource() { "false" } else { "true" }),
        ("registry_hosts", &p.registry_hosts.display().to_string()),
        ("registry_credentials", &registries.containerd_credentials()),
    ]);
    let file = p.etc.join("containerd.toml");
    write_if_changed(&file, config.as_bytes(), 0o600)?;
    std::fs::create_dir_all(&p.cni_conf_dir)?;
    sup.start(Spec {
        name: "containerd".into(),
        program: c.bin("containerd"),
        args: vec!["--config".into(), file.display().to_string()],
        env: vec![path_env(c)],
        log: p.logs.join("containerd.log"),
    });
    wait_for_socket(&p.containerd_socket, Duration::from_secs(60))
        .await
        .with_context(|| format!("containerd did not start; see {}", p.logs.join("containerd.log").display()))?;
    check_cri(c, p).await
}

/// containerd keeps running when its CRI plugin fails to load (e.g. out
/// of inotify instances), and kubelet would then retry forever: say why now.
async fn check_cri(c: &Components, p: &Paths) -> anyhow::Result<()> {
    let out = tokio::process::Command::new(c.bin("ctr"))
        .arg("--address").arg(&p.containerd_socket)
        .args(["plugins", "ls"])
        .output()
        .await?;
    let listing = String::from_utf8_lossy(&out.stdout);
    let failed = listing.lines().any(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        cols.first() == Some(&"io.containerd.grpc.v1") && cols.get(1) == Some(&"cri") && cols.last() == Some(&"error")
    });
    if !failed {
        return Ok(());
    }
    let log = std::fs::read_to_string(p.logs.join("containerd.log")).unwrap_or_default();
    let why = log.lines().rev().find(|l| l.contains("failed to load plugin") && l.contains("cri")).unwrap_or("");
    let hint = if why.contains("inotify") {
        "; raise fs.inotify.max_user_instances (e.g. sysctl -w fs.inotify.max_user_instances=1024)"
    } else {
        ""
    };
    bail!("containerd runs without its CRI plugin, so kubelet cannot use it: {}{hint}; see {}", why.trim(), p.logs.join("containerd.log").display())
}

async fn wait_for_socket(path: &Path, timeout: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::net::UnixStream::connect(path).await.is_err() {
        if tokio::time::Instant::now() >= deadline {
            bail!("{} did not appear within {timeout:?}", path.display());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

fn start_kubelet(sup: &mut Supervisor, c: &Components, p: &Paths, s: &Settings<'_>) -> anyhow::Result<()> {
    let v1 = facts::cgroups() == facts::Cgroups::V1;
    if v1 {
        tracing::warn!("this host uses cgroup v1; kubelet runs with failCgroupV1: false (cgroup v1 is deprecated upstream)");
    }
    let driver = if !v1 && facts::systemd_is_init() { "systemd" } else { "cgroupfs" };
    let resolv = host_settings::resolv_conf(&p.etc.join("resolv.conf"))?;
    let config = templates::render(templates::KUBELET, &[
        ("client_ca", &s.client_ca.display().to_string()),
        ("cgroup_driver", driver),
        ("fail_cgroup_v1", if v1 { "false" } else { "true" }),
        ("cluster_dns", &s.cluster_dns.to_string()),
        ("cluster_domain", s.cluster_domain),
        ("containerd_socket", &p.containerd_socket.display().to_string()),
        ("resolv_conf", &resolv.display().to_string()),
        ("tls_cert", &s.kubelet_cert.display().to_string()),
        ("tls_key", &s.kubelet_key.display().to_string()),
    ]) + &kubelet_hardening(s.profile);
    let file = p.etc.join("kubelet-config.yaml");
    write_if_changed(&file, config.as_bytes(), 0o600)?;
    let mut args = vec![
        format!("--config={}", file.display()),
        format!("--kubeconfig={}", p.kubelet_kubeconfig.display()),
        format!("--cert-dir={}", p.kubelet_client_dir.display()),
        format!("--node-ip={}", s.node_ip),
        format!("--hostname-override={}", s.node_name),
    ];
    args.extend(s.kubelet_extra_args.iter().map(|a| format!("--{a}")));
    sup.start(Spec { name: "kubelet".into(), program: c.bin("kubelet"), args, env: vec![path_env(c)], log: p.logs.join("kubelet.log") });
    Ok(())
}

/// The CIS Benchmark's kubelet settings (section 4.2) on top of the
/// template's: the kubelet refuses to start on kernel settings it would
/// otherwise change (set before, see [`host_settings::kernel_defaults`]),
/// idle streams (exec, port-forward) close after 5 minutes, TLS offers only
/// AEAD ciphers with forward secrecy, a pod runs at most 4096 processes, and
/// containers get the runtime's default seccomp profile unless they ask
/// for another.
fn kubelet_hardening(profile: Profile) -> String {
    match profile {
        Profile::Standard => String::new(),
        Profile::Cis => format!(
            "protectKernelDefaults: true\nstreamingConnectionIdleTimeout: 5m\ntlsCipherSuites: [{}]\n\
             podPidsLimit: 4096\nseccompDefault: true\n",
            STRONG_CIPHERS.join(", ")
        ),
    }
}

/// TLS 1.2 suites with ECDHE and AEAD (TLS 1.3's are all of that kind):
/// the list the CIS Benchmark and k3s's hardening guide give.
pub const STRONG_CIPHERS: [&str; 6] = [
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
];

fn start_kube_proxy(sup: &mut Supervisor, c: &Components, p: &Paths, s: &Settings<'_>) -> anyhow::Result<()> {
    let config = templates::render(templates::KUBE_PROXY, &[
        ("kubeconfig", &s.kube_proxy_kubeconfig.display().to_string()),
        ("cluster_cidr", s.cluster_cidr),
        ("node_name", s.node_name),
    ]);
    let file = p.etc.join("kube-proxy.yaml");
    write_if_changed(&file, config.as_bytes(), 0o600)?;
    sup.start(Spec {
        name: "kube-proxy".into(),
        program: c.bin("kube-proxy"),
        args: vec![format!("--config={}", file.display())],
        env: vec![path_env(c)],
        log: p.logs.join("kube-proxy.log"),
    });
    Ok(())
}

/// Writes the CNI configuration for this node's pod CIDR (allocated by the
/// controller-manager); containerd picks it up and the node turns Ready.
/// `mtu` is the pods' (see [`routes::Backend::pod_mtu`]).
fn write_pod_network(p: &Paths, pod_cidr: &str, cluster_cidr: &str, mtu: u32) -> anyhow::Result<()> {
    masquerade::install(pod_cidr, cluster_cidr)?;
    let conf = templates::render(templates::CNI, &[
        ("ipam_dir", &p.ipam_dir.display().to_string()),
        ("pod_cidr", pod_cidr),
        ("mtu", &mtu.to_string()),
    ]);
    private_ipam_lock(&p.ipam_dir)?;
    let file = p.cni_conf_dir.join("10-k8s.conflist");
    if write_if_changed(&file, conf.as_bytes(), 0o600)? {
        tracing::info!(pod_cidr, "pod network configured");
    }
    Ok(())
}


/// host-local's lock file, made before the plugin first runs: the plugin
/// creates it 0750 and keeps the mode of one that exists.
fn private_ipam_lock(ipam_dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = ipam_dir.join("k8s-pod-network");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let lock = dir.join("lock");
    let file = std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(&lock)
        .with_context(|| format!("cannot create {}", lock.display()))?;
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    Ok(())
}

/// `kubelet-arg` (checked, leading dashes dropped) with `node-label` and
/// `node-taint` as kubelet's registration flags (the same keys for
/// `k8s server` and `k8s agent`).
pub fn kubelet_registration_args(args: Vec<String>, labels: &[String], taints: &[String]) -> anyhow::Result<Vec<String>> {
    let mut args = crate::host::config::extra_args("kubelet-arg", args)?;
    for l in labels {
        if !l.contains('=') {
            bail!("node-label {l:?} must look like key=value");
        }
    }
    for t in taints {
        let effect = t.rsplit_once(':').map(|(_, e)| e);
        if !matches!(effect, Some("NoSchedule" | "PreferNoSchedule" | "NoExecute")) {
            bail!("node-taint {t:?} must look like key[=value]:Effect, Effect one of NoSchedule, PreferNoSchedule, NoExecute");
        }
    }
    if !labels.is_empty() {
        args.push(format!("node-labels={}", labels.join(",")));
    }
    if !taints.is_empty() {
        args.push(format!("register-with-taints={}", taints.join(",")));
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cis_kubelet_settings_are_valid_yaml_on_top_of_the_template() {
        let values: Vec<(&str, &str)> = ["client_ca", "cgroup_driver", "fail_cgroup_v1", "cluster_dns", "cluster_domain",
            "containerd_socket", "resolv_conf", "tls_cert", "tls_key"]
            .into_iter()
            .map(|k| (k, "x"))
            .collect();
        let config = templates::render(templates::KUBELET, &values) + &kubelet_hardening(Profile::Cis);
        let yaml: serde_yaml::Value = serde_yaml::from_str(&config).unwrap();
        assert_eq!(yaml["protectKernelDefaults"], serde_yaml::Value::Bool(true));
        assert_eq!(yaml["streamingConnectionIdleTimeout"].as_str(), Some("5m"));
        assert_eq!(yaml["tlsCipherSuites"].as_sequence().map(Vec::len), Some(STRONG_CIPHERS.len()));
        assert_eq!(yaml["podPidsLimit"].as_i64(), Some(4096));
        assert_eq!(yaml["seccompDefault"], serde_yaml::Value::Bool(true));
        assert!(kubelet_hardening(Profile::Standard).is_empty());
    }
}
