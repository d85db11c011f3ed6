//! The text the binary renders (compiled in from `templates/`): `{{name}}`
//! placeholders filled from a list of values.

pub const CONTAINERD: &str = include_str!("../templates/containerd.toml");
pub const KUBELET: &str = include_str!("../templates/kubelet-config.yaml");
pub const KUBE_PROXY: &str = include_str!("../templates/kube-proxy-config.yaml");
pub const CNI: &str = include_str!("../templates/cni.conflist");
pub const COREDNS: &str = include_str!("../templates/addons/coredns.yaml");
pub const NODE_CERTIFICATES: &str = include_str!("../templates/addons/node-certificates.yaml");
pub const LOCAL_STORAGE: &str = include_str!("../templates/addons/local-storage.yaml");
pub const NETWORK_POLICY: &str = include_str!("../templates/addons/network-policy.yaml");
pub const METRICS_SERVER: &str = include_str!("../templates/addons/metrics-server.yaml");
pub const AUDIT_POLICY: &str = include_str!("../templates/server/audit-policy.yaml");
pub const ADMISSION: &str = include_str!("../templates/server/admission.yaml");
pub const ADMISSION_CIS: &str = include_str!("../templates/server/admission-cis.yaml");

/// Fills every `{{name}}`; a placeholder without a value is a bug in the
/// caller, reported rather than rendered as empty text.
pub fn render(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (name, value) in values {
        out = out.replace(&format!("{{{{{name}}}}}"), value);
    }
    if let Some(start) = out.find("{{") {
        let end = out[start..].find("}}").map_or(out.len(), |e| start + e + 2);
        panic!("template placeholder {} has no value", &out[start..end]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_placeholders() {
        assert_eq!(render("a={{a}} b={{b}}", &[("a", "1"), ("b", "2")]), "a=1 b=2");
    }

    #[test]
    #[should_panic(expected = "{{missing}}")]
    fn missing_value_is_a_bug() {
        render("x={{missing}}", &[]);
    }
}
