use std::path::{Path, PathBuf};
use std::time::Duration;

use super::locate::{locate, FieldPath, Seg};
use super::syntax;
use super::*;

fn parse(text: &str) -> Result<Inventory, InventoryError> {
    Inventory::parse(text, Path::new("hosts.yaml"))
}

fn ok(text: &str) -> Inventory {
    match parse(text) {
        Ok(inv) => inv,
        Err(e) => panic!("expected a valid inventory, got:\n{e}"),
    }
}

/// Every problem as displayed, one string each.
fn problems(text: &str) -> Vec<String> {
    match parse(text) {
        Ok(_) => panic!("expected problems in:\n{text}"),
        Err(e) => {
            let lines: Vec<String> = e.to_string().lines().map(str::to_string).collect();
            assert_eq!(lines.len(), e.problems().len(), "one line per problem:\n{e}");
            lines
        }
    }
}

/// Asserts that exactly one problem starts with `hosts.yaml:<at>: ` and
/// contains every one of `parts`.
#[track_caller]
fn has(all: &[String], at: &str, parts: &[&str]) {
    let prefix = format!("hosts.yaml:{at}: ");
    let found: Vec<&String> =
        all.iter().filter(|p| p.starts_with(&prefix) && parts.iter().all(|x| p.contains(x))).collect();
    assert_eq!(found.len(), 1, "expected one problem at {at} containing {parts:?}; got:\n{}", all.join("\n"));
}

#[track_caller]
fn one(text: &str, at: &str, parts: &[&str]) {
    let all = problems(text);
    assert_eq!(all.len(), 1, "expected exactly one problem, got:\n{}", all.join("\n"));
    has(&all, at, parts);
}

const ONE: &str = "hosts:\n  - address: 10.0.0.11\n    role: server\n";

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("inventories")
}

// ---- the examples ----

#[test]
fn example_single_loads() {
    let inv = Inventory::load(examples_dir().join("single.yaml")).unwrap();
    assert_eq!(inv.mode(), Mode::Single);
    assert_eq!(inv.servers().count(), 1);
    assert_eq!(inv.agents().count(), 0);
    assert_eq!(inv.cluster.name, "lab");
    assert!(inv.warnings().is_empty(), "{:?}", inv.warnings());
}

#[test]
fn example_ha_loads() {
    let inv = Inventory::load(examples_dir().join("ha.yaml")).unwrap();
    assert_eq!(inv.mode(), Mode::Ha { servers: 3 });
    assert_eq!(inv.mode().tolerated_failures(), 1);
    assert_eq!(inv.api_url(), "https://k8s.example.com:6443");
    assert_eq!(inv.tls_sans(), vec!["k8s.example.com".to_string(), "10.0.0.10".to_string()]);
    let names: Vec<&str> = inv.servers().map(Host::display_name).collect();
    assert_eq!(names, ["cp-1", "cp-2", "cp-3"]);
    assert!(inv.warnings().is_empty(), "{:?}", inv.warnings());
    let s = inv.first_server().ssh_settings(&inv.ssh);
    assert_eq!(s.user, "debian");
}

#[test]
fn example_ha_agents_loads() {
    let inv = Inventory::load(examples_dir().join("ha-agents.yaml")).unwrap();
    assert_eq!(inv.mode(), Mode::Ha { servers: 3 });
    assert_eq!(inv.agents().count(), 2);
    assert!(inv.servers().all(|s| s.control_plane_only && !s.is_node()));
    assert!(inv.ssh.bastion.is_some());
    assert_eq!(inv.ssh.host_key_checking, HostKeyChecking::Strict);
    assert_eq!(inv.ssh.timeout, Duration::from_secs(15));

    let worker = &inv.hosts[3];
    assert_eq!(worker.display_name(), "worker-1");
    assert_eq!(worker.kubelet_labels().into_iter().collect::<Vec<_>>(), [("disk", "ssd")]);
    let s = worker.ssh_settings(&inv.ssh);
    assert_eq!((s.user.as_str(), s.port), ("ops", 22));
    let b = s.bastion.unwrap();
    assert_eq!((b.address.as_str(), b.port(), b.user.as_deref()), ("bastion.edge.example.com", 22, Some("ops")));

    let gpu = &inv.hosts[4];
    assert_eq!(gpu.display_name(), "gpu-1.edge.example.com");
    assert_eq!(gpu.taints[0].to_string(), "nvidia.com/gpu=present:NoSchedule");
    let s = gpu.ssh_settings(&inv.ssh);
    assert_eq!((s.user.as_str(), s.port, s.identity_file.as_deref()), ("admin", 2222, Some("~/.ssh/gpu_ed25519")));
    let b = s.bastion.unwrap();
    assert_eq!(b.user.as_deref(), Some("ops"), "the bastion's own user wins over the host's");
    assert_eq!(b.identity_file.as_deref(), Some("~/.ssh/gpu_ed25519"), "the bastion uses the host's key by default");
}

#[test]
fn example_files_have_host_lines() {
    let inv = Inventory::load(examples_dir().join("ha-agents.yaml")).unwrap();
    let text = std::fs::read_to_string(examples_dir().join("ha-agents.yaml")).unwrap();
    for h in &inv.hosts {
        let line = text.lines().nth(h.line - 1).unwrap();
        assert!(line.contains(&format!("- address: {}", h.address)), "line {} is {line:?}", h.line);
    }
}

// ---- defaults ----

