use std::path::Path;

use super::facts::{Facts, UnitState};
use super::nodes::{self, Node};
use super::plan::{self, FilePlan, Local, LocalFile, Running, Service, Stage, TokenPlan};
use super::render;
use super::report::{planned_changes, Report};
use crate::inventory::Inventory;

fn inv(text: &str) -> Inventory {
    Inventory::parse(text, Path::new("hosts.yaml")).unwrap_or_else(|e| panic!("{e}"))
}

const SINGLE: &str = "
cluster: {name: demo}
hosts:
  - {address: 10.0.0.11, role: server, name: s1, labels: {zone: a, node-role.kubernetes.io/edge: ''}, taints: ['dedicated=edge:NoSchedule']}
  - {address: 10.0.0.21, role: agent}
";

const HA: &str = "
cluster: {name: ha, api: {address: lb.example.com, port: 7443}, disable: [coredns]}
hosts:
  - {address: 10.0.0.31, role: agent, name: w1}
  - {address: 10.0.0.11, role: server, name: s1, control-plane-only: true}
  - {address: 10.0.0.12, role: server, name: s2, node-ip: 10.1.0.12}
  - {address: 10.0.0.13, role: server, name: s3}
";

fn local() -> Local {
    Local {
        binaries: [("amd64".to_string(), release("amd64", "a"))].into(),
        version: crate::version::VERSION.into(),
        kubernetes: "v1.37.1".into(),
        images: vec![],
        registries: None,
    }
}

/// A k8s binary of `arch` whose sha256 is `fill` repeated.
fn release(arch: &'static str, fill: &str) -> crate::release::Release {
    crate::release::Release {
        path: format!("/dist/k8s-{arch}").into(),
        arch,
        version: crate::version::VERSION.into(),
        kubernetes: "v1.37.1".into(),
        sha256: fill.repeat(64),
        size: 80 << 20,
    }
}

/// A clean Debian host nothing of ours is on.
fn fresh(hostname: &str) -> Facts {
    Facts::parse(&format!(
        "hostname={hostname}\nos=Debian GNU/Linux 12 (bookworm)\narch=x86_64\nsystemd=yes\ncgroup=cgroup2fs\nfree_bin=9000000\nfree_var=9000000\n"
    ))
}

/// The host after a successful `up` of `inv`.
fn installed(inv: &Inventory, i: usize, hostname: &str, tokens: &(String, String)) -> Facts {
    let mut f = fresh(hostname);
    let host = &inv.hosts[i];
    let name = plan::node_name(host, &f);
    f.installed_version = Some(format!("k8s {}", crate::version::VERSION));
    f.installed_sha256 = Some(local().binaries["amd64"].sha256.clone());
    f.config = Some(render::config(inv, host, &name));
    let unit = render::unit(host.role);
    f.unit_text.insert(unit.name.into(), unit.text.into());
    f.units.insert(unit.name.into(), UnitState { active: "active".into(), enabled: "enabled".into(), started: Some(2000), mtime: 1000 });
    f.mtimes.insert(render::CONFIG.into(), 1000);
    if host.is_server() {
        f.datastore = Some(if inv.servers().count() == 1 { "sqlite" } else { "etcd" }.into());
    }
    let tokened = host.role == crate::inventory::Role::Agent || (host.is_server() && !render::is_first_server(inv, host) && inv.servers().count() > 1);
    if tokened {
        f.token = Some(if host.is_server() { tokens.0.clone() } else { tokens.1.clone() });
    }
    f
}

fn tokens() -> (String, String) {
    ("K10abc::srv.0123456789abcdef\n".into(), "K10abc::agt.0123456789abcdef\n".into())
}

fn node(name: &str, ready: bool) -> Node {
    Node { name: name.into(), ready, internal_ip: Some("10.0.0.99".into()), labels: Default::default(), taints: vec![], managed: vec![] }
}

#[test]
fn config_is_deterministic_and_uses_flag_names() {
    let a = inv(SINGLE);
    let b = inv(SINGLE);
    let s = render::config(&a, &a.hosts[0], "s1");
    assert_eq!(s, render::config(&b, &b.hosts[0], "s1"), "same inventory, same bytes");
    assert!(s.starts_with(render::HEADER), "{s}");
    let cfg: crate::host::config::ServerOptions = serde_yaml::from_str(&s).expect("k8s server reads it");
    assert_eq!(cfg.node_name.as_deref(), Some("s1"));
    assert_eq!(cfg.tls_san, vec!["10.0.0.11"]);
    assert_eq!(cfg.cluster_cidr.as_deref(), Some("10.42.0.0/16"));
    assert_eq!(cfg.cluster_dns.unwrap().to_string(), "10.43.0.10");
    // Only labels kubelet may set itself; the other goes through the API.
    assert_eq!(cfg.node_label, vec!["zone=a"]);
    assert_eq!(cfg.node_taint, vec!["dedicated=edge:NoSchedule"]);
    assert!(!cfg.cluster_init && cfg.server.is_none() && cfg.token_file.is_none(), "single mode: SQLite");
    assert!(!s.contains("https-listen-port") && !s.contains("disable-agent"), "{s}");

    let agent = render::config(&a, &a.hosts[1], "w1");
    let cfg: crate::host::config::AgentOptions = serde_yaml::from_str(&agent).expect("k8s agent reads it");
    assert_eq!(cfg.server.as_deref(), Some("https://10.0.0.11:9345"));
    assert_eq!(cfg.token_file.as_deref(), Some(Path::new(render::TOKEN)));
    assert_eq!(cfg.node_name.as_deref(), Some("w1"));
}

