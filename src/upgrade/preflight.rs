//! The checks a plan must pass before any node is touched: a valid spec,
//! healthy nodes, and the version skew rules. The rules run in the controller that is already running (the
//! old binary), never in the target binary, so a bad target cannot relax
//! them.

use std::cmp::Ordering;
use std::fmt;

use super::crd::{Role, UpgradePlanSpec};

/// `major.minor.patch`, with or without a leading `v`; a pre-release
/// (`-rc.1`) orders before its release.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    pub pre: Option<String>,
}

impl Version {
    pub fn parse(text: &str) -> Result<Version, String> {
        let bad = || format!("{text:?} is not a version like 1.2.3");
        let core = text.trim().trim_start_matches('v');
        // Build metadata (`+...`) does not order versions.
        let core = core.split_once('+').map_or(core, |(c, _)| c);
        let (core, pre) = match core.split_once('-') {
            Some((c, pre)) => (c, Some(pre.to_string())),
            None => (core, None),
        };
        let mut numbers = core.split('.').map(|n| n.parse::<u64>().map_err(|_| bad()));
        let (Some(major), Some(minor), Some(patch), None) = (numbers.next(), numbers.next(), numbers.next(), numbers.next()) else {
            return Err(bad());
        };
        Ok(Version { major: major?, minor: minor?, patch: patch?, pre })
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Version) -> Ordering {
        (self.major, self.minor, self.patch).cmp(&(other.major, other.minor, other.patch)).then_with(|| {
            match (&self.pre, &other.pre) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(a), Some(b)) => a.cmp(b),
            }
        })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Version) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        match &self.pre {
            Some(pre) => write!(f, "-{pre}"),
            None => Ok(()),
        }
    }
}

/// What the controller reads of a node (its Node object).
#[derive(Clone, Debug, PartialEq)]
pub struct NodeFacts {
    pub name: String,
    pub role: Role,
    pub ready: bool,
    /// Cordoned by someone else than a plan.
    pub cordoned_by_others: bool,
    /// The `k8s` version the node publishes; None: a binary from before
    /// versions were published.
    pub k8s_version: Option<String>,
    /// The kubelet's version (Node status).
    pub kubelet_version: String,
    /// `amd64`, `arm64` (Node status).
    pub arch: String,
    /// The node's `k8s` runs under systemd (its guard needs it).
    pub systemd: bool,
}

/// What the controller checking a plan runs.
#[derive(Clone, Copy, Debug)]
pub struct Running<'a> {
    /// Its own `k8s` version.
    pub k8s: &'a str,
    /// The etcd its binary carries, when known.
    pub etcd: Option<&'a str>,
}

#[cfg(test)]
impl NodeFacts {
    /// A Ready, uncordoned amd64 node under systemd, on k8s `k8s` and kubelet v1.37.1.
    pub fn healthy(name: &str, role: Role, k8s: &str) -> NodeFacts {
        NodeFacts {
            name: name.into(),
            role,
            ready: true,
            cordoned_by_others: false,
            k8s_version: Some(k8s.into()),
            kubelet_version: "v1.37.1".into(),
            arch: "amd64".into(),
            systemd: true,
        }
    }
}

