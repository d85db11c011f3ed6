//! Built-in addons whose manifests carry this server's files: rendered at
//! every start, so a renewed certificate reaches the cluster with it.

use std::path::Path;

use anyhow::Context;
use base64::prelude::{Engine as _, BASE64_STANDARD};

use crate::pki::Pki;
use crate::templates;

/// metrics-server (templates/addons/metrics-server.yaml): the carried
/// `image`, the kubelet CA it checks kubelets with, its serving cert and key
/// (a Secret: the manifest file is 0600), and the cluster CA, with which the
/// API server checks it.
pub fn metrics_server(image: &str, pki: &Pki) -> anyhow::Result<String> {
    Ok(templates::render(templates::METRICS_SERVER, &[
        ("metrics_server_image", image),
        ("kubelet_ca", &indent(&read(&pki.kubelet_ca_cert())?, "    ")),
        ("tls_crt", &BASE64_STANDARD.encode(read(&pki.metrics_server_cert())?)),
        ("tls_key", &BASE64_STANDARD.encode(read(&pki.metrics_server_key())?)),
        ("ca_bundle", &BASE64_STANDARD.encode(read(&pki.ca_cert())?)),
    ]))
}

/// A PKI file (the error names the file, never its content).
fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {} for the metrics-server addon", path.display()))
}

