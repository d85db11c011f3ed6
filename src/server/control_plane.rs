//! The control plane's command line: kube-apiserver over the embedded
//! datastore or the local etcd member, kube-controller-manager (allocating
//! node pod CIDRs) and kube-scheduler (both leader-elected in HA), run as one
//! process, `kube-control-plane` (the payload's multicall binary; its doc
//! comment in `bootstrap/modules/kube/controlplane.go` draws the lifecycle:
//! the API server first, the other two once it is ready, one stop for all,
//! any of them ending on its own ends the process and the supervisor restarts
//! all three). One Go runtime instead of three: 38 MiB less PSS on a single
//! node, nearly all of it heap (make bench-node).

use std::path::Path;

use crate::components::Spec;
use crate::host::config::Profile;
use crate::node::STRONG_CIPHERS;
use crate::payload::Components;
use crate::pki::Pki;

use super::config::Config;

/// Files the control plane reads besides the PKI.
pub struct Inputs<'a> {
    pub store: Store<'a>,
    pub controller_manager_kubeconfig: &'a Path,
    pub scheduler_kubeconfig: &'a Path,
    pub logs: &'a Path,
    pub audit_policy: &'a Path,
    pub admission_config: &'a Path,
}

/// Where the apiserver keeps the cluster's state.
pub enum Store<'a> {
    /// Our SQLite datastore on a unix socket, with TLS and client
    /// certificates (etcd's CA) when `tls`.
    Sqlite { socket: &'a Path, tls: bool },
    /// The local etcd member (HA).
    Etcd,
}

impl Store<'_> {
    fn apiserver_args(&self, pki: &Pki) -> Vec<String> {
        match self {
            Store::Sqlite { socket, tls: false } => vec![format!("--etcd-servers=unix://{}", p(socket))],
            Store::Sqlite { socket, tls: true } => etcd_client_args(format!("unixs://{}", p(socket)), pki),
            Store::Etcd => etcd_client_args(crate::etcd::LOCAL.to_string(), pki),
        }
    }

    /// One server has nobody to elect; HA servers take turns.
    fn leader_elect(&self) -> String {
        format!("--leader-elect={}", matches!(self, Store::Etcd))
    }
}

fn etcd_client_args(server: String, pki: &Pki) -> Vec<String> {
    vec![
        format!("--etcd-servers={server}"),
        format!("--etcd-cafile={}", p(pki.etcd_ca_cert())),
        format!("--etcd-certfile={}", p(pki.apiserver_etcd_client_cert())),
        format!("--etcd-keyfile={}", p(pki.apiserver_etcd_client_key())),
    ]
}

fn p(path: impl AsRef<Path>) -> String {
    path.as_ref().display().to_string()
}

/// The name of an extra `name=value` argument.
fn flag_name(extra: &str) -> &str {
    extra.split_once('=').map_or(extra, |(n, _)| n)
}

/// Extra `name=value` arguments replace defaults of the same name.
fn with_extra(mut args: Vec<String>, extra: &[String]) -> Vec<String> {
    for e in extra {
        let name = flag_name(e);
        args.retain(|a| !a.starts_with(&format!("--{name}=")));
        args.push(format!("--{e}"));
    }
    args
}

/// The one process of the control plane: its log is `kube-control-plane.log`.
pub fn spec(c: &Components, pki: &Pki, cfg: &Config, i: &Inputs) -> Spec {
    let shared = process_wide(&cfg.kube_apiserver_arg);
    let parts = [
        ("kube-scheduler", with_extra(scheduler(i), &shared)),
        ("kube-controller-manager", with_extra(controller_manager(pki, cfg, i), &shared)),
        ("kube-apiserver", apiserver(pki, cfg, i)),
    ];
    // The order is free; this one is for readers of the command line who
    // take a flag's first occurrence (kube-bench's CIS audits): the
    // scheduler's and controller manager's --bind-address (loopback) come
    // before the API server's.
    let args = parts.into_iter().flat_map(|(name, args)| std::iter::once(name.to_string()).chain(args)).collect();
    Spec {
        name: "kube-control-plane".into(),
        program: c.bin("kube-control-plane"),
        args,
        env: control_plane_gc(),
        log: i.logs.join("kube-control-plane.log"),
    }
}