#[test]
fn minimal_inventory_gets_every_default() {
    let inv = ok(ONE);
    let c = &inv.cluster;
    assert_eq!(c.name, "k8s");
    assert_eq!(c.api, Api { address: None, port: 6443 });
    assert_eq!(c.cluster_cidr.to_string(), "10.42.0.0/16");
    assert_eq!(c.service_cidr.to_string(), "10.43.0.0/16");
    assert_eq!(c.cluster_dns.to_string(), "10.43.0.10");
    assert_eq!(c.cluster_domain, "cluster.local");
    assert_eq!(c.pod_network, PodNetwork::HostGw);
    assert_eq!(c.version, None);
    assert_eq!(inv.ssh, SshDefaults { base_dir: PathBuf::from("."), ..SshDefaults::default() });
    assert_eq!(inv.ssh.user, "root");
    assert_eq!(inv.ssh.port, 22);
    assert_eq!(inv.ssh.host_key_checking, HostKeyChecking::AcceptNew);
    assert_eq!(inv.ssh.sudo, Sudo::Auto);
    assert_eq!(inv.ssh.timeout, Duration::from_secs(10));
    assert_eq!(inv.ssh.concurrency, 5);
    assert_eq!(inv.api_address(), "10.0.0.11");
    assert_eq!(inv.api_url(), "https://10.0.0.11:6443");
    assert!(inv.tls_sans().is_empty());
    let h = &inv.hosts[0];
    assert_eq!(h.line, 2);
    assert_eq!(h.display_name(), "10.0.0.11");
    assert!(h.is_node() && h.is_server());
}

#[test]
fn cluster_dns_follows_a_custom_service_cidr() {
    let inv = ok(&format!("cluster:\n  service-cidr: 10.96.0.0/12\n{ONE}"));
    assert_eq!(inv.cluster.cluster_dns.to_string(), "10.96.0.10");
}

#[test]
fn flow_style_and_anchors_are_fine() {
    let text = "\
ssh: &defaults {user: ops, port: 2222}
hosts:
  - {address: 10.0.0.11, role: server, ssh: *defaults}
  - {address: 10.0.0.12, role: agent, labels: {zone: a}}
";
    let inv = ok(text);
    assert_eq!(inv.hosts[0].ssh.user.as_deref(), Some("ops"));
    assert_eq!(inv.hosts[1].line, 4);
}

#[test]
fn ipv6_addresses() {
    let inv = ok("cluster:\n  cluster-cidr: fd42::/56\n  service-cidr: fd43::/112\nhosts:\n  - {address: 'fd00::11', role: server}\n");
    assert_eq!(inv.api_url(), "https://[fd00::11]:6443");
    assert_eq!(inv.cluster.cluster_dns.to_string(), "fd43::a");
}

// ---- YAML syntax ----

#[test]
fn yaml_syntax_error_has_its_line() {
    let all = problems("hosts:\n  - address: 10.0.0.11\n    role: [server\n");
    assert_eq!(all.len(), 1);
    assert!(all[0].starts_with("hosts.yaml:4:"), "{all:?}");
}

#[test]
fn tabs_get_a_hint() {
    one("hosts:\n\t- address: x\n", "2:1", &["spaces, not tabs"]);
}

#[test]
fn repeated_key_points_at_the_repeat() {
    one(
        "hosts:\n  - address: 10.0.0.11\n    role: server\n    role: agent\n",
        "4:5",
        &["hosts[0]: ", "\"role\" is written twice"],
    );
}

#[test]
fn two_documents_are_refused() {
    one(&format!("{ONE}---\nhosts: []\n"), "4:1", &["more than one YAML document"]);
}

#[test]
fn empty_file() {
    one("", "1:1", &["the inventory is empty"]);
    one("# only a comment\n", "1:1", &["the inventory is empty"]);
}

#[test]
fn missing_file_is_a_read_error() {
    let e = Inventory::load("/nonexistent/hosts.yaml").unwrap_err();
    assert!(matches!(e, InventoryError::Read { .. }));
    assert!(e.to_string().contains("/nonexistent/hosts.yaml"), "{e}");
}

#[test]
fn load_names_the_path_as_given_and_anchors_relative_paths() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edge.yaml");
    std::fs::write(&path, "ssh: {identity-file: keys/id}\nhosts:\n  - address: 10.0.0.11\n    role: sever\n").unwrap();
    let e = Inventory::load(&path).unwrap_err().to_string();
    assert!(e.starts_with(&format!("{}:4:11: hosts[0].role: ", path.display())), "{e}");
    std::fs::write(&path, "ssh: {identity-file: keys/id}\nhosts:\n  - address: 10.0.0.11\n    role: server\n").unwrap();
    let inv = Inventory::load(&path).unwrap();
    let s = inv.hosts[0].ssh_settings(&inv.ssh);
    assert_eq!(s.identity_path().unwrap(), Some(dir.path().join("keys/id")));
}

// ---- structure: unknown keys and wrong types ----

#[test]
fn unknown_keys_everywhere_with_hints() {
    let text = "\
clustr:
  name: x
cluster:
  versoin: v1.0.0
ssh:
  key: ~/.ssh/id
hosts:
  - address: 10.0.0.11
    role: server
    disable-agent: true
    ssh: {user: a, concurrency: 3}
    colour: blue
";
    let all = problems(text);
    assert_eq!(all.len(), 6, "{}", all.join("\n"));
    has(&all, "1:1", &["clustr: unknown key; did you mean cluster?"]);
    has(&all, "4:3", &["cluster.versoin: unknown key; did you mean version?"]);
    has(&all, "6:3", &["ssh.key: unknown key; write identity-file"]);
    has(&all, "10:5", &["hosts[0].disable-agent: unknown key; write control-plane-only: true"]);
    has(&all, "11:20", &["hosts[0].ssh.concurrency: unknown key; write it in the top-level ssh:"]);
    has(&all, "12:5", &["hosts[0].colour: unknown key; the keys here are: address, role"]);
}