#[test]
fn ha_config_inits_on_the_first_server_and_joins_the_others() {
    let a = inv(HA);
    let first: crate::host::config::ServerOptions = serde_yaml::from_str(&render::config(&a, &a.hosts[1], "s1")).unwrap();
    assert!(first.cluster_init && first.server.is_none());
    assert!(first.disable_agent && first.node_label.is_empty());
    assert_eq!(first.https_listen_port, Some(7443));
    assert_eq!(first.disable, [crate::host::config::Addon::Coredns], "every server gets the cluster's disable list");
    assert_eq!(first.tls_san, vec!["lb.example.com", "10.0.0.11"]);
    let second: crate::host::config::ServerOptions = serde_yaml::from_str(&render::config(&a, &a.hosts[2], "s2")).unwrap();
    assert!(!second.cluster_init);
    assert_eq!(second.server.as_deref(), Some("https://10.0.0.11:9345"));
    assert_eq!(second.token_file.as_deref(), Some(Path::new(render::TOKEN)));
    assert_eq!(second.node_ip.unwrap().to_string(), "10.1.0.12");
    let agent: crate::host::config::AgentOptions = serde_yaml::from_str(&render::config(&a, &a.hosts[0], "w1")).unwrap();
    assert_eq!(agent.server.as_deref(), Some("https://10.0.0.11:9345"));
}

#[test]
fn config_bytes_follow_the_options_structs() {
    // Its bytes decide whether a re-run rewrites the file and restarts the
    // service: keys in the order of ServerOptions' fields, unset ones left out.
    let a = inv(HA);
    assert_eq!(
        render::config(&a, &a.hosts[2], "s2"),
        "# written by k8s up; changes are replaced on the next up
node-name: s2
node-ip: 10.1.0.12
https-listen-port: 7443
tls-san:
- lb.example.com
- 10.0.0.12
cluster-cidr: 10.42.0.0/16
service-cidr: 10.43.0.0/16
cluster-dns: 10.43.0.10
cluster-domain: cluster.local
disable:
- coredns
server: https://10.0.0.11:9345
token-file: /etc/k8s/token
"
    );
}

#[test]
fn order_is_first_server_then_servers_then_agents() {
    let a = inv(HA);
    let facts: Vec<Facts> = ["w1", "s1", "s2", "s3"].iter().map(|h| fresh(h)).collect();
    let p = plan::plan(&a, &facts, &local(), &Running::default());
    let order: Vec<(&str, Stage)> = p.hosts.iter().map(|h| (h.name.as_str(), h.stage)).collect();
    assert_eq!(
        order,
        [("s1", Stage::FirstServer), ("s2", Stage::NewServer), ("s3", Stage::NewServer), ("w1", Stage::Agent)]
    );
    assert!(p.problems.is_empty(), "{:?}", p.problems);
}

#[test]
fn servers_of_the_cluster_go_one_at_a_time_and_new_ones_join_with_the_agents() {
    let a = inv(HA);
    let t = tokens();
    let facts = vec![fresh("w1"), installed(&a, 1, "s1", &t), installed(&a, 2, "s2", &t), fresh("s3")];
    let p = plan::plan(&a, &facts, &local(), &Running::default());
    assert!(p.problems.is_empty(), "{:?}", p.problems);
    let order: Vec<(&str, Stage)> = p.hosts.iter().map(|h| (h.name.as_str(), h.stage)).collect();
    assert_eq!(
        order,
        [("s1", Stage::FirstServer), ("s2", Stage::Server), ("s3", Stage::NewServer), ("w1", Stage::Agent)]
    );
    let s3 = &p.hosts[2];
    assert!(s3.join && s3.token != TokenPlan::None, "{s3:?}");
}

#[test]
fn fresh_hosts_get_everything() {
    let a = inv(SINGLE);
    let facts = vec![fresh("s1"), fresh("worker-1")];
    let p = plan::plan(&a, &facts, &local(), &Running::default());
    assert!(p.problems.is_empty(), "{:?}", p.problems);
    for h in &p.hosts {
        assert!(h.upload && h.unit_changed && h.join, "{h:?}");
        assert_eq!(h.config_changes, vec!["new"]);
        assert_eq!(h.service, Service::Start);
    }
    assert_eq!(p.hosts[0].token, TokenPlan::None);
    assert_eq!(p.hosts[1].token, TokenPlan::AfterFirstServer);
    // The node name comes from the hostname when the inventory has none.
    assert_eq!(p.hosts[1].name, "worker-1");
    assert!(p.hosts[1].config.contains("node-name: worker-1"));
}

#[test]
fn a_second_run_changes_nothing() {
    for text in [SINGLE, HA] {
        let a = inv(text);
        let t = tokens();
        let facts: Vec<Facts> = (0..a.hosts.len()).map(|i| installed(&a, i, &format!("h{i}"), &t)).collect();
        let names: Vec<String> = a.hosts.iter().zip(&facts).map(|(h, f)| plan::node_name(h, f)).collect();
        let running = Running { nodes: Some(names.iter().map(|n| node(n, true)).collect()), members: None, tokens: Some(t), ..Default::default() };
        let p = plan::plan(&a, &facts, &local(), &running);
        assert!(p.problems.is_empty(), "{:?}", p.problems);
        assert!(p.hosts.iter().all(|h| planned_changes(h).is_empty()), "{:#?}", p.hosts);
        assert!(p.extra_nodes.is_empty());
        assert!(p.hosts.iter().all(|h| !h.join));
    }
}

