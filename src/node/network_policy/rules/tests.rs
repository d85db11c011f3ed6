use super::*;
use serde_json::json;

fn pod(ns: &str, name: &str, node: &str, ip: &str, labels: serde_json::Value) -> Arc<Pod> {
    Arc::new(serde_json::from_value(json!({
        "metadata": {"namespace": ns, "name": name, "labels": labels},
        "spec": {"nodeName": node, "containers": [{"name": "c", "ports": [
            {"name": "http", "containerPort": 8080},
            {"name": "dns", "containerPort": 5353, "protocol": "UDP"},
        ]}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]},
    })).unwrap())
}

fn namespace(name: &str, labels: serde_json::Value) -> Arc<Namespace> {
    Arc::new(serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap())
}

fn policy(ns: &str, name: &str, spec: serde_json::Value) -> Arc<NetworkPolicy> {
    Arc::new(serde_json::from_value(json!({"metadata": {"namespace": ns, "name": name}, "spec": spec})).unwrap())
}

/// Pods a1 (here) and a2 (elsewhere) in `a`, b1 (here) in `b` labelled
/// team=blue, c1 (elsewhere) in `c`.
fn cluster() -> (Vec<Arc<Pod>>, Vec<Arc<Namespace>>) {
    let pods = vec![
        pod("a", "a1", "here", "10.42.0.5", json!({"app": "web"})),
        pod("a", "a2", "there", "10.42.1.5", json!({"app": "db"})),
        pod("b", "b1", "here", "10.42.0.6", json!({"app": "web"})),
        pod("c", "c1", "there", "10.42.1.6", json!({"app": "client"})),
    ];
    let namespaces = vec![
        namespace("a", json!({"kubernetes.io/metadata.name": "a"})),
        namespace("b", json!({"kubernetes.io/metadata.name": "b", "team": "blue"})),
        namespace("c", json!({"kubernetes.io/metadata.name": "c"})),
    ];
    (pods, namespaces)
}

fn chain_of<'r>(rules: &'r Ruleset, prefix: &str) -> Vec<&'r Vec<String>> {
    rules.chains.iter().filter(|(name, _)| name.starts_with(prefix)).map(|(_, r)| r).collect()
}

#[test]
fn without_policies_the_main_chain_is_empty_and_alone() {
    let (pods, namespaces) = cluster();
    let (rules, broken) = render("here", &pods, &namespaces, &[]);
    assert!(broken.is_empty());
    assert_eq!(rules.chains.len(), 1);
    assert_eq!(rules.chains[MAIN], Vec::<String>::new());
    assert_eq!(rules.policed(), (0, 0));
}

#[test]
fn a_default_deny_polices_only_the_selected_pods_of_this_node() {
    let (pods, namespaces) = cluster();
    let deny = policy("a", "deny", json!({"podSelector": {}, "policyTypes": ["Ingress"]}));
    let (rules, _) = render("here", &pods, &namespaces, &[deny]);
    assert_eq!(rules.policed(), (1, 0), "a1 only: a2 runs on another node, b1 is in another namespace");
    let main = &rules.chains[MAIN];
    assert!(main[0].contains("RELATED,ESTABLISHED -j RETURN"), "replies pass first: {main:?}");
    assert!(main[1].starts_with("-d 10.42.0.5/32 ") && main[1].contains(&format!("-j {MAIN}-I-")), "{main:?}");
    let chain = chain_of(&rules, &format!("{MAIN}-I-"));
    assert_eq!(chain[0].len(), 1, "nothing admitted: {chain:?}");
    assert!(chain[0][0].ends_with("-j REJECT") && chain[0][0].contains("a/a1"));
}