#[test]
fn server_config_names_get_a_hint() {
    let text = "\
cluster:
  https-listen-port: 7443
hosts:
  - address: 10.0.0.11
    role: server
    node-name: cp-1
    node-label: [zone=a]
    node-taint: [\"gpu:NoSchedule\"]
";
    let all = problems(text);
    assert_eq!(all.len(), 4, "{}", all.join("\n"));
    has(&all, "2:3", &["cluster.https-listen-port: unknown key; write api: {port: …}"]);
    has(&all, "6:5", &["hosts[0].node-name: unknown key; write name"]);
    has(&all, "7:5", &["hosts[0].node-label: unknown key; write labels (a mapping: {key: value})"]);
    has(&all, "8:5", &["hosts[0].node-taint: unknown key; write taints"]);
}

#[test]
fn k0sctl_files_get_a_hint() {
    let all = problems("apiVersion: k0sctl.k0sproject.io/v1beta1\nkind: Cluster\nspec: {}\n");
    has(&all, "1:1", &["apiVersion: unknown key", "not a k0sctl file"]);
}

#[test]
fn wrong_types() {
    let text = "\
cluster:
  name: 7
  api: 10.0.0.10
  tls-san: k8s.example.com
ssh:
  port: \"22\"
  concurrency: many
options:
  force-even-servers: yes
hosts:
  - address: 10.0.0.11
    role: server
    control-plane-only: 1
    labels: [a, b]
    taints: {a: b}
";
    let all = problems(text);
    assert_eq!(all.len(), 9, "{}", all.join("\n"));
    has(&all, "2:9", &["cluster.name: expected a cluster name (text), found the number 7; put it in quotes"]);
    has(&all, "3:8", &["cluster.api: expected a mapping; write api: {address: 10.0.0.10}"]);
    has(&all, "4:12", &["cluster.tls-san: expected a list", "write [k8s.example.com]"]);
    has(&all, "6:9", &["ssh.port: expected a port number from 1 to 65535, found the text \"22\""]);
    has(&all, "7:16", &["ssh.concurrency: expected a whole number"]);
    has(&all, "9:23", &["options.force-even-servers: expected true or false, found the text \"yes\""]);
    has(&all, "13:25", &["hosts[0].control-plane-only: expected true or false, found the number 1"]);
    has(&all, "14:13", &["hosts[0].labels: expected a mapping of labels, found a list"]);
    has(&all, "15:13", &["hosts[0].taints: expected a list of taints"]);
}

#[test]
fn hosts_must_be_a_list_of_mappings() {
    one("hosts:\n  address: 10.0.0.11\n", "2:3", &["hosts: expected a list of hosts"]);
    one(
        "hosts:\n  - 10.0.0.11\n",
        "2:5",
        &["hosts[0]: expected a host mapping; write `- {address: 10.0.0.11, role: server}`"],
    );
    one("hosts: []\n", "1:8", &["hosts: the list is empty"]);
    one("cluster: {name: a}\n", "1:1", &["no hosts:"]);
    one("[1, 2]\n", "1:1", &["expected the inventory (a mapping"]);
}

#[test]
fn address_and_role_are_required() {
    let all = problems("hosts:\n  - role: server\n  - address: 10.0.0.12\n  - address: 10.0.0.13\n    role:\n");
    assert_eq!(all.len(), 3, "{}", all.join("\n"));
    has(&all, "2:5", &["hosts[0]: no address"]);
    has(&all, "3:5", &["hosts[1]: no role: add role: server or role: agent"]);
    has(&all, "4:5", &["hosts[2]: no role"]);
}

#[test]
fn role_values() {
    one(
        "hosts:\n  - address: 10.0.0.11\n    role: sever\n",
        "3:11",
        &["hosts[0].role: \"sever\" is not one of server, agent; did you mean server?"],
    );
    one(
        "hosts:\n  - address: 10.0.0.11\n    role: master\n",
        "3:11",
        &["\"master\" is not one of server, agent; write server"],
    );
    let all = problems("hosts:\n  - {address: 10.0.0.11, role: controller}\n  - {address: 10.0.0.12, role: worker}\n");
    has(&all, "2:32", &["write server (k0sctl's controller)"]);
    has(&all, "3:32", &["\"worker\" is not one of server, agent; write agent"]);
}

// ---- values ----

#[test]
fn invalid_addresses() {
    let text = "\
cluster:
  api: {address: 'https://lb'}
hosts:
  - {address: 10.0.0.256, role: server}
  - {address: 'root@10.0.0.12', role: agent}
  - {address: '10.0.0.13:2222', role: agent}
  - {address: 'bad_name', role: agent}
  - {address: 10.0.0.15, role: agent, node-ip: 10.0.0}
";
    let all = problems(text);
    assert_eq!(all.len(), 6, "{}", all.join("\n"));
    has(&all, "2:18", &["cluster.api.address: \"https://lb\": write the address alone, without a scheme"]);
    has(&all, "4:15", &["hosts[0].address: \"10.0.0.256\" is not a valid IPv4 address"]);
    has(&all, "5:15", &["contains a user; write the address alone and set ssh.user: root"]);
    has(&all, "6:15", &["contains a port; write the address alone and set ssh.port: 2222"]);
    has(&all, "7:15", &["\"bad_name\" is not an IP address or a host name"]);
    has(&all, "8:48", &["hosts[4].node-ip: \"10.0.0\" is not an IP address"]);
}

#[test]
fn invalid_cidrs() {
    let text = "cluster:\n  cluster-cidr: 10.42.0.0\n  service-cidr: 10.43.0.1/16\n  cluster-dns: ten\n  cluster-domain: Cluster_Local\n  version: latest\n";
    let all = problems(&format!("{text}{ONE}"));
    assert_eq!(all.len(), 5, "{}", all.join("\n"));
    has(&all, "2:17", &["cluster.cluster-cidr: \"10.42.0.0\" is not a CIDR: add the prefix length"]);
    has(&all, "3:17", &["cluster.service-cidr: \"10.43.0.1/16\" has host bits set; the network is 10.43.0.0/16"]);
    has(&all, "4:16", &["cluster.cluster-dns: \"ten\" is not an IP address"]);
    has(&all, "5:19", &["cluster.cluster-domain: \"Cluster_Local\" is not a DNS domain"]);
    has(&all, "6:12", &["cluster.version: \"latest\" is not a version like v0.1.0"]);
}

#[test]
fn profile_choice() {
    assert_eq!(ok(&format!("cluster:\n  profile: cis\n{ONE}")).cluster.profile, Profile::Cis);
    assert_eq!(ok(ONE).cluster.profile, Profile::Standard);
    one(&format!("cluster:\n  profile: cis-1.23\n{ONE}"), "2:12", &["write cis"]);
}

#[test]
fn disabled_addons() {
    assert_eq!(ok(&format!("cluster:\n  disable: [coredns, coredns]\n{ONE}")).cluster.disable, [Addon::Coredns]);
    assert!(ok(ONE).cluster.disable.is_empty());
    let inv = ok(&format!("cluster:\n  disable: [metrics-server, coredns]\n{ONE}"));
    assert_eq!(inv.cluster.disable, [Addon::MetricsServer, Addon::Coredns]);
    one(&format!("cluster:\n  disable: [coredns, traefik]\n{ONE}"), "2:22", &["\"traefik\" is not one of coredns, servicelb, local-storage, network-policy, metrics-server", "no ingress controller"]);
    one(&format!("cluster:\n  disable: [metrics_server]\n{ONE}"), "2:13", &["did you mean metrics-server?"]);
    one(&format!("cluster:\n  disable: coredns\n{ONE}"), "2:12", &["expected a list of addons like [coredns]"]);
    one(&format!("cluster:\n  disable: [core-dns]\n{ONE}"), "2:13", &["did you mean coredns?"]);
}

#[test]
fn binaries_per_architecture_from_the_inventorys_dir() {
    let inv = Inventory::parse(&format!("cluster:\n  binaries: {{amd64: dist/k8s, arm64: /opt/k8s-arm64}}\n{ONE}"), Path::new("/etc/fleet/hosts.yaml")).unwrap();
    assert_eq!(
        inv.binary_files().unwrap(),
        vec![("amd64".to_string(), PathBuf::from("/etc/fleet/dist/k8s")), ("arm64".to_string(), PathBuf::from("/opt/k8s-arm64"))]
    );
    assert_eq!(ok(ONE).binary_files().unwrap(), vec![]);
    one(&format!("cluster:\n  binaries: {{aarch64: k8s}}\n{ONE}"), "2:14", &["write arm64"]);
    one(&format!("cluster:\n  binaries: dist/k8s\n{ONE}"), "2:13", &["expected the k8s binary of each architecture"]);
}

#[test]
fn registries_file_from_the_inventorys_dir() {
    let inv = Inventory::parse(&format!("cluster:\n  registries: fleet/registries.yaml\n{ONE}"), Path::new("/etc/fleet/hosts.yaml")).unwrap();
    assert_eq!(inv.registries_file().unwrap(), Some(PathBuf::from("/etc/fleet/fleet/registries.yaml")));
    assert_eq!(ok(ONE).registries_file().unwrap(), None);
    one(&format!("cluster:\n  registries: [a.yaml]\n{ONE}"), "2:15", &["expected the path of a registries.yaml"]);
    one(&format!("cluster:\n  registries: ''\n{ONE}"), "2:15", &["is empty; give a file path"]);
}

#[test]
fn image_archives_from_the_inventorys_dir() {
    let text = format!("cluster:\n  images: [app.tar.zst, /srv/base.tar]\n{ONE}");
    let inv = Inventory::parse(&text, Path::new("/etc/fleet/hosts.yaml")).unwrap();
    assert_eq!(inv.image_archives().unwrap(), [PathBuf::from("/etc/fleet/app.tar.zst"), PathBuf::from("/srv/base.tar")]);
    assert!(ok(ONE).image_archives().unwrap().is_empty());
    one(&format!("cluster:\n  images: [app.tgz]\n{ONE}"), "2:12", &["\"app.tgz\" is not an image archive"]);
    one(&format!("cluster:\n  images: [a/app.tar, b/app.tar]\n{ONE}"), "2:23", &["another archive has the file name app.tar"]);
    one(&format!("cluster:\n  images: app.tar\n{ONE}"), "2:11", &["write [app.tar]"]);
}

#[test]
fn pod_network_choice() {
    let inv = ok(&format!("cluster:\n  pod-network: vxlan\n{ONE}"));
    assert_eq!(inv.cluster.pod_network, PodNetwork::Vxlan);
    assert_eq!(inv.cluster.pod_network.to_string(), "vxlan", "written to the servers' config as it was read");
    assert_eq!(ok(&format!("cluster:\n  pod-network: host-gw\n{ONE}")).cluster.pod_network, PodNetwork::HostGw);
    one(
        &format!("cluster:\n  pod-network: hostgw\n{ONE}"),
        "2:16",
        &["cluster.pod-network: \"hostgw\" is not one of host-gw, vxlan; did you mean host-gw?"],
    );
    one(&format!("cluster:\n  pod-network: flannel\n{ONE}"), "2:16", &["write vxlan (flannel's default backend)"]);
    one(&format!("cluster:\n  flannel-backend: vxlan\n{ONE}"), "2:3", &["flannel-backend: unknown key; write pod-network"]);
}

#[test]
fn overlapping_networks() {
    one(
        &format!("cluster:\n  cluster-cidr: 10.42.0.0/16\n  service-cidr: 10.42.128.0/17\n{ONE}"),
        "3:17",
        &["cluster.service-cidr: 10.42.128.0/17 overlaps cluster-cidr 10.42.0.0/16"],
    );
    let all = problems(&format!("cluster:\n  cluster-cidr: 10.0.0.0/8\n  service-cidr: 10.43.0.0/16\n{ONE}"));
    assert_eq!(all.len(), 2, "{}", all.join("\n"));
    has(&all, "3:17", &["overlaps cluster-cidr 10.0.0.0/8"]);
    has(&all, "5:14", &["hosts[0].address: 10.0.0.11 is inside cluster-cidr 10.0.0.0/8"]);
    one(&format!("cluster:\n  service-cidr: fd43::/112\n{ONE}"), "2:17", &["different IP families"]);
}

#[test]
fn cluster_dns_must_be_inside_the_service_network() {
    let at = |dns: &str, parts: &[&str]| one(&format!("cluster:\n  cluster-dns: {dns}\n{ONE}"), "2:16", parts);
    at("10.44.0.10", &["cluster.cluster-dns: 10.44.0.10 is outside service-cidr 10.43.0.0/16", "e.g. 10.43.0.10"]);
    at("10.43.0.0", &["is the network address of 10.43.0.0/16"]);
    at("10.43.0.1", &["the first address of 10.43.0.0/16, which the `kubernetes` Service takes"]);
    at("10.43.255.255", &["broadcast address"]);
    ok(&format!("cluster:\n  cluster-dns: 10.43.0.53\n{ONE}"));
    one(
        &format!("cluster:\n  service-cidr: 10.43.0.0/29\n{ONE}"),
        "2:17",
        &["too small to hold the cluster DNS address"],
    );
}

#[test]
fn hosts_must_be_outside_the_cluster_networks() {
    let text =
        "cluster:\n  api: {address: 10.43.0.5}\nhosts:\n  - {address: 10.42.0.11, role: server, node-ip: 10.43.9.9}\n";
    let all = problems(text);
    assert_eq!(all.len(), 3, "{}", all.join("\n"));
    has(&all, "2:18", &["cluster.api.address: 10.43.0.5 is inside service-cidr 10.43.0.0/16"]);
    has(&all, "4:15", &["hosts[0].address: 10.42.0.11 is inside cluster-cidr 10.42.0.0/16"]);
    has(&all, "4:50", &["hosts[0].node-ip: 10.43.9.9 is inside service-cidr"]);
}

#[test]
fn api_port_must_be_free_on_the_servers() {
    one(&format!("cluster:\n  api:\n    port: 2379\n{ONE}"), "3:11", &["cluster.api.port: 2379 is etcd's client port"]);
    one(&format!("cluster:\n  api:\n    port: 0\n{ONE}"), "3:11", &["the number 0 is not a port number"]);
    assert_eq!(ok(&format!("cluster:\n  api: {{port: 443}}\n{ONE}")).api_url(), "https://10.0.0.11:443");
}

#[test]
fn duplicates() {
    let text = "\
hosts:
  - address: 10.0.0.11
    role: server
    name: s1
  - address: 10.0.0.12
    role: agent
    name: s1
  - address: 10.0.0.11
    role: agent
  - address: Node-4.example.com
    role: agent
  - address: node-4.example.com
    role: agent
  - address: 10.0.0.16
    role: agent
    node-ip: 10.0.0.12
";
    let all = problems(text);
    assert_eq!(all.len(), 4, "{}", all.join("\n"));
    has(&all, "7:11", &["hosts[1].name: \"s1\" is already the name of hosts[0] (line 2)"]);
    has(&all, "8:14", &["hosts[2].address: 10.0.0.11 is already hosts[0] (line 2)"]);
    has(&all, "12:14", &["hosts[4].address: node-4.example.com is already hosts[3] (line 10)"]);
    has(&all, "16:14", &["hosts[5].node-ip: 10.0.0.12 is already the address of hosts[1] (line 5)"]);
}

#[test]
fn a_host_may_use_its_own_address_as_node_ip() {
    ok("hosts:\n  - {address: 10.0.0.11, role: server, node-ip: 10.0.0.11}\n");
    one(
        "hosts:\n  - {address: 10.0.0.11, role: server, node-ip: 127.0.0.1}\n",
        "2:49",
        &["127.0.0.1 cannot be a node's IP"],
    );
}

#[test]
fn names() {
    one(
        "cluster: {name: Edge}\nhosts: [{address: 10.0.0.11, role: server}]\n",
        "1:17",
        &["cluster.name: \"Edge\" is not a cluster name"],
    );
    one(
        "hosts:\n  - {address: 10.0.0.11, role: server, name: S1}\n",
        "2:46",
        &["hosts[0].name: \"S1\" has capital letters; node names are lower case: s1"],
    );
    one("hosts:\n  - {address: 10.0.0.11, role: server, name: 'a b'}\n", "2:46", &["is not a valid node name"]);
}

#[test]
fn labels() {
    let text = "\
hosts:
  - address: 10.0.0.11
    role: server
    labels:
      zone: 1
      'bad key': x
      example.com/ok: fine
      Example.com/x: y
      long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
      empty:
      node-role.kubernetes.io/worker: ''
";
    let all = problems(text);
    assert_eq!(all.len(), 4, "{}", all.join("\n"));
    has(&all, "5:13", &["hosts[0].labels.zone: label values are text, found the number 1; put it in quotes"]);
    has(&all, "6:7", &["hosts[0].labels[\"bad key\"]: key \"bad key\": the name \"bad key\" must be 1-63 characters"]);
    has(&all, "8:7", &["the prefix \"Example.com\" must be a lower-case DNS subdomain"]);
    has(&all, "9:13", &["the value \"aaaa", "must be at most 63 characters"]);
}

#[test]
fn kubelet_sets_only_the_labels_it_may_set_on_itself() {
    let inv = ok("hosts:\n  - address: 10.0.0.11\n    role: server\n    labels: {node-role.kubernetes.io/edge: '', topology.kubernetes.io/zone: a, node.kubernetes.io/pool: x, example.com/y: z, k8s.io/q: r}\n");
    let h = &inv.hosts[0];
    let kubelet: Vec<_> = h.kubelet_labels().into_keys().collect();
    assert_eq!(kubelet, ["example.com/y", "node.kubernetes.io/pool", "topology.kubernetes.io/zone"]);
}

#[test]
fn taints() {
    let text = "\
hosts:
  - address: 10.0.0.11
    role: server
    taints:
      - dedicated=edge:NoSchedule
      - gpu:NoExecute
      - dedicated=other:NoSchedule
      - dedicated=edge:noschedule
      - dedicated
      - =x:NoSchedule
      - 'bad key=x:NoSchedule'
      - k=bad value:NoSchedule
";
    let all = problems(text);
    assert_eq!(all.len(), 6, "{}", all.join("\n"));
    has(&all, "7:9", &["hosts[0].taints[2]: a taint with key \"dedicated\" and effect NoSchedule is already listed"]);
    has(
        &all,
        "8:9",
        &["the effect \"noschedule\" is not one of NoSchedule, PreferNoSchedule, NoExecute (write NoSchedule)"],
    );
    has(&all, "9:9", &["\"dedicated\" must look like key[=value]:Effect"]);
    has(&all, "10:9", &["has no key"]);
    has(&all, "11:9", &["taint \"bad key=x:NoSchedule\": key \"bad key\""]);
    has(&all, "12:9", &["the value \"bad value\""]);
    let inv = ok("hosts:\n  - {address: 10.0.0.11, role: server, taints: ['a=b:NoSchedule', 'c:PreferNoSchedule']}\n");
    let t: Vec<String> = inv.hosts[0].taints.iter().map(ToString::to_string).collect();
    assert_eq!(t, ["a=b:NoSchedule", "c:PreferNoSchedule"]);
    one(
        "hosts:\n  - {address: 10.0.0.11, role: server, taints: [{key: a, effect: NoSchedule}]}\n",
        "2:48",
        &["write each taint as text"],
    );
}

#[test]
fn control_plane_only() {
    let text = "\
hosts:
  - address: 10.0.0.11
    role: server
    control-plane-only: true
    labels: {a: b}
    taints: [a:NoSchedule]
  - address: 10.0.0.12
    role: agent
    control-plane-only: true
";
    let all = problems(text);
    assert_eq!(all.len(), 3, "{}", all.join("\n"));
    has(&all, "5:5", &["hosts[0].labels: a control-plane-only server is not a node"]);
    has(&all, "6:5", &["hosts[0].taints: a control-plane-only server is not a node"]);
    has(&all, "9:25", &["hosts[1].control-plane-only: only a server can be control-plane-only"]);
}

#[test]
fn someone_must_run_the_pods() {
    one(
        "hosts:\n  - {address: 10.0.0.11, role: server, control-plane-only: true}\n",
        "1:1",
        &["hosts: no host runs workloads"],
    );
    let inv = ok("hosts:\n  - {address: 10.0.0.11, role: server, control-plane-only: true}\n  - {address: 10.0.0.12, role: agent}\n");
    assert!(!inv.hosts[0].is_node() && inv.hosts[1].is_node());
}

#[test]
fn ssh_values() {
    let text = "\
ssh:
  user: 'a b'
  port: 70000
  identity-file: ~bob/.ssh/id
  host-key-checking: off
  sudo: true
  timeout: 10
  concurrency: 0
hosts:
  - address: 10.0.0.11
    role: server
    ssh:
      timeout: 1.5s
      bastion: 'me@:22'
      sudo: sometimes
  - address: 10.0.0.12
    role: agent
    ssh: {timeout: 0s, bastion: 'jump:99999', port: -1}
  - address: 10.0.0.13
    role: agent
    ssh: {timeout: 10x, bastion: {user: x}, host-key-checking: strct}
";
    let all = problems(text);
    has(&all, "2:9", &["ssh.user: \"a b\" is not a user name"]);
    has(&all, "3:9", &["ssh.port: the number 70000 is not a port number from 1 to 65535"]);
    has(&all, "4:18", &["ssh.identity-file: \"~bob/.ssh/id\": only ~/ (your home) is expanded"]);
    has(
        &all,
        "5:22",
        &["ssh.host-key-checking: \"off\" is not one of strict, accept-new; host keys are always checked"],
    );
    has(&all, "6:9", &["ssh.sudo: expected one of auto, always, never, found the boolean true; write always"]);
    has(&all, "7:12", &["ssh.timeout: 10 has no unit; write 10s for seconds"]);
    has(&all, "8:16", &["ssh.concurrency: expected a whole number of hosts, 1 or more, found the number 0"]);
    has(&all, "13:16", &["hosts[0].ssh.timeout: \"1.5s\": use whole numbers, e.g. 1500ms"]);
    has(&all, "14:16", &["hosts[0].ssh.bastion: bastion \"me@:22\" has no host"]);
    has(&all, "15:13", &["hosts[0].ssh.sudo: \"sometimes\" is not one of auto, always, never"]);
    has(&all, "18:20", &["hosts[1].ssh.timeout: \"0s\" must be more than zero"]);
    has(&all, "18:33", &["hosts[1].ssh.bastion: bastion \"jump:99999\": port \"99999\" is not a port number"]);
    has(&all, "18:53", &["hosts[1].ssh.port: the number -1 is not a port number"]);
    has(&all, "21:20", &["hosts[2].ssh.timeout: \"10x\" must be a duration like 10s"]);
    has(&all, "21:34", &["hosts[2].ssh.bastion: the bastion has no address"]);
    has(
        &all,
        "21:64",
        &["hosts[2].ssh.host-key-checking: \"strct\" is not one of strict, accept-new; did you mean strict?"],
    );
    assert_eq!(all.len(), 16, "{}", all.join("\n"));
}

#[test]
fn ssh_settings_merge_host_over_defaults() {
    let text = "\
ssh:
  user: ops
  identity-file: ~/.ssh/ops
  bastion: jump.example.com
  sudo: never
  timeout: 1m30s
  known-hosts: ./known_hosts
hosts:
  - address: 10.0.0.11
    role: server
  - address: 10.0.0.12
    role: agent
    ssh: {user: root, port: 2222, bastion: none, sudo: always, timeout: 500ms, host-key-checking: strict}
  - address: 10.0.0.13
    role: agent
    ssh:
      bastion: {address: 'fd00::1', user: jumper, port: 2200, identity-file: /keys/jump}
";
    let inv = Inventory::parse(text, Path::new("/etc/fleet/hosts.yaml")).unwrap();
    let d = &inv.ssh;
    let a = inv.hosts[0].ssh_settings(d);
    assert_eq!((a.address.as_str(), a.user.as_str(), a.port), ("10.0.0.11", "ops", 22));
    assert_eq!(a.timeout, Duration::from_secs(90));
    assert_eq!(a.host_key_checking, HostKeyChecking::AcceptNew);
    let b = a.bastion.as_ref().unwrap();
    assert_eq!(b.to_string(), "ops@jump.example.com:22");
    assert_eq!(b.identity_file.as_deref(), Some("~/.ssh/ops"));
    assert_eq!(a.known_hosts_path().unwrap(), PathBuf::from("/etc/fleet/./known_hosts"));
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        assert_eq!(a.identity_path().unwrap(), Some(PathBuf::from(home).join(".ssh/ops")));
    }

    let b = inv.hosts[1].ssh_settings(d);
    assert_eq!((b.user.as_str(), b.port, b.bastion.is_none()), ("root", 2222, true));
    assert_eq!(b.timeout, Duration::from_millis(500));
    assert_eq!(b.host_key_checking, HostKeyChecking::Strict);
    assert_eq!(b.identity_file.as_deref(), Some("~/.ssh/ops"));

    let c = inv.hosts[2].ssh_settings(d);
    let j = c.bastion.as_ref().unwrap();
    assert_eq!(j.to_string(), "jumper@[fd00::1]:2200");
    assert_eq!(c.bastion_identity_path().unwrap(), Some(PathBuf::from("/keys/jump")));
}