/// kube-apiserver-arg's settings that hold for the whole process, so for
/// all three components: the logging configuration (one log; a component
/// applying a different one would fail) and the feature gates (one set).
fn process_wide(extra: &[String]) -> Vec<String> {
    const PROCESS_WIDE: [&str; 9] = [
        "v", "vmodule", "logging-format", "log-flush-frequency", "log-text-split-stream",
        "log-text-info-buffer-size", "log-json-split-stream", "log-json-info-buffer-size", "feature-gates",
    ];
    extra.iter().filter(|e| PROCESS_WIDE.contains(&flag_name(e))).cloned().collect()
}

fn apiserver(pki: &Pki, cfg: &Config, i: &Inputs) -> Vec<String> {
    let issuer = format!("https://kubernetes.default.svc.{}", cfg.cluster_domain);
    let mut args = vec![
        format!("--advertise-address={}", cfg.advertise_address),
        format!("--bind-address={}", cfg.bind_address),
        format!("--secure-port={}", cfg.port),
        "--allow-privileged=true".into(),
        "--anonymous-auth=false".into(),
        "--authorization-mode=Node,RBAC".into(),
        format!("--enable-admission-plugins={}", admission_plugins(cfg.profile)),
        format!("--admission-control-config-file={}", p(i.admission_config)),
        format!("--audit-policy-file={}", p(i.audit_policy)),
        format!("--audit-log-path={}", p(i.logs.join("audit.log"))),
        "--audit-log-maxage=30".into(),
        format!("--client-ca-file={}", p(pki.ca_cert())),
        format!("--tls-cert-file={}", p(pki.apiserver_cert())),
        format!("--tls-private-key-file={}", p(pki.apiserver_key())),
        format!("--kubelet-client-certificate={}", p(pki.apiserver_kubelet_client_cert())),
        format!("--kubelet-client-key={}", p(pki.apiserver_kubelet_client_key())),
        format!("--kubelet-certificate-authority={}", p(pki.kubelet_ca_cert())),
        "--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname".into(),
        format!("--proxy-client-cert-file={}", p(pki.front_proxy_client_cert())),
        format!("--proxy-client-key-file={}", p(pki.front_proxy_client_key())),
        format!("--requestheader-client-ca-file={}", p(pki.front_proxy_ca_cert())),
        "--requestheader-allowed-names=front-proxy-client".into(),
        "--requestheader-extra-headers-prefix=X-Remote-Extra-".into(),
        "--requestheader-group-headers=X-Remote-Group".into(),
        "--requestheader-username-headers=X-Remote-User".into(),
        // Aggregated APIs (metrics-server) dialled at an endpoint's address,
        // not the Service's ClusterIP: a server without a node of its own
        // (disable-agent) has no kube-proxy rules for ClusterIPs.
        "--enable-aggregator-routing=true".into(),
        format!("--service-account-issuer={issuer}"),
        format!("--service-account-key-file={}", p(pki.sa_pub())),
        format!("--service-account-signing-key-file={}", p(pki.sa_key())),
        format!("--service-cluster-ip-range={}", cfg.service_cidr),
        "--profiling=false".into(),
        // Pods (CoreDNS) keep watches open across our restarts; without a
        // bound, a stop waits for them until our grace period kills it.
        "--shutdown-watch-termination-grace-period=5s".into(),
    ];
    args.extend(audit_rotation(cfg.profile));
    args.extend(apiserver_hardening(cfg.profile));
    args.extend(i.store.apiserver_args(pki));
    if pki.encryption_config().exists() {
        args.push(format!("--encryption-provider-config={}", p(pki.encryption_config())));
        args.push("--encryption-provider-config-automatic-reload=true".into());
    }
    with_extra(args, &cfg.kube_apiserver_arg)
}