#[test]
fn a_changed_setting_restarts_only_that_host() {
    let a = inv(SINGLE);
    let t = tokens();
    let mut facts: Vec<Facts> = (0..2).map(|i| installed(&a, i, &format!("h{i}"), &t)).collect();
    facts[1].config = Some(facts[1].config.clone().unwrap().replace("node-name: h1", "node-name: old"));
    let p = plan::plan(&a, &facts, &local(), &Running { nodes: None, members: None, tokens: Some(t.clone()), ..Default::default() });
    assert_eq!(p.hosts[0].service, Service::Keep);
    assert_eq!(p.hosts[1].service, Service::Restart);
    assert_eq!(p.hosts[1].config_changes, vec!["~node-name"]);

    // A new binary restarts every host; a new token only its agent.
    let mut other = local();
    other.binaries.insert("amd64".into(), release("amd64", "b"));
    let p = plan::plan(&a, &(0..2).map(|i| installed(&a, i, &format!("h{i}"), &t)).collect::<Vec<_>>(), &other, &Running::default());
    assert!(p.hosts.iter().all(|h| h.upload && h.service == Service::Restart));
    let new_tokens = ("K10x::a.b\n".to_string(), "K10x::c.d\n".to_string());
    let p = plan::plan(&a, &(0..2).map(|i| installed(&a, i, &format!("h{i}"), &t)).collect::<Vec<_>>(), &local(), &Running { nodes: None, members: None, tokens: Some(new_tokens), ..Default::default() });
    assert_eq!(p.hosts[0].service, Service::Keep);
    assert_eq!((p.hosts[1].token, p.hosts[1].service), (TokenPlan::Write, Service::Restart));
}

#[test]
fn a_service_older_than_its_files_is_restarted() {
    let a = inv(SINGLE);
    let t = tokens();
    let mut facts: Vec<Facts> = (0..2).map(|i| installed(&a, i, &format!("h{i}"), &t)).collect();
    // An earlier run wrote the config at 3000 and stopped before restarting.
    facts[0].mtimes.insert(render::CONFIG.into(), 3000);
    let p = plan::plan(&a, &facts, &local(), &Running { nodes: None, members: None, tokens: Some(t), ..Default::default() });
    assert!(p.hosts[0].stale && p.hosts[0].service == Service::Restart);
    assert_eq!(p.hosts[1].service, Service::Keep);
    // Still starting after an earlier run gave up waiting: started over.
    facts[1].units.get_mut("k8s-agent").unwrap().active = "activating".into();
    let p = plan::plan(&a, &facts, &local(), &Running { nodes: None, members: None, tokens: Some(tokens()), ..Default::default() });
    assert_eq!(p.hosts[1].service, Service::Restart);
    // Stopped: started, not restarted.
    facts[1].units.get_mut("k8s-agent").unwrap().active = "failed".into();
    let p = plan::plan(&a, &facts, &local(), &Running { nodes: None, members: None, tokens: Some(tokens()), ..Default::default() });
    assert_eq!(p.hosts[1].service, Service::Start);
}

#[test]
fn the_host_check_runs_on_every_host_before_any_change() {
    let a = inv(SINGLE);
    let checked = |extra: &str| {
        let base = "check.arch=x86_64\ncheck.kernel=6.1.0\ncheck.kconfig=/proc/config.gz\ncheck.CONFIG_OVERLAY_FS=y\n\
            check.CONFIG_BRIDGE=y\ncheck.CONFIG_BRIDGE_NETFILTER=y\ncheck.CONFIG_VETH=y\ncheck.CONFIG_VXLAN=y\n\
            check.CONFIG_NF_CONNTRACK=y\ncheck.CONFIG_NF_NAT=y\ncheck.CONFIG_NETFILTER_XT_MATCH_COMMENT=y\ncheck.CONFIG_SECCOMP=y\n\
            check.cgroupfs=cgroup2fs\ncheck.cgroup2=cpu memory pids\ncheck.tool.iptables=yes\ncheck.tool.iptables-save=yes\n\
            check.tool.iptables-restore=yes\ncheck.tool.mount=yes\ncheck.tool.umount=yes\ncheck.ntp=yes\ncheck.mem_kib=4000000\n\
            check.free_kib=9000000\ncheck.glibc=glibc 2.36\n";
        let mut f = fresh("s1");
        f.checks = crate::host::check::Observations::parse(&format!("{base}{extra}"));
        f
    };
    // hosts[0] (the server) lacks `ip` and has 6443 taken; hosts[1] (an agent) lacks `ip` only.
    let facts = vec![checked("check.listening=22 6443\n"), checked("check.listening=6443\n")];
    let p = plan::plan(&a, &facts, &local(), &Running::default());
    let all = p.problems.join("\n");
    assert!(all.contains("s1 (10.0.0.11): host tools: ip not found; install them (Debian/Ubuntu: apt-get install iproute2)"), "{all}");
    assert!(all.contains("s1 (10.0.0.11): ports: in use by another program: 6443 (kube-apiserver)"), "{all}");
    assert!(all.contains("10.0.0.21: host tools: ip not found"), "{all}");
    assert!(!all.contains("10.0.0.21: ports"), "an agent needs no API server port: {all}");
}