#[test]
fn namespace_and_pod_selectors_select_peers_across_nodes() {
    let (pods, namespaces) = cluster();
    let from_blue = policy("a", "from-blue", json!({
        "podSelector": {"matchLabels": {"app": "web"}},
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "blue"}}}], "ports": [{"port": 80}]}],
    }));
    let (rules, _) = render("here", &pods, &namespaces, &[from_blue]);
    let chain = chain_of(&rules, &format!("{MAIN}-I-"))[0];
    assert_eq!(chain.len(), 2, "{chain:?}");
    assert!(chain[0].starts_with("-s 10.42.0.6/32 -p tcp -m tcp --dport 80 ") && chain[0].contains("\"a/from-blue\"") && chain[0].ends_with("-j RETURN"), "{chain:?}");

    // Both selectors in one peer: pods with the label in namespaces with theirs.
    let both = policy("a", "both", json!({
        "podSelector": {},
        "ingress": [{"from": [{"namespaceSelector": {}, "podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["client", "db"]}]}}]}],
    }));
    let (rules, _) = render("here", &pods, &namespaces, &[both]);
    let chain = chain_of(&rules, &format!("{MAIN}-I-"))[0];
    let sources: Vec<&str> = chain.iter().filter_map(|r| r.strip_prefix("-s ")).map(|r| r.split(' ').next().unwrap()).collect();
    assert_eq!(sources, ["10.42.1.5/32", "10.42.1.6/32"], "a2 (db) and c1 (client), on any node: {chain:?}");

    // A podSelector alone stays in the policy's namespace.
    let same_ns = policy("a", "same", json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}));
    let (rules, _) = render("here", &pods, &namespaces, &[same_ns]);
    let chain = chain_of(&rules, &format!("{MAIN}-I-"))[0];
    assert_eq!(chain.len(), 3, "a1 and a2 admitted, then REJECT: {chain:?}");
}

#[test]
fn an_empty_rule_admits_everything_and_ports_alone_admit_any_peer() {
    let (pods, namespaces) = cluster();
    let open = policy("b", "open", json!({"podSelector": {}, "ingress": [{}]}));
    let (rules, _) = render("here", &pods, &namespaces, &[open]);
    assert_eq!(chain_of(&rules, &format!("{MAIN}-I-"))[0][0], "-m comment --comment \"b/open\" -j RETURN");
    let udp = policy("b", "udp", json!({"podSelector": {}, "ingress": [{"ports": [{"protocol": "UDP", "port": 53, "endPort": 60}]}]}));
    let (rules, _) = render("here", &pods, &namespaces, &[udp]);
    assert_eq!(chain_of(&rules, &format!("{MAIN}-I-"))[0][0], "-p udp -m udp --dport 53:60 -m comment --comment \"b/udp\" -j RETURN");
}

#[test]
fn an_ip_block_becomes_its_prefixes_without_the_excepted_ones() {
    let (pods, namespaces) = cluster();
    let out = policy("a", "out", json!({
        "podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Egress"],
        "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.42.0.0/16"]}}, {"ipBlock": {"cidr": "fd00::/8"}}]}],
    }));
    let (rules, _) = render("here", &pods, &namespaces, &[out]);
    assert_eq!(rules.policed(), (0, 1));
    let chain = chain_of(&rules, &format!("{MAIN}-E-"))[0];
    let nets: Vec<Net> = chain.iter().filter_map(|r| r.strip_prefix("-d ")).map(|r| Net::parse(r.split(' ').next().unwrap()).unwrap()).collect();
    assert_eq!(nets.len(), 8, "/8 minus a /16: one prefix per level between them: {chain:?}");
    let pod_net = Net::parse("10.42.0.0/16").unwrap();
    assert!(nets.iter().all(|n| !n.contains(pod_net) && !pod_net.contains(*n)), "{chain:?}");
    let covered: u64 = nets.iter().map(|n| 1u64 << (32 - n.len)).sum();
    assert_eq!(covered, (1 << 24) - (1 << 16), "all the rest of the /8");
    assert!(main_jump(&rules).starts_with("-s 10.42.0.5/32 "), "egress is matched on the source");
}

fn main_jump(rules: &Ruleset) -> &str {
    &rules.chains[MAIN][1]
}

#[test]
fn subtracting_prefixes() {
    let n = |s| Net::parse(s).unwrap();
    assert_eq!(subtract(n("10.0.0.0/24"), &[]), [n("10.0.0.0/24")]);
    assert_eq!(subtract(n("10.0.0.0/24"), &[n("10.0.0.0/16")]), []);
    assert_eq!(subtract(n("10.0.0.0/24"), &[n("10.0.0.0/25")]), [n("10.0.0.128/25")]);
    assert_eq!(subtract(n("0.0.0.0/0"), &[n("0.0.0.0/1"), n("192.168.0.0/16")]).len(), 15, "one prefix per level from /2 to /16");
    assert_eq!(n("10.1.2.3/8").to_string(), "10.0.0.0/8", "host bits are cleared");
    assert!(Net::parse("10.0.0.0/33").is_none() && Net::parse("fd00::/8").is_none());
}