/// The control plane collects garbage at half Go's default heap growth
/// (GOGC=50): ~25 MiB less on a small cluster (make bench-node, measured
/// when the API server had a process of its own), for a little more CPU.
/// A GOGC in `k8s`'s own environment is left to every component.
fn control_plane_gc() -> Vec<(String, String)> {
    match std::env::var_os("GOGC") {
        Some(_) => vec![],
        None => vec![("GOGC".into(), "50".into())],
    }
}

fn admission_plugins(profile: Profile) -> &'static str {
    match profile {
        Profile::Standard => "NodeRestriction",
        // EventRateLimit's limits are in the admission config
        // (templates/server/admission-cis.yaml); Services may not claim
        // arbitrary external IPs (CVE-2020-8554).
        Profile::Cis => "NodeRestriction,EventRateLimit,DenyServiceExternalIPs",
    }
}

/// Audit log files: about 250 MiB at most by default, sized for small
/// disks; the CIS Benchmark asks for 10 files of 100 MiB.
fn audit_rotation(profile: Profile) -> [String; 2] {
    let (size, backups) = match profile {
        Profile::Standard => (50, 4),
        Profile::Cis => (100, 10),
    };
    [format!("--audit-log-maxsize={size}"), format!("--audit-log-maxbackup={backups}")]
}

/// The CIS Benchmark's API server flags not set by default: service
/// account tokens live as long as they say, and TLS 1.2 offers only AEAD
/// ciphers with forward secrecy.
fn apiserver_hardening(profile: Profile) -> Vec<String> {
    match profile {
        Profile::Standard => vec![],
        Profile::Cis => vec![
            "--service-account-extend-token-expiration=false".into(),
            format!("--tls-cipher-suites={}", STRONG_CIPHERS.join(",")),
        ],
    }
}

fn controller_manager(pki: &Pki, cfg: &Config, i: &Inputs) -> Vec<String> {
    let kc = p(i.controller_manager_kubeconfig);
    let mut args = vec![
        format!("--kubeconfig={kc}"),
        format!("--authentication-kubeconfig={kc}"),
        format!("--authorization-kubeconfig={kc}"),
        "--bind-address=127.0.0.1".into(),
        "--secure-port=10257".into(),
        "--allocate-node-cidrs=true".into(),
        format!("--cluster-cidr={}", cfg.cluster_cidr),
        "--node-cidr-mask-size=24".into(),
        format!("--service-cluster-ip-range={}", cfg.service_cidr),
        format!("--cluster-signing-cert-file={}", p(pki.ca_cert())),
        format!("--cluster-signing-key-file={}", p(pki.ca_key())),
        // Kubelets renew their client certs through CSRs: as long as the leaves this server issues
        // (the setting was checked by pki::ensure before).
        format!("--cluster-signing-duration={}h", crate::pki::Lifetimes::from_env().unwrap_or(crate::pki::Lifetimes::DEFAULT).leaf.whole_hours()),
        format!("--root-ca-file={}", p(pki.ca_cert())),
        format!("--service-account-private-key-file={}", p(pki.sa_key())),
        "--use-service-account-credentials=true".into(),
        "--configure-cloud-routes=false".into(),
        "--controllers=*,tokencleaner".into(),
        // At start every controller gets its service account and a token (about 100 requests): at
        // client-go's default 20 requests/s that alone held the node's pod CIDR back by ~5 s.
        "--kube-api-qps=100".into(),
        "--kube-api-burst=200".into(),
        i.store.leader_elect(),
        "--profiling=false".into(),
    ];
    if cfg.profile == Profile::Cis {
        // Finished pods are collected past 10 (12 500 by default): their
        // objects and logs are not kept around.
        args.push("--terminated-pod-gc-threshold=10".into());
    }
    args
}