#[test]
fn bastion_strings() {
    let b = syntax::parse_bastion("admin@jump:2222").unwrap();
    assert_eq!((b.user.as_deref(), b.address.as_str(), b.port), (Some("admin"), "jump", Some(2222)));
    let b = syntax::parse_bastion("10.0.0.1").unwrap();
    assert_eq!((b.user.as_deref(), b.address.as_str(), b.port()), (None, "10.0.0.1", 22));
    let b = syntax::parse_bastion("u@[fd00::1]:22").unwrap();
    assert_eq!(b.address, "fd00::1");
    assert_eq!(syntax::parse_bastion("fd00::1").unwrap().address, "fd00::1");
    for bad in ["", "@jump", "u@", "jump:", "jump:x", "[fd00::1", "[10.0.0.1]:22", "a b@jump", "ju_mp"] {
        assert!(syntax::parse_bastion(bad).is_err(), "{bad:?} should be refused");
    }
}

#[test]
fn cidr_arithmetic() {
    let c = Cidr::parse("10.43.0.0/16").unwrap();
    assert!(c.contains("10.43.255.255".parse().unwrap()));
    assert!(!c.contains("10.44.0.0".parse().unwrap()));
    assert!(!c.contains("::1".parse().unwrap()));
    assert_eq!(c.nth(10).unwrap().to_string(), "10.43.0.10");
    assert_eq!(Cidr::parse("10.0.0.0/30").unwrap().nth(4), None);
    assert!(Cidr::parse("0.0.0.0/0").unwrap().overlaps(&c));
    assert!(Cidr::parse("10.43.0.0/33").is_err());
    assert!(Cidr::parse("10.42.0.0/16,fd00::/56").unwrap_err().contains("dual-stack"));
}