/// Every reason the plan may not start, empty when it may.
pub fn preflight(spec: &UpgradePlanSpec, nodes: &[NodeFacts], running: Running) -> Vec<String> {
    let mut problems = Vec::new();
    let target = match Version::parse(&spec.version) {
        Ok(v) => v,
        Err(e) => return vec![format!("spec.version: {e}")],
    };
    let target_kube = match Version::parse(&spec.kubernetes_version) {
        Ok(v) => v,
        Err(e) => return vec![format!("spec.kubernetesVersion: {e}")],
    };
    if nodes.is_empty() {
        problems.push("no node matches the plan's nodeSelector".to_string());
    }
    if !spec.source.starts_with("https://") {
        problems.push(format!("spec.source {:?} is not the https:// URL of a server's join endpoint", spec.source));
    }
    let agents = nodes.iter().filter(|n| n.role == Role::Agent).count();
    if let Err(e) = super::rollout::max_unavailable(&spec.agents.max_unavailable, agents) {
        problems.push(format!("spec.agents.maxUnavailable: {e}"));
    }
    if let Ok(running) = Version::parse(running.k8s) {
        if target < running {
            problems.push(format!("a downgrade: the controller runs k8s {running}, the plan asks for {target}"));
        }
    }
    if let Some(now) = running.etcd.filter(|_| !spec.etcd_version.is_empty()) {
        problems.extend(etcd_skew(now, &spec.etcd_version));
    }
    for n in nodes {
        problems.extend(node_problems(spec, n, &target, &target_kube));
    }
    problems
}

/// The carried etcd moves forward by at most one minor (etcd supports
/// upgrades one minor at a time, and no downgrade of its data).
fn etcd_skew(now: &str, target: &str) -> Option<String> {
    let (Ok(n), Ok(t)) = (Version::parse(now), Version::parse(target)) else {
        return Some(format!("spec.etcdVersion {target:?} or the running etcd {now:?} is not a version"));
    };
    if t < n {
        Some(format!("an etcd downgrade: the cluster's binaries carry etcd {n}, the plan's {t}"))
    } else if t.major != n.major || t.minor > n.minor + 1 {
        Some(format!("etcd would move from {n} to {t}: at most one minor at a time"))
    } else {
        None
    }
}