/// `text` as the body of a YAML block scalar: every line indented.
fn indent(text: &str, by: &str) -> String {
    text.lines().map(|line| format!("{by}{line}")).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::{ConfigMap, Secret};
    use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
    use kube::api::DynamicObject;
    use tempfile::TempDir;

    use super::*;
    use crate::kubeclient::parse_manifest;
    use crate::pki::PkiParams;

    const IMAGE: &str = "registry.k8s.io/metrics-server/metrics-server:v0.8.0";

    fn rendered() -> (TempDir, Pki, Vec<DynamicObject>) {
        let tmp = TempDir::new().unwrap();
        let pki = crate::pki::ensure(&PkiParams {
            dir: tmp.path().join("pki"),
            node_name: "node-1".into(),
            apiserver_sans: vec!["10.43.0.1".into()],
            kubelet_sans: vec!["node-1".into(), "192.168.50.10".into()],
            etcd_sans: None,
        })
        .unwrap();
        let objects = parse_manifest(&metrics_server(IMAGE, &pki).unwrap()).unwrap();
        (tmp, pki, objects)
    }

    fn typed<T: serde::de::DeserializeOwned>(objects: &[DynamicObject], kind: &str) -> T {
        let object = objects.iter().find(|o| o.types.as_ref().unwrap().kind == kind).unwrap();
        serde_json::from_value(serde_json::to_value(object).unwrap()).unwrap()
    }

    #[test]
    fn upstreams_objects_with_the_apiservice_last() {
        let (_tmp, _, objects) = rendered();
        let kinds: Vec<_> = objects.iter().map(|o| o.types.as_ref().unwrap().kind.as_str()).collect();
        assert_eq!(kinds, [
            "ServiceAccount", "ClusterRole", "ClusterRole", "RoleBinding", "ClusterRoleBinding", "ClusterRoleBinding",
            "ConfigMap", "Secret", "Service", "Deployment", "APIService",
        ]);
    }

    #[test]
    fn carries_the_pki_files_byte_for_byte() {
        let (_tmp, pki, objects) = rendered();
        let file = |p: std::path::PathBuf| std::fs::read(p).unwrap();
        let ca: ConfigMap = typed(&objects, "ConfigMap");
        assert_eq!(ca.data.unwrap()["ca.crt"].as_bytes(), file(pki.kubelet_ca_cert()));
        let secret: Secret = typed(&objects, "Secret");
        let data = secret.data.unwrap();
        assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
        assert_eq!(data["tls.crt"].0, file(pki.metrics_server_cert()));
        assert_eq!(data["tls.key"].0, file(pki.metrics_server_key()));
        let api: APIService = typed(&objects, "APIService");
        let spec = api.spec.unwrap();
        assert_eq!(spec.ca_bundle.unwrap().0, file(pki.ca_cert()));
        assert_eq!(spec.insecure_skip_tls_verify, None, "the API server must verify metrics-server");
    }

    /// Each file flag names a file of a mounted volume: the ConfigMap's and
    /// the Secret's keys under their mount paths.
    #[test]
    fn the_deployment_verifies_kubelets_with_the_mounted_files() {
        let (_tmp, _, objects) = rendered();
        let pod = typed::<Deployment>(&objects, "Deployment").spec.template.spec.unwrap();
        let c = &pod.containers[0];
        assert_eq!(c.image.as_deref(), Some(IMAGE));
        let args = c.args.clone().unwrap();
        assert!(!args.iter().any(|a| a.contains("insecure")), "{args:?}");
        assert!(args.contains(&"--kubelet-preferred-address-types=InternalIP,Hostname".to_string()));
        let mount = |volume: &str| c.volume_mounts.as_ref().unwrap().iter().find(|m| m.name == volume).unwrap().mount_path.clone();
        for (flag, volume, key) in [
            ("--kubelet-certificate-authority", "kubelet-ca", "ca.crt"),
            ("--tls-cert-file", "tls", "tls.crt"),
            ("--tls-private-key-file", "tls", "tls.key"),
        ] {
            assert!(args.contains(&format!("{flag}={}/{key}", mount(volume))), "{flag} in {args:?}");
        }
        let volumes = pod.volumes.unwrap();
        let source = |name: &str| volumes.iter().find(|v| v.name == name).unwrap().clone();
        assert_eq!(source("kubelet-ca").config_map.unwrap().name, "metrics-server-kubelet-ca");
        assert_eq!(source("tls").secret.unwrap().secret_name.as_deref(), Some("metrics-server-tls"));
    }

    /// What PodSecurity "restricted" asks of a container (but for the host
    /// network: kube-system is exempt).
    #[test]
    fn the_container_is_restricted() {
        let (_tmp, _, objects) = rendered();
        let pod = typed::<Deployment>(&objects, "Deployment").spec.template.spec.unwrap();
        let sc = pod.containers[0].security_context.clone().unwrap();
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.seccomp_profile.unwrap().type_, "RuntimeDefault");
        assert_eq!(sc.capabilities.unwrap().drop.unwrap(), ["ALL"]);
        assert!(pod.volumes.unwrap().iter().all(|v| v.host_path.is_none()));
        assert!(pod.host_pid.is_none() && pod.host_ipc.is_none());
    }

    /// A server without a node (disable-agent) dials the endpoint, a node's
    /// address (--enable-aggregator-routing): metrics-server listens in the
    /// host's network, on a port no component of ours takes, and serves
    /// what the aggregator checks its cert for whatever address it dials.
    #[test]
    fn it_serves_in_the_host_network_on_its_own_port() {
        let (_tmp, pki, objects) = rendered();
        let deployment = typed::<Deployment>(&objects, "Deployment");
        let spec = deployment.spec;
        let pod = spec.template.spec.unwrap();
        assert_eq!(pod.host_network, Some(true));
        let c = &pod.containers[0];
        let port = &c.ports.as_ref().unwrap()[0];
        assert_eq!((port.name.as_deref(), port.container_port), (Some("https"), 10251));
        // Taken on a node: the kubelet (10250, 10248), kube-proxy (10249, 10256),
        // controller-manager and scheduler (10257, 10259), API server, join
        // endpoint, API load balancer, etcd.
        for taken in [10250, 10248, 10249, 10256, 10257, 10259, 6443, 9345, 6444, 2379, 2380, 2381] {
            assert_ne!(port.container_port, taken);
        }
        assert!(c.args.as_ref().unwrap().contains(&"--secure-port=10251".to_string()));
        for probe in [c.readiness_probe.clone().unwrap(), c.liveness_probe.clone().unwrap()] {
            let get = probe.http_get.unwrap();
            assert_eq!(get.port, k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("https".into()));
        }
        // One pod per node on that port: a rollout removes the old pod first.
        let rolling = spec.strategy.unwrap().rolling_update.unwrap();
        assert_eq!(rolling.max_surge, Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(0)));
        assert_eq!(rolling.max_unavailable, Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1)));
        // The Service sends its port to the named container port.
        let svc: k8s_openapi::api::core::v1::Service = typed(&objects, "Service");
        let sp = &svc.spec.unwrap().ports.unwrap()[0];
        assert_eq!(sp.target_port, Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("https".into())));
        // kube-aggregator's transport (BuildTransportConfig) sets ServerName
        // to <service>.<namespace>.svc, with endpoint routing too.
        let api: APIService = typed(&objects, "APIService");
        let service = api.spec.unwrap().service.unwrap();
        let server_name = format!("{}.{}.svc", service.name.unwrap(), service.namespace.unwrap());
        let der = pem::parse(std::fs::read(pki.metrics_server_cert()).unwrap()).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(der.contents()).unwrap();
        let sans: Vec<String> = cert.subject_alternative_name().unwrap().unwrap().value.general_names.iter()
            .map(|n| match n {
                x509_parser::extensions::GeneralName::DNSName(d) => d.to_string(),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(sans, [server_name]);
    }
}