#[test]
fn label_and_name_rules() {
    for good in ["a", "zone", "example.com/zone", "a.b-c_d", "x/Y", "A1"] {
        assert!(syntax::check_label_key(good).is_ok(), "{good:?}");
    }
    for bad in ["", "-a", "a-", "/a", "a/", "Ex.com/a", "a/b/c", &"x".repeat(64)] {
        assert!(syntax::check_label_key(bad).is_err(), "{bad:?}");
    }
    assert!(syntax::check_label_value("k", "").is_ok());
    assert!(syntax::check_label_value("k", "a b").is_err());
    assert!(syntax::check_node_name("node-1.example").is_ok());
    assert!(syntax::check_node_name("node_1").is_err());
    assert!(syntax::check_version("v1.2.3").is_ok());
    assert!(syntax::check_version("1.2.3-rc.1+build.5").is_ok());
    assert!(syntax::check_version("v1.2").is_err());
    assert!(syntax::check_version("v1.2.3-").is_err());
    assert!(syntax::check_san("*.example.com").is_ok());
}

#[test]
fn typo_suggestions() {
    assert_eq!(syntax::closest("rol", &["address", "role"]), Some("role"));
    assert_eq!(syntax::closest("identity_file", &["identity-file"]), Some("identity-file"));
    assert_eq!(syntax::closest("identityFile", &["identity-file"]), Some("identity-file"));
    assert_eq!(syntax::closest("zzz", &["address", "role"]), None);
}