#[test]
fn named_ports_resolve_on_the_receiving_pod() {
    let (mut pods, namespaces) = cluster();
    pods.push(Arc::new(serde_json::from_value(json!({
        "metadata": {"namespace": "c", "name": "c2", "labels": {"app": "client"}},
        "spec": {"nodeName": "there", "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 9090}]}]},
        "status": {"phase": "Running", "podIP": "10.42.1.7"},
    })).unwrap()));
    let ingress = policy("a", "in", json!({"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{"ports": [{"port": "http"}, {"port": "dns", "protocol": "UDP"}, {"port": "nope"}]}]}));
    let (rules, _) = render("here", &pods, &namespaces, &[ingress]);
    let chain = chain_of(&rules, &format!("{MAIN}-I-"))[0];
    assert!(chain.iter().any(|r| r.starts_with("-p tcp -m tcp --dport 8080 ")), "{chain:?}");
    assert!(chain.iter().any(|r| r.starts_with("-p udp -m udp --dport 5353 ")), "{chain:?}");
    assert_eq!(chain.len(), 3, "a port no container names admits nothing: {chain:?}");

    let egress = policy("a", "out", json!({"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Egress"],
        "egress": [{"ports": [{"port": "http"}]}]}));
    let (rules, _) = render("here", &pods, &namespaces, &[egress]);
    let chain = chain_of(&rules, &format!("{MAIN}-E-"))[0];
    assert!(chain.contains(&"-d 10.42.1.7/32 -p tcp -m tcp --dport 9090 -m comment --comment \"a/out\" -j RETURN".to_string()), "{chain:?}");
    assert!(chain.contains(&"-d 10.42.1.6/32 -p tcp -m tcp --dport 8080 -m comment --comment \"a/out\" -j RETURN".to_string()), "{chain:?}");
    assert_eq!(chain.len(), pods.len() + 1, "every pod's own http port, then REJECT: {chain:?}");
}

#[test]
fn egress_rules_imply_the_egress_type_when_the_types_are_unset() {
    let (pods, namespaces) = cluster();
    let both = policy("a", "both", json!({"podSelector": {}, "egress": [{"ports": [{"port": 53, "protocol": "UDP"}]}]}));
    let (rules, _) = render("here", &pods, &namespaces, &[both]);
    assert_eq!(rules.policed(), (1, 1));
    let only_ingress = policy("a", "in", json!({"podSelector": {}, "egress": []}));
    let (rules, _) = render("here", &pods, &namespaces, &[only_ingress]);
    assert_eq!(rules.policed(), (1, 0));
}

#[test]
fn host_network_and_finished_pods_are_neither_policed_nor_peers() {
    let (mut pods, namespaces) = cluster();
    pods.push(Arc::new(serde_json::from_value(json!({
        "metadata": {"namespace": "a", "name": "host", "labels": {"app": "web"}},
        "spec": {"nodeName": "here", "hostNetwork": true, "containers": []},
        "status": {"phase": "Running", "podIP": "192.0.2.1"},
    })).unwrap()));
    pods.push(Arc::new(serde_json::from_value(json!({
        "metadata": {"namespace": "a", "name": "done", "labels": {"app": "web"}},
        "spec": {"nodeName": "there", "containers": []},
        "status": {"phase": "Succeeded", "podIP": "10.42.1.9"},
    })).unwrap()));
    let same_ns = policy("a", "same", json!({"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{"from": [{"podSelector": {}}]}]}));
    let (rules, _) = render("here", &pods, &namespaces, &[same_ns]);
    assert_eq!(rules.policed(), (1, 0), "a1 only");
    let text = format!("{:?}", rules.chains);
    assert!(!text.contains("192.0.2.1") && !text.contains("10.42.1.9"), "{text}");
}

#[test]
fn a_policy_with_a_broken_selector_is_reported() {
    let (pods, namespaces) = cluster();
    let broken = policy("a", "broken", json!({"podSelector": {"matchExpressions": [{"key": "app", "operator": "Sometimes"}]}}));
    let (rules, broken) = render("here", &pods, &namespaces, &[broken]);
    assert_eq!(broken, ["a/broken"]);
    assert_eq!(rules.policed(), (0, 0));
}

#[test]
fn the_restore_input_replaces_our_chains_and_deletes_stale_ones() {
    let (pods, namespaces) = cluster();
    let deny = policy("a", "deny", json!({"podSelector": {}}));
    let (rules, _) = render("here", &pods, &namespaces, &[deny]);
    let pod_chain = rules.chains.keys().find(|c| c.as_str() != MAIN).unwrap().clone();
    assert!(pod_chain.len() <= 28, "iptables' limit: {pod_chain}");
    let existing: BTreeSet<String> = [MAIN.to_string(), format!("{MAIN}-I-0123456789ab")].into();
    let text = rules.restore_input(&existing);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "*filter");
    assert!(lines.contains(&format!(":{pod_chain} - [0:0]").as_str()));
    assert!(lines.contains(&format!(":{MAIN}-I-0123456789ab - [0:0]").as_str()), "flushed before it goes");
    assert_eq!(lines[lines.len() - 2], format!("-X {MAIN}-I-0123456789ab"));
    assert_eq!(lines[lines.len() - 1], "COMMIT");
    assert!(lines.iter().any(|l| l.starts_with(&format!("-A {pod_chain} ")) && l.ends_with("-j REJECT")));
}