#[test]
fn problems_name_their_host_and_stop_everything() {
    let a = inv(SINGLE);
    let mut facts = vec![fresh("s1"), fresh("s1")];
    facts[0].arch = "aarch64".into();
    facts[1].systemd = false;
    let p = plan::plan(&a, &facts, &local(), &Running::default());
    let all = p.problems.join("\n");
    assert!(
        all.contains("s1 (10.0.0.11): the machine is aarch64 (arm64) and no k8s binary for arm64 is given; build one (make dist ARCH=arm64)"),
        "{all}"
    );
    assert!(all.contains("10.0.0.21: systemd is not running"), "{all}");
    // hosts[1] has no name and the same hostname as hosts[0]'s node name.
    assert!(all.contains("10.0.0.21: node name \"s1\" is also that of 10.0.0.11"), "{all}");

    let mut wrong = inv(SINGLE);
    wrong.cluster.version = Some("v9.9.9".into());
    let p = plan::plan(&wrong, &[fresh("s1"), fresh("w")], &local(), &Running::default());
    assert!(p.problems[0].contains("cluster.version is v9.9.9"), "{:?}", p.problems);

    let mut bad_name = fresh("Web_1");
    bad_name.hostname = "web_1".into();
    let p = plan::plan(&a, &[fresh("s1"), bad_name], &local(), &Running::default());
    assert!(p.problems.iter().any(|m| m.contains("\"web_1\" is not a valid node name; set name:")), "{:?}", p.problems);

    let mut full = fresh("w");
    full.free_bin_kib = Some(1024);
    let p = plan::plan(&a, &[fresh("s1"), full], &local(), &Running::default());
    assert!(p.problems.iter().any(|m| m.contains("10.0.0.21: 1 MiB free in /usr/local/bin")), "{:?}", p.problems);
}