// ---- mode ----

fn fleet(servers: usize, agents: usize, force: bool) -> String {
    let mut s =
        format!("options:\n  force-even-servers: {force}\ncluster:\n  api: {{address: lb.example.com}}\nhosts:\n");
    for i in 0..servers {
        s += &format!("  - {{address: 10.0.0.{}, role: server}}\n", i + 1);
    }
    for i in 0..agents {
        s += &format!("  - {{address: 10.0.1.{}, role: agent}}\n", i + 1);
    }
    s
}

#[test]
fn mode_from_server_count() {
    assert_eq!(ok(&fleet(1, 0, false)).mode(), Mode::Single);
    assert_eq!(ok(&fleet(1, 3, false)).mode(), Mode::Single);
    for n in [3, 5, 7] {
        let inv = ok(&fleet(n, 2, false));
        assert_eq!(inv.mode(), Mode::Ha { servers: n });
        assert_eq!(inv.servers().count(), n);
        assert_eq!(inv.agents().count(), 2);
        assert!(inv.warnings().is_empty());
    }
    assert_eq!(ok(&fleet(5, 0, false)).mode().tolerated_failures(), 2);
    assert_eq!(Mode::Ha { servers: 3 }.to_string(), "HA: 3 servers (etcd; tolerates 1 failed server)");
}