fn scheduler(i: &Inputs) -> Vec<String> {
    let kc = p(i.scheduler_kubeconfig);
    vec![
        format!("--kubeconfig={kc}"),
        format!("--authentication-kubeconfig={kc}"),
        format!("--authorization-kubeconfig={kc}"),
        "--bind-address=127.0.0.1".into(),
        "--secure-port=10259".into(),
        i.store.leader_elect(),
        "--profiling=false".into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cis_profile_adds_its_flags_and_standard_does_not() {
        let standard: Vec<String> = apiserver_hardening(Profile::Standard);
        assert!(standard.is_empty());
        let cis = apiserver_hardening(Profile::Cis).join(" ");
        assert!(cis.contains("--service-account-extend-token-expiration=false"), "{cis}");
        assert!(cis.contains("--tls-cipher-suites=TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,"), "{cis}");
        assert_eq!(admission_plugins(Profile::Cis), "NodeRestriction,EventRateLimit,DenyServiceExternalIPs");
        assert_eq!(audit_rotation(Profile::Cis), ["--audit-log-maxsize=100", "--audit-log-maxbackup=10"]);
        assert_eq!(audit_rotation(Profile::Standard), ["--audit-log-maxsize=50", "--audit-log-maxbackup=4"]);
    }

    /// The command line kube-control-plane splits: each component's name, then its flags.
    fn by_component(args: &[String]) -> Vec<(String, Vec<String>)> {
        let mut parts: Vec<(String, Vec<String>)> = vec![];
        for a in args {
            match a.starts_with("--") {
                true => parts.last_mut().expect("a name first").1.push(a.clone()),
                false => parts.push((a.clone(), vec![])),
            }
        }
        parts
    }

    #[test]
    fn one_process_runs_the_three_and_they_share_the_process_wide_flags() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("manifest.json"), r#"{"kubernetes_version": "v1.37.2", "parts": []}"#).unwrap();
        let c = Components::open(dir.path()).unwrap();
        let extra = ["v=4", "feature-gates=SomeGate=true", "max-requests-inflight=100"].map(String::from).to_vec();
        let options = crate::host::config::ServerOptions { node_ip: Some("10.0.0.5".parse().unwrap()), kube_apiserver_arg: extra, ..Default::default() };
        let cfg = Config::resolve(options).unwrap();
        let pki = Pki { dir: dir.path().join("pki") };
        let (cm, sched, logs, a) = (Path::new("/k/cm"), Path::new("/k/sched"), Path::new("/logs"), Path::new("/a"));
        let i = Inputs { store: Store::Etcd, controller_manager_kubeconfig: cm, scheduler_kubeconfig: sched, logs, audit_policy: a, admission_config: a };
        let spec = spec(&c, &pki, &cfg, &i);
        assert_eq!((spec.program, spec.log), (dir.path().join("bin/kube-control-plane"), logs.join("kube-control-plane.log")));
        let parts = by_component(&spec.args);
        let names: Vec<&str> = parts.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["kube-scheduler", "kube-controller-manager", "kube-apiserver"]);
        for (name, args) in &parts {
            for shared in ["--v=4", "--feature-gates=SomeGate=true"] {
                assert_eq!(args.iter().filter(|a| *a == shared).count(), 1, "{name} has {shared} once: {args:?}");
            }
            let own = args.iter().any(|a| a == "--max-requests-inflight=100");
            assert_eq!(own, name == "kube-apiserver", "{name}: only the API server takes its other extra args");
        }
        assert!(parts[1].1.contains(&"--kubeconfig=/k/cm".to_string()), "kube-control-plane waits for /readyz with it");
        let first_bind = spec.args.iter().find(|a| a.starts_with("--bind-address="));
        assert_eq!(first_bind.map(String::as_str), Some("--bind-address=127.0.0.1"), "kube-bench reads the first --bind-address");
    }

    #[test]
    fn extra_args_replace_defaults() {
        let args = super::with_extra(vec!["--v=1".into(), "--a=b".into()], &["v=4".into(), "new=x".into()]);
        assert_eq!(args, vec!["--a=b", "--v=4", "--new=x"]);
    }
}