fn node_problems(spec: &UpgradePlanSpec, n: &NodeFacts, target: &Version, target_kube: &Version) -> Vec<String> {
    let mut problems = Vec::new();
    if !spec.sha256.contains_key(&n.arch) {
        problems.push(format!("node {} is {}, and the plan has no sha256 for it", n.name, n.arch));
    }
    if !n.systemd {
        problems.push(format!("node {} does not run k8s under systemd, which its rollback guard needs; install it with `k8s up`", n.name));
    }
    if !n.ready {
        problems.push(format!("node {} is not Ready; fix it or leave it out with nodeSelector", n.name));
    }
    if n.cordoned_by_others {
        problems.push(format!("node {} is cordoned by someone else; uncordon it (kubectl uncordon {}) or leave it out", n.name, n.name));
    }
    match n.k8s_version.as_deref().map(Version::parse) {
        None => problems.push(format!("node {} publishes no k8s version (its binary predates upgrades); upgrade it with `k8s up`", n.name)),
        Some(Err(e)) => problems.push(format!("node {}: published k8s version {e}", n.name)),
        Some(Ok(v)) if *target < v => problems.push(format!("a downgrade: node {} runs k8s {v}, the plan asks for {target}", n.name)),
        Some(Ok(_)) => {}
    }
    match Version::parse(&n.kubelet_version) {
        Err(e) => problems.push(format!("node {}: kubelet version {e}", n.name)),
        Ok(k) if target_kube.major != k.major || target_kube.minor < k.minor => problems.push(format!(
            "a Kubernetes downgrade: node {} runs {}, the plan carries {target_kube}", n.name, n.kubelet_version)),
        Ok(k) if target_kube.minor > k.minor + 1 => problems.push(format!(
            "a skipped Kubernetes minor: node {} runs {}, the plan carries {target_kube}; upgrade one minor at a time",
            n.name, n.kubelet_version)),
        Ok(_) => {}
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn versions_parse_and_order() {
        assert_eq!(v("v1.37.2"), Version { major: 1, minor: 37, patch: 2, pre: None });
        assert!(v("0.2.0") > v("0.1.9"));
        assert!(v("0.2.0-rc.1") < v("0.2.0"));
        assert!(v("0.2.0+build.5") == v("0.2.0"));
        assert_eq!(v("1.2.3-rc.1+meta").pre.as_deref(), Some("rc.1"));
        for bad in ["", "1.2", "1.2.3.4", "a.b.c", "1..3"] {
            assert!(Version::parse(bad).is_err(), "{bad}");
        }
    }

    fn run(k8s: &str) -> Running<'_> {
        Running { k8s, etcd: None }
    }

    #[test]
    fn etcd_moves_one_minor_at_a_time_and_never_back() {
        let mut s = spec("0.3.0", "v1.37.1");
        let nodes = [node("s1", "0.2.0", "v1.37.1")];
        let with = |etcd| Running { k8s: "0.2.0", etcd: Some(etcd) };
        s.etcd_version = "v3.6.16".into();
        assert!(preflight(&s, &nodes, with("v3.6.10")).is_empty());
        s.etcd_version = "v3.7.0".into();
        assert!(preflight(&s, &nodes, with("v3.6.16")).is_empty(), "one minor");
        s.etcd_version = "v3.8.0".into();
        assert!(preflight(&s, &nodes, with("v3.6.16"))[0].contains("at most one minor"));
        s.etcd_version = "v3.5.9".into();
        assert!(preflight(&s, &nodes, with("v3.6.16"))[0].contains("etcd downgrade"));
        assert!(preflight(&s, &nodes, run("0.2.0")).is_empty(), "unknown running etcd: not checked");
    }

    fn node(name: &str, k8s: &str, kubelet: &str) -> NodeFacts {
        NodeFacts { kubelet_version: kubelet.into(), ..NodeFacts::healthy(name, Role::Server, k8s) }
    }

    fn spec(version: &str, kube: &str) -> UpgradePlanSpec {
        UpgradePlanSpec {
            version: version.into(),
            kubernetes_version: kube.into(),
            sha256: [("amd64".to_string(), "ab".to_string())].into(),
            source: "https://10.0.0.1:9345".into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_forward_plan_on_healthy_nodes_passes() {
        let nodes = [node("s1", "0.1.0", "v1.37.1"), node("a1", "0.1.0", "v1.37.1")];
        assert!(preflight(&spec("0.2.0", "v1.38.0"), &nodes, run("0.1.0")).is_empty());
        assert!(preflight(&spec("0.1.0", "v1.37.1"), &nodes, run("0.1.0")).is_empty(), "same version: nothing to refuse");
    }

    #[test]
    fn downgrades_skipped_minors_and_unhealthy_nodes_are_refused() {
        let nodes = [node("s1", "0.2.0", "v1.37.1")];
        let p = preflight(&spec("0.1.0", "v1.37.1"), &nodes, run("0.2.0"));
        assert!(p.iter().any(|m| m.contains("downgrade") && m.contains("controller")), "{p:?}");
        assert!(p.iter().any(|m| m.contains("node s1 runs k8s 0.2.0")), "{p:?}");
        let p = preflight(&spec("0.3.0", "v1.39.0"), &nodes, run("0.2.0"));
        assert!(p.iter().any(|m| m.contains("skipped Kubernetes minor")), "{p:?}");
        let p = preflight(&spec("0.3.0", "v1.36.0"), &nodes, run("0.2.0"));
        assert!(p.iter().any(|m| m.contains("Kubernetes downgrade")), "{p:?}");
        let sick = NodeFacts { ready: false, cordoned_by_others: true, k8s_version: None, systemd: false, arch: "arm64".into(), ..node("a1", "", "v1.37.1") };
        let p = preflight(&spec("0.3.0", "v1.37.1"), &[sick], run("0.2.0"));
        assert_eq!(p.len(), 5, "{p:?}");

        assert!(preflight(&spec("0.3.0", "v1.37.1"), &[], run("0.2.0"))[0].contains("no node matches"));
        let mut bad = spec("0.3.0", "v1.37.1");
        bad.agents.max_unavailable = "lots".into();
        assert!(preflight(&bad, &nodes, run("0.2.0"))[0].contains("maxUnavailable"));
    }
}