#[test]
fn even_server_counts_are_refused_with_the_reason() {
    for (n, quorum, survive) in [(2, 2, 0), (4, 3, 1), (6, 4, 2)] {
        let all = problems(&fleet(n, 1, false));
        assert_eq!(all.len(), 1, "{all:?}");
        has(
            &all,
            "5:1",
            &[
                &format!("hosts: {n} servers is an even count: etcd needs a majority ({quorum} of {n})"),
                &format!("survive {survive} failed server"),
                &format!("use {} or {} servers", n - 1, n + 1),
                "options.force-even-servers: true",
            ],
        );
    }
}

#[test]
fn even_server_counts_can_be_forced() {
    for n in [2, 4, 6] {
        let inv = ok(&fleet(n, 0, true));
        assert_eq!(inv.mode(), Mode::Ha { servers: n });
        let w = inv.warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!((w[0].line, w[0].field.as_str()), (2, "options.force-even-servers"));
        assert!(w[0].message.contains("going ahead as forced"));
    }
}

#[test]
fn more_than_seven_servers_are_refused_even_when_forced() {
    for n in [8, 9] {
        one(&fleet(n, 0, true), "5:1", &[&format!("hosts: {n} servers is more than 7"), "use 3, 5 or 7 servers"]);
    }
}