#[test]
fn a_single_server_cluster_grows_into_ha() {
    let single = inv(SINGLE);
    let t = tokens();
    let first = installed(&single, 0, "s1", &t);
    assert_eq!(first.datastore.as_deref(), Some("sqlite"));
    let grown = inv("
hosts:
  - {address: 10.0.0.11, role: server, name: s1}
  - {address: 10.0.0.12, role: server, name: s2}
  - {address: 10.0.0.13, role: server, name: s3}
");
    let p = plan::plan(&grown, &[first, fresh("s2"), fresh("s3")], &local(), &Running::default());
    assert!(p.problems.is_empty(), "{:?}", p.problems);
    let (s1, s2) = (&p.hosts[0], &p.hosts[1]);
    assert_eq!((s1.stage, s1.service), (plan::Stage::FirstServer, plan::Service::Restart), "s1 restarts with cluster-init: its data moves into etcd");
    assert!(s1.config_changes.iter().any(|c| c == "+cluster-init"), "{:?}", s1.config_changes);
    assert_eq!((s2.stage, s2.service, s2.join), (plan::Stage::NewServer, plan::Service::Start, true));

    // The pod network is the cluster's for good.
    let vxlan = inv(&SINGLE.replace("cluster: {name: demo}", "cluster: {name: demo, pod-network: vxlan}"));
    let p = plan::plan(&vxlan, &[installed(&single, 0, "s1", &t), installed(&single, 1, "w", &t)], &local(), &Running::default());
    assert!(p.problems.iter().any(|m| m.contains("10.0.0.11: the cluster runs pod-network host-gw; it cannot change to vxlan")), "{:?}", p.problems);

    // A role change needs a reset first.
    let mut f = installed(&single, 1, "w", &t);
    f.datastore = None;
    let swapped = inv("
hosts:
  - {address: 10.0.0.21, role: server}
  - {address: 10.0.0.11, role: agent}
");
    let p = plan::plan(&swapped, &[f, fresh("s1")], &local(), &Running::default());
    assert!(p.problems.iter().any(|m| m.contains("10.0.0.21: is installed as agent, the inventory makes it server")), "{:?}", p.problems);
}

#[test]
fn nodes_missing_from_the_inventory_are_found() {
    let a = inv(SINGLE);
    let t = tokens();
    let facts: Vec<Facts> = (0..2).map(|i| installed(&a, i, &format!("h{i}"), &t)).collect();
    let running = Running { nodes: Some(vec![node("s1", true), node("h1", true), node("old-worker", false)]), members: None, tokens: Some(t), ..Default::default() };
    let p = plan::plan(&a, &facts, &local(), &running);
    let extra: Vec<&str> = p.extra_nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(extra, ["old-worker"]);
    // A host whose node is gone although it is installed joins again.
    let running = Running { nodes: Some(vec![node("s1", true)]), members: None, tokens: None, ..Default::default() };
    let p = plan::plan(&a, &facts, &local(), &running);
    assert!(p.hosts[1].join && !p.hosts[0].join);
}

#[test]
fn json_report_shape() {
    let a = inv(SINGLE);
    let p = plan::plan(&a, &[fresh("s1"), fresh("w")], &local(), &Running::default());
    let r = Report::new("demo", &p, true);
    let v: serde_json::Value = serde_json::from_str(&r.json()).unwrap();
    assert_eq!(v["cluster"], "demo");
    assert_eq!(v["mode"], "single");
    let table = r.plan_table();
    assert!(table.lines().nth(1).unwrap().ends_with("start (new cluster)"), "{table}");
    assert!(table.lines().nth(2).unwrap().ends_with("start (joins)"), "{table}");
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["ok"], true);
    let h = &v["hosts"][1];
    for key in ["name", "address", "role", "status", "changed", "changes", "error", "seconds", "plan"] {
        assert!(h.get(key).is_some(), "hosts[].{key} missing: {h}");
    }
    assert_eq!(h["address"], "10.0.0.21");
    assert_eq!(h["role"], "agent");
    assert_eq!(h["status"], "untouched");
    assert_eq!(h["plan"]["service"], "start");
    assert_eq!(h["plan"]["token"], "after-first-server");
    assert_eq!(h["plan"]["config_changes"][0], "new");
    assert!(v["extra_nodes"].as_array().unwrap().is_empty());
    assert!(r.plan_table().lines().nth(2).unwrap().contains("10.0.0.21"), "{}", r.plan_table());
}

#[test]
fn config_changes_name_keys() {
    let old = "# x\nnode-name: a\nnode-ip: 10.0.0.1\ntls-san: [a]\n";
    let new = "# y\nnode-name: a\ntls-san: [a, b]\nnode-label: [x=y]\n";
    assert_eq!(render::config_changes(Some(old), new), ["~tls-san", "+node-label", "-node-ip"]);
    assert_eq!(render::config_changes(None, new), ["new"]);
    assert_eq!(render::config_changes(Some(old), old.replace("# x", "# z").as_str()), ["~format"]);
}

#[test]
fn workstation_kubeconfig_points_at_the_api_address() {
    let admin = "apiVersion: v1\nkind: Config\nclusters:\n- name: default\n  cluster:\n    server: https://127.0.0.1:6443\n    certificate-authority-data: Q0E=\ncontexts:\n- name: default\n  context: {cluster: default, user: admin}\ncurrent-context: default\nusers:\n- name: admin\n  user: {client-certificate-data: Q0VSVA==, client-key-data: S0VZ}\n";
    let out = render::workstation_kubeconfig(admin, "edge", "https://lb:6443").unwrap();
    let v: serde_yaml::Value = serde_yaml::from_str(&out).unwrap();
    assert_eq!(v["clusters"][0]["cluster"]["server"], "https://lb:6443");
    assert_eq!(v["clusters"][0]["cluster"]["certificate-authority-data"], "Q0E=");
    assert_eq!(v["clusters"][0]["name"], "edge");
    assert_eq!(v["users"][0]["name"], "edge");
    assert_eq!(v["users"][0]["user"]["client-key-data"], "S0VZ");
    assert_eq!(v["contexts"][0]["context"]["cluster"], "edge");
    assert_eq!(v["current-context"], "edge");
    assert_eq!((&v["apiVersion"], &v["kind"]), (&"v1".into(), &"Config".into()));
    assert_eq!(out, render::workstation_kubeconfig(admin, "edge", "https://lb:6443").unwrap());
    assert!(render::workstation_kubeconfig("users: []", "edge", "https://lb:6443").is_err());
}

#[test]
fn facts_parse() {
    let f = Facts::parse(
        "hostname=Node-1\nos=Debian GNU/Linux 12 (bookworm)\narch=x86_64\nsystemd=yes\ncgroup=tmpfs\n\
         k8s_version=k8s 0.1.0\nk8s_sha256=abc\nk8s_mtime=100\nmtime:/etc/k8s/config.yaml=200\n\
         unit:k8s-agent=50\nactive:k8s-agent=active\nenabled:k8s-agent=enabled\nstarted:k8s-agent=150\n\
         free_bin=2048\nfree_var=4096\n",
    );
    assert_eq!(f.hostname, "node-1");
    assert_eq!((f.arch.as_str(), f.systemd, f.cgroup), ("x86_64", true, 1));
    assert_eq!(f.installed_release(), Some("0.1.0"));
    assert_eq!(f.installed_role(), Some("k8s-agent"));
    assert!(f.units["k8s-agent"].is_active());
    assert_eq!((f.free_bin_kib, f.free_var_kib), (Some(2048), Some(4096)));
    // The config (200) is newer than the running agent (150).
    assert!(f.stale("k8s-agent", &[render::BINARY, render::CONFIG]));
    assert!(!f.stale("k8s-agent", &[render::BINARY]));
    assert!(Facts::parse("cgroup=cgroup2fs\n").cgroup == 2 && Facts::parse("").installed_role().is_none());
}

#[test]
fn labels_and_taints_converge_through_the_api() {
    let a = inv(SINGLE);
    let host = &a.hosts[0];
    let mut n = node("s1", true);
    let cmds = nodes::label_commands(host, &n);
    let flat: Vec<String> = cmds.iter().map(|c| c.join(" ")).collect();
    assert_eq!(flat, [
        "label --overwrite node/s1 node-role.kubernetes.io/edge= zone=a",
        "annotate --overwrite node/s1 k8s.up/managed=label:node-role.kubernetes.io/edge,label:zone,taint:dedicated:NoSchedule",
        "taint --overwrite node/s1 dedicated=edge:NoSchedule",
    ]);
    // Applied: nothing to do.
    n.labels.insert("zone".into(), "a".into());
    n.labels.insert("node-role.kubernetes.io/edge".into(), "".into());
    n.taints.push("dedicated=edge:NoSchedule".into());
    n.managed = vec!["label:node-role.kubernetes.io/edge".into(), "label:zone".into(), "taint:dedicated:NoSchedule".into()];
    assert!(nodes::label_commands(host, &n).is_empty());
    // Removed from the inventory: removed from the node; others' labels stay.
    n.labels.insert("rack".into(), "7".into());
    n.managed.push("label:old".into());
    n.labels.insert("old".into(), "x".into());
    let flat: Vec<String> = nodes::label_commands(host, &n).iter().map(|c| c.join(" ")).collect();
    assert_eq!(flat[0], "label --overwrite node/s1 old-");
    assert!(flat[1].starts_with("annotate") && !flat[1].contains("old"));
    assert_eq!(flat.len(), 2);
}

#[test]
fn nodes_parse_from_kubectl_json() {
    let json = r#"{"items":[{"metadata":{"name":"n1","labels":{"a":"b"},"annotations":{"k8s.up/managed":"label:a"}},
      "spec":{"taints":[{"key":"k","value":"v","effect":"NoSchedule"},{"key":"g","effect":"NoExecute"}]},
      "status":{"conditions":[{"type":"Ready","status":"True"}],"addresses":[{"type":"InternalIP","address":"10.0.0.5"},{"type":"Hostname","address":"n1"}]}},
      {"metadata":{"name":"n2"},"status":{"conditions":[{"type":"Ready","status":"Unknown"}]}}]}"#;
    let n = nodes::parse(json).unwrap();
    assert_eq!(n[0].name, "n1");
    assert!(n[0].ready && !n[1].ready);
    assert_eq!(n[0].internal_ip.as_deref(), Some("10.0.0.5"));
    assert_eq!(n[0].taints, ["k=v:NoSchedule", "g:NoExecute"]);
    assert_eq!(n[0].managed, ["label:a"]);
    assert!(nodes::parse("not json").is_err());
}