#[test]
fn no_server() {
    one(
        "hosts:\n  - {address: 10.0.0.1, role: agent}\n",
        "1:1",
        &["hosts: no server: a cluster needs a host with role: server"],
    );
}

#[test]
fn ha_without_load_balancer_warns() {
    let inv = ok("hosts:\n  - {address: 10.0.0.1, role: server}\n  - {address: 10.0.0.2, role: server}\n  - {address: 10.0.0.3, role: server}\n");
    let w = inv.warnings();
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].field, "cluster.api.address");
    assert!(w[0].to_string().starts_with(
        "hosts.yaml:1:1: cluster.api.address: not set, so kubeconfigs point at the first server (10.0.0.1)"
    ));
}

#[test]
fn mode_is_not_judged_when_a_role_is_wrong() {
    // One wrong role: only that is reported, not "2 servers is even".
    let all = problems("hosts:\n  - {address: 10.0.0.1, role: server}\n  - {address: 10.0.0.2, role: server}\n  - {address: 10.0.0.3, role: srv}\n");
    assert_eq!(all.len(), 1, "{all:?}");
}

// ---- reporting ----

#[test]
fn every_problem_is_reported_at_once_in_file_order() {
    let text = "\
hosts:
  - address: 10.0.0.300
    role: boss
  - address: 10.0.0.2
    role: agent
    labels: {'a b': c}
cluster:
  name: NO
";
    let e = parse(text).unwrap_err();
    let lines: Vec<usize> = e.problems().iter().map(|p| p.line).collect();
    assert_eq!(lines, [2, 3, 6, 8]);
    for l in e.to_string().lines() {
        assert!(l.starts_with("hosts.yaml:"), "{l}");
    }
}

#[test]
fn locate_follows_the_parser() {
    let text = "\
# comment
a:
  b: |
    two
    lines
  c: [x, {d: 1}]   # flow
e: &anchor
  f: 2
g: *anchor
";
    let path = |segs: &[Seg]| FieldPath(segs.to_vec());
    let k = |s: &str| Seg::Key(s.into());
    assert_eq!(locate(text, &path(&[k("a")]).0, false), (3, 3));
    assert_eq!(locate(text, &path(&[k("a")]).0, true), (2, 1));
    assert_eq!(locate(text, &path(&[k("a"), k("c"), Seg::Index(1), k("d")]).0, false), (6, 14));
    assert_eq!(locate(text, &path(&[k("a"), k("c"), Seg::Index(1), k("d")]).0, true), (6, 11));
    assert_eq!(locate(text, &path(&[k("g"), k("f")]).0, false), (8, 6), "an alias leads to the anchored node");
    // Missing parts stop at the deepest node that exists.
    assert_eq!(locate(text, &path(&[k("a"), k("zz")]).0, false), (3, 3));
    assert_eq!(locate(text, &path(&[k("a"), k("c"), Seg::Index(9)]).0, false), (6, 6));
    assert_eq!(
        path(&[k("hosts"), Seg::Index(2), k("labels"), k("example.com/x")]).to_string(),
        "hosts[2].labels[\"example.com/x\"]"
    );
}

#[test]
fn merge_keys_reuse_a_host() {
    let text = "\
hosts:
  - &server {address: 10.0.0.1, role: server, labels: {zone: a}}
  - <<: *server
    address: 10.0.0.2
  - <<: *server
    address: 10.0.0.3
    rol: agent
";
    one(text, "7:5", &["hosts[2].rol: unknown key; did you mean role?"]);
    let inv = ok(&text.replace("    rol: agent\n", ""));
    assert_eq!(inv.mode(), Mode::Ha { servers: 3 });
    assert_eq!(inv.hosts[2].labels["zone"], "a");
}

#[test]
fn the_reference_example_loads() {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/inventory.md")).unwrap();
    let section = doc.split("## Everything, with defaults").nth(1).expect("the section exists");
    let yaml = section.split("```yaml\n").nth(1).and_then(|s| s.split("```").next()).expect("a yaml block");
    let inv = ok(yaml);
    assert_eq!(inv.mode(), Mode::Single);
    assert_eq!(inv.cluster.version.as_deref(), Some("v0.1.0"));
    let s = inv.hosts[0].ssh_settings(&inv.ssh);
    assert_eq!((s.user.as_str(), s.port), ("debian", 2222));
    assert_eq!(s.bastion.unwrap().to_string(), "ops@jump.example.com:22");
}