#[test]
fn nodes_parse_as_typed_node_objects() {
    // As kubectl prints them: apiVersion/kind, timestamps, quantities, a
    // taint with an empty value, a node without spec, and no InternalIP.
    let json = r#"{"apiVersion":"v1","kind":"List","metadata":{"resourceVersion":""},"items":[
      {"apiVersion":"v1","kind":"Node","metadata":{"name":"s1","creationTimestamp":"2025-01-02T03:04:05Z",
        "labels":{"kubernetes.io/hostname":"s1","node-role.kubernetes.io/control-plane":""},
        "annotations":{"k8s.io/vxlan-mac":"aa:bb:cc:dd:ee:ff","k8s.up/managed":"label:zone,,taint:x:NoExecute"}},
       "spec":{"podCIDR":"10.42.0.0/24","taints":[{"key":"x","value":"","effect":"NoExecute","timeAdded":"2025-01-02T03:04:05Z"}]},
       "status":{"capacity":{"cpu":"2","memory":"4026532Ki"},
         "conditions":[{"type":"MemoryPressure","status":"False","lastHeartbeatTime":"2025-01-02T03:04:05Z"},
                       {"type":"Ready","status":"True","reason":"KubeletReady"}],
         "addresses":[{"type":"Hostname","address":"s1"},{"type":"InternalIP","address":"fd00::11"}],
         "nodeInfo":{"kubeletVersion":"v1.37.0","architecture":"amd64","bootID":"","containerRuntimeVersion":"",
           "kernelVersion":"","kubeProxyVersion":"","machineID":"","operatingSystem":"linux","osImage":"","systemUUID":""}}},
      {"apiVersion":"v1","kind":"Node","metadata":{"name":"w1"},"status":{"addresses":[{"type":"Hostname","address":"w1"}]}}]}"#;
    let n = nodes::parse(json).unwrap();
    assert_eq!(n.len(), 2);
    assert_eq!((n[0].name.as_str(), n[0].ready, n[0].internal_ip.as_deref()), ("s1", true, Some("fd00::11")));
    assert_eq!(n[0].labels.get("node-role.kubernetes.io/control-plane").map(String::as_str), Some(""));
    assert_eq!(n[0].taints, ["x:NoExecute"]);
    assert_eq!(n[0].managed, ["label:zone", "taint:x:NoExecute"]);
    assert_eq!(n[1], Node { name: "w1".into(), ready: false, internal_ip: None, labels: Default::default(), taints: vec![], managed: vec![] });

    assert_eq!(nodes::parse(r#"{"items":[]}"#), Ok(vec![]));
    assert_eq!(nodes::parse(r#"{"kind":"List"}"#), Err("kubectl get nodes: no items".into()));
    assert_eq!(nodes::parse(r#"{"items":null}"#), Err("kubectl get nodes: no items".into()));
    // Not a Node: refused rather than read as an empty one.
    let pod = nodes::parse(r#"{"items":[{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"}}]}"#).unwrap_err();
    assert!(pod.starts_with("kubectl get nodes: not JSON: ") && pod.contains("Pod"), "{pod}");
}

#[test]
fn etcd_members_missing_from_the_inventory_are_found() {
    let text = [
        "NAME                 ID               ROLE     PEER                         CLIENT",
        "s1                   1ca75a6e37456ba4 leader   https://10.0.0.11:2380       https://10.0.0.11:2379",
        "cp-old               1f3556079b3acb17 voter    https://[fd00::9]:2380       https://[fd00::9]:2379",
        "s4                   362d4a0eb5a5412f voter    https://10.0.0.14:2380       https://10.0.0.14:2379",
        // A learner that has not started has no name yet.
        "                     462d4a0eb5a5412f learner  https://10.0.0.15:2380       ",
    ]
    .join("\n");
    let members = nodes::parse_members(&text);
    let got: Vec<(&str, Option<&str>)> = members.iter().map(|m| (m.name.as_str(), m.address.as_deref())).collect();
    assert_eq!(got, [("s1", Some("10.0.0.11")), ("cp-old", Some("fd00::9")), ("s4", Some("10.0.0.14"))]);

    let a = inv(HA);
    let t = tokens();
    let facts: Vec<Facts> = (0..a.hosts.len()).map(|i| installed(&a, i, &format!("h{i}"), &t)).collect();
    // s4 is also a node (handled as a node); cp-old runs no node.
    let running = Running { nodes: Some(vec![node("w1", true), node("s2", true), node("s3", true), node("s4", true)]), members: Some(members), tokens: Some(t), ..Default::default() };
    let p = plan::plan(&a, &facts, &local(), &running);
    assert_eq!(p.extra_nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["s4"]);
    assert_eq!(p.extra_members.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(), ["cp-old"]);
}

#[test]
fn vxlan_reaches_the_servers_config_and_host_gw_stays_unwritten() {
    let text = "cluster: {pod-network: vxlan}\nhosts:\n  - {address: 10.0.0.11, role: server}\n  - {address: 10.0.0.21, role: agent}\n";
    let inv = crate::inventory::Inventory::parse(text, std::path::Path::new("hosts.yaml")).unwrap();
    let server: crate::host::config::ServerOptions = serde_yaml::from_str(&render::config(&inv, &inv.hosts[0], "s1")).unwrap();
    assert_eq!(server.pod_network, Some(crate::node::PodNetwork::Vxlan));
    let plain = crate::inventory::Inventory::parse(&text.replace("{pod-network: vxlan}", "{name: x}"), std::path::Path::new("hosts.yaml")).unwrap();
    assert!(!render::config(&plain, &plain.hosts[0], "s1").contains("pod-network"));
}

#[test]
fn the_cis_profile_reaches_the_servers_config_and_standard_stays_unwritten() {
    let text = "cluster: {profile: cis}\nhosts:\n  - {address: 10.0.0.11, role: server}\n";
    let inv = crate::inventory::Inventory::parse(text, std::path::Path::new("hosts.yaml")).unwrap();
    let server: crate::host::config::ServerOptions = serde_yaml::from_str(&render::config(&inv, &inv.hosts[0], "s1")).unwrap();
    assert_eq!(server.profile, Some(crate::host::config::Profile::Cis));
    let plain = crate::inventory::Inventory::parse(&text.replace("{profile: cis}", "{profile: standard}"), std::path::Path::new("hosts.yaml")).unwrap();
    assert!(!render::config(&plain, &plain.hosts[0], "s1").contains("profile"));
}

/// The cluster's nodes as the upgrade controller reads them, on `version`.
fn upgrade_facts(names: &[(&str, crate::upgrade::crd::Role)], version: &str) -> Vec<crate::upgrade::preflight::NodeFacts> {
    names.iter().map(|(name, role)| crate::upgrade::preflight::NodeFacts::healthy(name, *role, version)).collect()
}

#[test]
fn another_version_on_running_nodes_is_handed_to_the_cluster() {
    use crate::upgrade::crd::Role::{Agent, Server};
    let a = inv(SINGLE);
    let t = tokens();
    let mut facts: Vec<Facts> = (0..2).map(|i| installed(&a, i, &format!("h{i}"), &t)).collect();
    for f in &mut facts {
        f.installed_version = Some("k8s 0.0.1".into());
        f.installed_sha256 = Some("b".repeat(64));
    }
    let nodes = vec![node("s1", true), node("h1", true)];
    let mut running = Running {
        nodes: Some(nodes),
        tokens: Some(t),
        upgrade_facts: Some(upgrade_facts(&[("h1", Agent), ("s1", Server)], "0.0.1")),
        ..Default::default()
    };
    let p = plan::plan(&a, &facts, &local(), &running);
    assert!(p.problems.is_empty(), "{:?}", p.problems);
    let u = p.upgrade.as_ref().expect("an upgrade");
    assert_eq!((u.from.as_slice(), u.to.as_str()), (&["0.0.1".to_string()][..], crate::version::VERSION));
    let order: Vec<&str> = u.rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(order, ["s1", "h1"], "servers first");
    for h in &p.hosts {
        assert!(h.upgrade && !h.upload, "{}: upgraded by the cluster, not uploaded to", h.name);
        assert_eq!(h.service, Service::Keep, "{}: not restarted by up", h.name);
        assert_eq!(planned_changes(h), ["upgrade"]);
    }

    // The cluster's rules refuse: nothing starts.
    running.upgrade_facts.as_mut().unwrap()[1].ready = false;
    let p = plan::plan(&a, &facts, &local(), &running);
    assert!(p.problems.iter().any(|m| m.starts_with("upgrade preflight: node s1 is not Ready")), "{:?}", p.problems);
    running.upgrade_facts = None;
    let p = plan::plan(&a, &facts, &local(), &running);
    assert!(p.problems.iter().any(|m| m.contains("cannot be read to plan the upgrade")), "{:?}", p.problems);

    // A new host is not in the plan: it is installed as usual.
    let fresh_agent = fresh("h1");
    let running = Running { nodes: Some(vec![node("s1", true)]), upgrade_facts: Some(upgrade_facts(&[("s1", Server)], "0.0.1")), ..Default::default() };
    let p = plan::plan(&a, &[facts[0].clone(), fresh_agent], &local(), &running);
    assert!(p.hosts[0].upgrade && !p.hosts[1].upgrade && p.hosts[1].upload);
}

const REGISTRIES: &str = "mirrors:\n  docker.io:\n    endpoint: [\"https://mirror.example:5000\"]\n";

fn with_registries(text: &str) -> Local {
    Local { registries: Some(LocalFile::new("/fleet/registries.yaml".into(), text.as_bytes().to_vec())), ..local() }
}

#[test]
fn registries_yaml_is_written_where_it_differs_and_restarts_nothing() {
    let a = inv(SINGLE);
    let t = tokens();
    let running = Running { nodes: None, members: None, tokens: Some(t.clone()), ..Default::default() };
    let mut facts: Vec<Facts> = (0..2).map(|i| installed(&a, i, &format!("h{i}"), &t)).collect();

    // Not in the inventory: whatever the hosts have is left alone.
    facts[0].registries = Some(super::facts::FileState { mode: 0o644, sha256: "x".repeat(64) });
    let p = plan::plan(&a, &facts, &local(), &running);
    assert!(p.hosts.iter().all(|h| h.registries == FilePlan::None && planned_changes(h).is_empty()), "{:#?}", p.hosts);
    assert!(!Report::new("demo", &p, true).plan_table().contains("REGISTRIES"));

    // Set: written where it is missing or differs, in content or in mode;
    // a running node applies it itself, so the services are kept.
    let local = with_registries(REGISTRIES);
    let sha256 = local.registries.as_ref().unwrap().sha256.clone();
    facts[1].registries = None;
    let p = plan::plan(&a, &facts, &local, &running);
    assert!(p.problems.is_empty(), "{:?}", p.problems);
    for h in &p.hosts {
        assert_eq!((h.registries, h.service), (FilePlan::Write, Service::Keep), "{h:?}");
        assert_eq!(planned_changes(h), ["registries"]);
    }
    facts[0].registries = Some(super::facts::FileState { mode: 0o644, sha256: sha256.clone() });
    facts[1].registries = Some(super::facts::FileState { mode: 0o600, sha256 });
    let p = plan::plan(&a, &facts, &local, &running);
    assert_eq!(p.hosts[0].registries, FilePlan::Write, "a readable copy is made 0600");
    assert_eq!(p.hosts[1].registries, FilePlan::Unchanged);
    assert!(planned_changes(&p.hosts[1]).is_empty());

    // --dry-run: a column, and JSON says it per host.
    let r = Report::new("demo", &p, true);
    let table = r.plan_table();
    assert!(table.lines().next().unwrap().contains("REGISTRIES"), "{table}");
    assert!(table.lines().nth(1).unwrap().contains("write"), "{table}");
    let v: serde_json::Value = serde_json::from_str(&r.json()).unwrap();
    assert_eq!((&v["hosts"][0]["plan"]["registries"], &v["hosts"][1]["plan"]["registries"]), (&"write".into(), &"unchanged".into()));

    // Fresh hosts get it before their first start (with everything else).
    let p = plan::plan(&a, &[fresh("s1"), fresh("w")], &local, &Running::default());
    assert!(p.hosts.iter().all(|h| h.registries == FilePlan::Write && h.service == Service::Start));
}

#[test]
fn registries_facts_parse() {
    let f = Facts::parse(&format!("registries=600 {}\n", "a".repeat(64)));
    assert_eq!(f.registries, Some(super::facts::FileState { mode: 0o600, sha256: "a".repeat(64) }));
    assert_eq!(Facts::parse("hostname=x\n").registries, None);
}

/// The registries file's content may hold passwords: never in Debug output.
#[test]
fn a_local_files_content_stays_out_of_debug() {
    let l = with_registries("configs:\n  r.example:\n    auth: {username: u, password: hunter2}\n");
    assert!(!format!("{l:?}").contains("hunter2"));
}

/// `cluster.registries` is checked on this machine with the node's parser:
/// a file the nodes would refuse is refused before any host is contacted,
/// naming the inventory, the file and the line.
#[test]
fn registries_file_is_checked_here_first() {
    let dir = tempfile::TempDir::new().unwrap();
    let hosts = dir.path().join("hosts.yaml");
    let with = |setting: &str| {
        let text = format!("cluster:\n  name: demo\n  registries: {setting}\nhosts:\n  - {{address: 10.0.0.11, role: server}}\n");
        Inventory::parse(&text, &hosts).unwrap_or_else(|e| panic!("{e}"))
    };
    std::fs::write(dir.path().join("good.yaml"), REGISTRIES).unwrap();
    let file = super::registries_file(&with("good.yaml")).unwrap().expect("a file");
    assert_eq!((file.path.as_path(), file.content.as_slice()), (dir.path().join("good.yaml").as_path(), REGISTRIES.as_bytes()));
    assert!(super::registries_file(&inv(SINGLE)).unwrap().is_none());

    std::fs::write(dir.path().join("bad.yaml"), "mirrors:\n  docker.io:\n    endpoints: [x]\n").unwrap();
    let e = format!("{:#}", super::registries_file(&with("bad.yaml")).unwrap_err());
    let want = format!("{}: cluster.registries: {}:3:5: ", hosts.display(), dir.path().join("bad.yaml").display());
    assert!(e.starts_with(&want) && e.contains("unknown field `endpoints`"), "{e}");
    let e = format!("{:#}", super::registries_file(&with("missing.yaml")).unwrap_err());
    assert!(e.contains("cluster.registries: cannot read") && e.contains("missing.yaml"), "{e}");
}

#[test]
fn each_host_gets_the_binary_of_its_architecture() {
    let a = inv(SINGLE);
    let mut facts = vec![fresh("s1"), fresh("w1")];
    facts[1].arch = "aarch64".into();
    let mut both = local();
    both.binaries.insert("arm64".into(), release("arm64", "c"));
    let p = plan::plan(&a, &facts, &both, &Running::default());
    assert!(p.problems.is_empty(), "{:?}", p.problems);
    let archs: Vec<(&str, bool)> = p.hosts.iter().map(|h| (h.arch.as_str(), h.upload)).collect();
    assert_eq!(archs, vec![("amd64", true), ("arm64", true)]);
    // Installed with the arm64 binary: nothing to upload there.
    facts[1].installed_sha256 = Some("c".repeat(64));
    let p = plan::plan(&a, &facts, &both, &Running::default());
    assert!(!p.hosts[1].upload);
    // A machine k8s is not built for is refused, whatever binaries there are.
    facts[1].arch = "armv7l".into();
    let p = plan::plan(&a, &facts, &both, &Running::default());
    assert!(p.problems.iter().any(|m| m.contains("10.0.0.21: the machine is armv7l; k8s is built for amd64 (x86_64) and arm64 (aarch64)")), "{:?}", p.problems);
}
