//! The PKI against the real `openssl` binary: chains verify, SANs and
//! subjects are what Kubernetes expects, and re-runs change only what must change.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use base64::prelude::{Engine as _, BASE64_STANDARD};
use tempfile::TempDir;
use time::Duration;

use super::*;

fn params(dir: &Path) -> PkiParams {
    PkiParams {
        dir: dir.join("pki"),
        node_name: "node-1".into(),
        apiserver_sans: vec![
            "kubernetes".into(),
            "kubernetes.default.svc".into(),
            "10.43.0.1".into(),
            "127.0.0.1".into(),
        ],
        kubelet_sans: vec!["node-1".into(), "192.168.50.10".into()],
        etcd_sans: None,
    }
}

/// Every file of a directory: name → (bytes, mode).
fn snapshot(dir: &Path) -> BTreeMap<String, (Vec<u8>, u32)> {
    fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
            (path.file_name().unwrap().to_string_lossy().into_owned(), (fs::read(&path).unwrap(), mode))
        })
        .collect()
}

/// Names whose bytes differ between two snapshots.
fn changed(before: &BTreeMap<String, (Vec<u8>, u32)>, after: &BTreeMap<String, (Vec<u8>, u32)>) -> Vec<String> {
    let mut names: Vec<String> =
        after.keys().filter(|k| before.get(*k).map(|b| &b.0) != Some(&after[*k].0)).cloned().collect();
    names.extend(before.keys().filter(|k| !after.contains_key(*k)).cloned());
    names
}

/// Runs openssl; returns (success, stdout + stderr).
fn openssl(args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl").args(args).output().expect("the openssl binary is installed");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn verify(ca: &Path, cert: &Path, purpose: &str) {
    let (ok, out) = openssl(&["verify", "-purpose", purpose, "-CAfile", s(ca), s(cert)]);
    assert!(ok && out.contains(": OK"), "openssl verify {}: {out}", cert.display());
}

fn subject(cert: &Path) -> String {
    let (ok, out) = openssl(&["x509", "-noout", "-subject", "-nameopt", "RFC2253", "-in", s(cert)]);
    assert!(ok, "{out}");
    out.trim().trim_start_matches("subject=").to_string()
}

#[test]
fn ensure_twice_changes_nothing() {
    let tmp = TempDir::new().unwrap();
    let p = params(tmp.path());
    let pki = ensure(&p).unwrap();
    let kubeconfig = ensure_kubeconfig(&pki, Identity::Admin, "node-1", "https://127.0.0.1:6443", tmp.path()).unwrap();
    let (before, kc_before) = (snapshot(&pki.dir), fs::read(&kubeconfig).unwrap());
    assert_eq!(before.len(), 18, "{:?}", before.keys());

    ensure(&p).unwrap();
    ensure_kubeconfig(&pki, Identity::Admin, "node-1", "https://127.0.0.1:6443", tmp.path()).unwrap();
    assert_eq!(snapshot(&pki.dir), before);
    assert_eq!(fs::read(&kubeconfig).unwrap(), kc_before);
    // Re-ordered and duplicated SANs are the same set: nothing to re-issue.
    let mut reordered = p.clone();
    reordered.apiserver_sans.reverse();
    reordered.apiserver_sans.push("kubernetes".into());
    ensure(&reordered).unwrap();
    assert_eq!(snapshot(&pki.dir), before);
}

#[test]
fn modes_are_set_and_corrected() {
    let tmp = TempDir::new().unwrap();
    let pki = ensure(&params(tmp.path())).unwrap();
    assert_eq!(fs::metadata(&pki.dir).unwrap().permissions().mode() & 0o777, 0o700);
    for (name, (_, mode)) in snapshot(&pki.dir) {
        let want = if name.ends_with(".key") { 0o600 } else { 0o644 };
        assert_eq!(mode, want, "{name}");
    }
    fs::set_permissions(pki.apiserver_key(), fs::Permissions::from_mode(0o644)).unwrap();
    fs::set_permissions(pki.ca_key(), fs::Permissions::from_mode(0o640)).unwrap();
    ensure(&params(tmp.path())).unwrap();
    assert_eq!(fs::metadata(pki.apiserver_key()).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(fs::metadata(pki.ca_key()).unwrap().permissions().mode() & 0o777, 0o600);
    // No temporary files left behind.
    assert!(snapshot(&pki.dir).keys().all(|n| !n.starts_with('.')));
}

/// A joining node gets a kubelet serving cert from the kubelet CA, for its
/// own name and address only, and cannot name anything else.
#[test]
fn joining_nodes_get_kubelet_certs_from_the_kubelet_ca_only() {
    let tmp = TempDir::new().unwrap();
    let pki = ensure(&params(tmp.path())).unwrap();
    let issued = crate::pki::issue_kubelet_serving(&pki, "worker-1", "10.0.0.21".parse().unwrap()).unwrap();
    let leaf = tmp.path().join("worker.crt");
    fs::write(&leaf, &issued.cert_pem).unwrap();
    verify(&pki.kubelet_ca_cert(), &leaf, "sslserver");
    let (ok, _) = openssl(&["verify", "-CAfile", s(&pki.ca_cert()), s(&leaf)]);
    assert!(!ok, "a node's serving cert must not chain to the cluster CA");
    let (_, sans) = openssl(&["x509", "-noout", "-ext", "subjectAltName", "-in", s(&leaf)]);
    assert!(sans.contains("DNS:worker-1") && sans.contains("IP Address:10.0.0.21") && !sans.contains("localhost"), "{sans}");
    // A wildcard or an address as the name is refused; any other name is
    // signed by the kubelet CA, which only the API server trusts (for kubelets).
    for bad in ["*.cluster.local", "10.43.0.1", "Kubernetes"] {
        assert!(crate::pki::issue_kubelet_serving(&pki, bad, "10.0.0.21".parse().unwrap()).is_err(), "{bad}");
    }
}

/// The API server checks metrics-server against the cluster CA (the
/// APIService's caBundle) for the Service's name: that name and nothing else,
/// for serving only.
#[test]
fn metrics_server_serves_its_service_name_under_the_cluster_ca() {
    let tmp = TempDir::new().unwrap();
    let pki = ensure(&params(tmp.path())).unwrap();
    let cert = pki.metrics_server_cert();
    let (ok, out) = openssl(&[
        "verify", "-purpose", "sslserver", "-verify_hostname", "metrics-server.kube-system.svc", "-CAfile", s(&pki.ca_cert()), s(&cert),
    ]);
    assert!(ok && out.contains(": OK"), "{out}");
    let (ok, _) = openssl(&["verify", "-purpose", "sslclient", "-CAfile", s(&pki.ca_cert()), s(&cert)]);
    assert!(!ok, "a serving cert must not authenticate a client to the API server (same CA)");
    let (ok, _) = openssl(&["verify", "-verify_hostname", "kubernetes.default.svc", "-CAfile", s(&pki.ca_cert()), s(&cert)]);
    assert!(!ok, "metrics-server's cert must name nothing but its Service");
    let (_, sans) = openssl(&["x509", "-noout", "-ext", "subjectAltName", "-in", s(&cert)]);
    assert_eq!(sans.lines().map(str::trim).collect::<Vec<_>>(), ["X509v3 Subject Alternative Name:", "DNS:metrics-server.kube-system.svc"]);
    assert_eq!(subject(&cert), "CN=metrics-server");
    let (_, from_cert) = openssl(&["x509", "-noout", "-pubkey", "-in", s(&cert)]);
    let (_, from_key) = openssl(&["pkey", "-pubout", "-in", s(&pki.metrics_server_key())]);
    assert_eq!(from_cert, from_key);
}

#[test]
fn openssl_accepts_the_chains_and_sans() {
    let tmp = TempDir::new().unwrap();
    let pki = ensure(&params(tmp.path())).unwrap();
    verify(&pki.ca_cert(), &pki.apiserver_cert(), "sslserver");
    verify(&pki.kubelet_ca_cert(), &pki.kubelet_cert(), "sslserver");
    verify(&pki.ca_cert(), &pki.apiserver_kubelet_client_cert(), "sslclient");
    verify(&pki.front_proxy_ca_cert(), &pki.front_proxy_client_cert(), "sslclient");
    // The front-proxy client and the kubelet serving cert must not chain to
    // the cluster CA (separate trust).
    for leaf in [pki.front_proxy_client_cert(), pki.kubelet_cert()] {
        let (ok, _) = openssl(&["verify", "-CAfile", s(&pki.ca_cert()), s(&leaf)]);
        assert!(!ok, "{} chains to the cluster CA", leaf.display());
    }

    let (ok, sans) = openssl(&["x509", "-noout", "-ext", "subjectAltName", "-in", s(&pki.apiserver_cert())]);
    assert!(ok, "{sans}");
    for want in ["DNS:kubernetes", "DNS:kubernetes.default.svc", "IP Address:10.43.0.1", "IP Address:127.0.0.1"] {
        assert!(sans.contains(want), "{want} missing in {sans}");
    }
    assert_eq!(subject(&pki.apiserver_cert()), "CN=kube-apiserver");
    assert_eq!(subject(&pki.kubelet_cert()), "CN=node-1");
    assert_eq!(subject(&pki.apiserver_kubelet_client_cert()), "O=system:masters,CN=kube-apiserver-kubelet-client");
    assert!(subject(&pki.ca_cert()).starts_with("CN=k8s-ca@"));

    // Each key belongs to its cert.
    for (cert, key) in [(pki.apiserver_cert(), pki.apiserver_key()), (pki.kubelet_cert(), pki.kubelet_key())] {
        let (_, from_cert) = openssl(&["x509", "-noout", "-pubkey", "-in", s(&cert)]);
        let (_, from_key) = openssl(&["pkey", "-pubout", "-in", s(&key)]);
        assert_eq!(from_cert, from_key);
    }
    // CA 10 years, leaves 1 year.
    let (_, dates) = openssl(&["x509", "-noout", "-enddate", "-in", s(&pki.ca_cert())]);
    let year = (time::OffsetDateTime::now_utc() + Duration::days(3650)).year().to_string();
    assert!(dates.contains(&year), "{dates}");
    let (ok, _) =
        openssl(&["x509", "-noout", "-checkend", &(364 * 86400).to_string(), "-in", s(&pki.apiserver_cert())]);
    assert!(ok, "apiserver cert lives a year");
    let (ok, _) =
        openssl(&["x509", "-noout", "-checkend", &(366 * 86400).to_string(), "-in", s(&pki.apiserver_cert())]);
    assert!(!ok, "apiserver cert lives only a year");
}

#[test]
fn service_account_public_key_matches() {
    let tmp = TempDir::new().unwrap();
    let pki = ensure(&params(tmp.path())).unwrap();
    let (ok, public) = openssl(&["pkey", "-pubout", "-in", s(&pki.sa_key())]);
    assert!(ok, "{public}");
    assert_eq!(public, fs::read_to_string(pki.sa_pub()).unwrap());
    // A lost sa.pub is derived again from the same key.
    fs::remove_file(pki.sa_pub()).unwrap();
    ensure(&params(tmp.path())).unwrap();
    assert_eq!(public, fs::read_to_string(pki.sa_pub()).unwrap());
}

#[test]
fn new_san_reissues_only_that_cert() {
    let tmp = TempDir::new().unwrap();
    let mut p = params(tmp.path());
    let pki = ensure(&p).unwrap();
    let before = snapshot(&pki.dir);
    p.apiserver_sans.push("10.0.0.5".into());
    p.apiserver_sans.push("api.example.org".into());
    ensure(&p).unwrap();
    // The key is kept, so a running apiserver never sees a cert/key mismatch.
    assert_eq!(changed(&before, &snapshot(&pki.dir)), ["apiserver.crt"]);
    let (_, sans) = openssl(&["x509", "-noout", "-ext", "subjectAltName", "-in", s(&pki.apiserver_cert())]);
    assert!(sans.contains("IP Address:10.0.0.5") && sans.contains("DNS:api.example.org"), "{sans}");
    verify(&pki.ca_cert(), &pki.apiserver_cert(), "sslserver");

    let before = snapshot(&pki.dir);
    p.kubelet_sans = vec!["node-1.lan".into()];
    ensure(&p).unwrap();
    assert_eq!(changed(&before, &snapshot(&pki.dir)), ["kubelet.crt"]);
}

#[test]
fn expiring_leaves_are_reissued_ca_kept() {
    let tmp = TempDir::new().unwrap();
    let p = params(tmp.path());
    let short = Lifetimes { leaf: Duration::days(30), ..Lifetimes::DEFAULT };
    let pki = ensure_with(&p, &short).unwrap();
    let kubeconfig =
        kubeconfig::ensure(&pki, Identity::Scheduler, "", "https://127.0.0.1:6443", tmp.path(), &short).unwrap();
    let (before, kc_before) = (snapshot(&pki.dir), fs::read_to_string(&kubeconfig).unwrap());

    ensure(&p).unwrap(); // 30 days left < 120: renew
    let mut renewed = changed(&before, &snapshot(&pki.dir));
    renewed.sort();
    assert_eq!(renewed, ["apiserver-kubelet-client.crt", "apiserver.crt", "front-proxy-client.crt", "kubelet.crt", "metrics-server.crt"]);
    let (ok, _) = openssl(&["x509", "-noout", "-checkend", &(300 * 86400).to_string(), "-in", s(&pki.kubelet_cert())]);
    assert!(ok, "renewed for a year");
    verify(&pki.kubelet_ca_cert(), &pki.kubelet_cert(), "sslserver");

    ensure_kubeconfig(&pki, Identity::Scheduler, "", "https://127.0.0.1:6443", tmp.path()).unwrap();
    assert_ne!(client_cert(&fs::read_to_string(&kubeconfig).unwrap()), client_cert(&kc_before));

    // And now nothing is due.
    let before = snapshot(&pki.dir);
    ensure(&p).unwrap();
    assert_eq!(snapshot(&pki.dir), before);
}

/// Leaves and the client certs of kubeconfigs share one window: 120 days
/// left is renewed (k3s's), 130 is not.
#[test]
fn leaves_and_kubeconfigs_renew_inside_120_days() {
    let url = "https://127.0.0.1:6443";
    for (days, renewed) in [(100, true), (130, false)] {
        let tmp = TempDir::new().unwrap();
        let lt = Lifetimes { leaf: Duration::days(days), ..Lifetimes::DEFAULT };
        let pki = ensure_with(&params(tmp.path()), &lt).unwrap();
        let path = kubeconfig::ensure(&pki, Identity::Kubelet, "node-1", url, tmp.path(), &lt).unwrap();
        let (certs, kc) = (snapshot(&pki.dir), client_cert(&fs::read_to_string(&path).unwrap()));

        ensure_with(&params(tmp.path()), &Lifetimes::DEFAULT).unwrap();
        kubeconfig::ensure(&pki, Identity::Kubelet, "node-1", url, tmp.path(), &Lifetimes::DEFAULT).unwrap();
        assert_eq!(changed(&certs, &snapshot(&pki.dir)).contains(&"apiserver.crt".to_string()), renewed, "{days} days");
        assert_eq!(client_cert(&fs::read_to_string(&path).unwrap()) != kc, renewed, "{days} days");
    }
}

#[test]
fn leaf_days_override() {
    let lt = Lifetimes::with_leaf_days("10").unwrap();
    assert_eq!((lt.leaf, lt.renew_before, lt.ca), (Duration::days(10), Duration::days(5), Lifetimes::DEFAULT.ca));
    assert_eq!(Lifetimes::with_leaf_days(" 365 ").unwrap().renew_before, Duration::hours(365 * 12));
    for bad in ["", "0", "-3", "366", "1.5", "10d", "ten"] {
        let err = Lifetimes::with_leaf_days(bad).unwrap_err().to_string();
        assert!(err.contains("K8S_CERT_LEAF_DAYS") && err.contains("1 to 365"), "{bad}: {err}");
    }
    // Issued for that long (not 1 year).
    let tmp = TempDir::new().unwrap();
    let pki = ensure_with(&params(tmp.path()), &lt).unwrap();
    let (ok, _) = openssl(&["x509", "-noout", "-checkend", &(9 * 86400).to_string(), "-in", s(&pki.apiserver_cert())]);
    let (short, _) = openssl(&["x509", "-noout", "-checkend", &(11 * 86400).to_string(), "-in", s(&pki.apiserver_cert())]);
    assert!(ok && !short, "a 10-day leaf");
}

#[test]
fn summaries_of_certs_and_kubeconfigs() {
    let tmp = TempDir::new().unwrap();
    let pki = ensure(&params(tmp.path())).unwrap();
    let read = |path: PathBuf| fs::read_to_string(path).unwrap();
    let ca = summarize(&read(pki.ca_cert())).unwrap();
    assert!(ca.ca && ca.subject_cn.starts_with("k8s-ca@") && ca.issuer_cn == ca.subject_cn, "{ca:?}");
    let leaf = summarize(&read(pki.apiserver_cert())).unwrap();
    assert_eq!((leaf.subject_cn.as_str(), leaf.issuer_cn.as_str(), leaf.ca), ("kube-apiserver", ca.subject_cn.as_str(), false));
    let left = leaf.not_after - time::OffsetDateTime::now_utc();
    assert!(left > Duration::days(364) && left <= Duration::days(365), "{left}");
    assert_eq!(summarize("garbage"), None);

    let path = ensure_kubeconfig(&pki, Identity::Admin, "", "https://127.0.0.1:6443", tmp.path()).unwrap();
    let text = read(path);
    assert_eq!(embedded_client_cert(&text), Some(client_cert(&text)));
    assert_eq!(summarize(&client_cert(&text)).unwrap().subject_cn, "system:admin");
    assert_eq!(embedded_client_cert("users: []"), None);
}

/// The client cert PEM embedded in a kubeconfig.
fn client_cert(kubeconfig: &str) -> String {
    let doc: serde_yaml::Value = serde_yaml::from_str(kubeconfig).unwrap();
    let data = doc["users"][0]["user"]["client-certificate-data"].as_str().unwrap();
    String::from_utf8(BASE64_STANDARD.decode(data).unwrap()).unwrap()
}

#[test]
fn kubeconfigs_embed_the_right_identity() {
    let tmp = TempDir::new().unwrap();
    let pki = ensure(&params(tmp.path())).unwrap();
    let out = tmp.path().join("etc");
    let cases = [
        (Identity::Admin, "O=system:masters,CN=system:admin"),
        (Identity::ControllerManager, "CN=system:kube-controller-manager"),
        (Identity::Scheduler, "CN=system:kube-scheduler"),
        (Identity::KubeProxy, "CN=system:kube-proxy"),
        (Identity::Kubelet, "O=system:nodes,CN=system:node:node-1"),
        (Identity::Supervisor, "O=system:masters,CN=system:k8s-supervisor"),
    ];
    for (identity, want) in cases {
        let path = ensure_kubeconfig(&pki, identity, "node-1", "https://10.0.0.1:6443", &out).unwrap();
        assert_eq!(path, out.join(format!("{}.kubeconfig", identity.name())));
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let text = fs::read_to_string(&path).unwrap();
        let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(doc["current-context"].as_str(), Some("default"));
        assert_eq!(doc["contexts"][0]["context"]["cluster"].as_str(), Some("default"));
        assert_eq!(doc["contexts"][0]["context"]["user"].as_str(), Some(identity.name()));
        assert_eq!(doc["clusters"][0]["name"].as_str(), Some("default"));
        assert_eq!(doc["clusters"][0]["cluster"]["server"].as_str(), Some("https://10.0.0.1:6443"));
        let ca = doc["clusters"][0]["cluster"]["certificate-authority-data"].as_str().unwrap();
        assert_eq!(BASE64_STANDARD.decode(ca).unwrap(), fs::read(pki.ca_cert()).unwrap());

        let cert = tmp.path().join("client.crt");
        fs::write(&cert, client_cert(&text)).unwrap();
        assert_eq!(subject(&cert), want, "{identity:?}");
        verify(&pki.ca_cert(), &cert, "sslclient");
        let key_data = doc["users"][0]["user"]["client-key-data"].as_str().unwrap();
        let key = tmp.path().join("client.key");
        fs::write(&key, BASE64_STANDARD.decode(key_data).unwrap()).unwrap();
        assert_eq!(
            openssl(&["x509", "-noout", "-pubkey", "-in", s(&cert)]).1,
            openssl(&["pkey", "-pubout", "-in", s(&key)]).1
        );
    }
}

#[test]
fn kubeconfig_follows_server_url_and_node_name() {
    let tmp = TempDir::new().unwrap();
    let pki = ensure(&params(tmp.path())).unwrap();
    let path = ensure_kubeconfig(&pki, Identity::Kubelet, "node-1", "https://127.0.0.1:6443", tmp.path()).unwrap();
    let first = fs::read_to_string(&path).unwrap();

    // A new URL rewrites the file but keeps the (still valid) client cert.
    ensure_kubeconfig(&pki, Identity::Kubelet, "node-1", "https://10.0.0.9:6443", tmp.path()).unwrap();
    let second = fs::read_to_string(&path).unwrap();
    assert!(second.contains("server: https://10.0.0.9:6443"), "{second}");
    assert_eq!(client_cert(&first), client_cert(&second));

    // A new node name is a new identity: new cert.
    ensure_kubeconfig(&pki, Identity::Kubelet, "node-2", "https://10.0.0.9:6443", tmp.path()).unwrap();
    let cert = tmp.path().join("kubelet-client.crt");
    fs::write(&cert, client_cert(&fs::read_to_string(&path).unwrap())).unwrap();
    assert_eq!(subject(&cert), "O=system:nodes,CN=system:node:node-2");
}

/// The authority key id we compare is the CA's subject key id as openssl sees it.
#[test]
fn authority_key_id_names_the_ca() {
    let tmp = TempDir::new().unwrap();
    let pki = ensure(&params(tmp.path())).unwrap();
    let der = |path: PathBuf| cert::cert_der(&fs::read_to_string(path).unwrap()).unwrap();
    let (leaf_der, ca_der) = (der(pki.apiserver_cert()), der(pki.ca_cert()));
    let leaf = cert::parse_der(&leaf_der).unwrap();
    let hex_id: Vec<String> = cert::authority_key_id(&leaf).unwrap().iter().map(|b| format!("{b:02X}")).collect();
    let (ok, ski) = openssl(&["x509", "-noout", "-ext", "subjectKeyIdentifier", "-in", s(&pki.ca_cert())]);
    assert!(ok && ski.contains(&hex_id.join(":")), "{ski} vs {hex_id:?}");
    let ca = cert::parse_der(&ca_der);
    assert_eq!(ca.unwrap().subject().as_raw(), leaf.issuer().as_raw());
}

/// A server joining an HA cluster receives the first server's CA: every leaf
/// (and kubeconfig) it issued under its own CA must be re-issued.
#[test]
fn replaced_ca_reissues_every_leaf() {
    let (a, b) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let pki = ensure(&params(a.path())).unwrap();
    let kubeconfig = ensure_kubeconfig(&pki, Identity::Admin, "", "https://127.0.0.1:6443", a.path()).unwrap();
    let first = ensure(&params(b.path())).unwrap();
    for (from, to) in [(first.ca_cert(), pki.ca_cert()), (first.ca_key(), pki.ca_key())] {
        fs::copy(from, to).unwrap();
    }
    ensure(&params(a.path())).unwrap();
    verify(&first.ca_cert(), &pki.apiserver_cert(), "sslserver");
    verify(&pki.kubelet_ca_cert(), &pki.kubelet_cert(), "sslserver");
    verify(&first.ca_cert(), &pki.apiserver_kubelet_client_cert(), "sslclient");

    ensure_kubeconfig(&pki, Identity::Admin, "", "https://127.0.0.1:6443", a.path()).unwrap();
    let cert = a.path().join("admin.crt");
    fs::write(&cert, client_cert(&fs::read_to_string(&kubeconfig).unwrap())).unwrap();
    verify(&first.ca_cert(), &cert, "sslclient");
}

#[test]
fn ca_is_never_regenerated() {
    let tmp = TempDir::new().unwrap();
    let p = params(tmp.path());
    let pki = ensure(&p).unwrap();
    let ca_key = fs::read(pki.ca_key()).unwrap();

    // Without its key the CA cannot sign: an error that names the file and the fix.
    fs::rename(pki.ca_key(), tmp.path().join("ca.key.bak")).unwrap();
    let err = ensure(&p).unwrap_err().to_string();
    assert!(err.contains(s(&pki.ca_key())) && err.contains("restore"), "{err}");
    assert!(!pki.ca_key().exists());

    // A key without its cert (creation interrupted): the cert is rebuilt on the same key.
    fs::rename(tmp.path().join("ca.key.bak"), pki.ca_key()).unwrap();
    fs::remove_file(pki.ca_cert()).unwrap();
    ensure(&p).unwrap();
    assert_eq!(fs::read(pki.ca_key()).unwrap(), ca_key);
    verify(&pki.ca_cert(), &pki.apiserver_cert(), "sslserver");

    // A key that belongs to another cert is refused, not replaced.
    fs::copy(pki.front_proxy_ca_key(), pki.ca_key()).unwrap();
    let err = ensure(&p).unwrap_err().to_string();
    assert!(err.contains("does not belong to"), "{err}");
    assert_eq!(fs::read(pki.ca_key()).unwrap(), fs::read(pki.front_proxy_ca_key()).unwrap());

    fs::write(pki.ca_cert(), "garbage").unwrap();
    let err = ensure(&p).unwrap_err().to_string();
    assert!(err.contains(s(&pki.ca_cert())) && err.contains("not a PEM certificate"), "{err}");
}

#[test]
fn broken_leaf_files_are_replaced() {
    let tmp = TempDir::new().unwrap();
    let p = params(tmp.path());
    let pki = ensure(&p).unwrap();
    fs::write(pki.kubelet_key(), "not a key").unwrap();
    fs::write(pki.apiserver_cert(), "not a cert").unwrap();
    fs::remove_file(pki.front_proxy_client_cert()).unwrap();
    ensure(&p).unwrap();
    verify(&pki.ca_cert(), &pki.apiserver_cert(), "sslserver");
    verify(&pki.kubelet_ca_cert(), &pki.kubelet_cert(), "sslserver");
    verify(&pki.front_proxy_ca_cert(), &pki.front_proxy_client_cert(), "sslclient");
    let (_, from_cert) = openssl(&["x509", "-noout", "-pubkey", "-in", s(&pki.kubelet_cert())]);
    let (_, from_key) = openssl(&["pkey", "-pubout", "-in", s(&pki.kubelet_key())]);
    assert_eq!(from_cert, from_key);
}

#[test]
fn bad_params_are_refused_before_writing() {
    let tmp = TempDir::new().unwrap();
    let mut p = params(tmp.path());
    p.apiserver_sans = vec![];
    assert!(ensure(&p).unwrap_err().to_string().contains("apiserver_sans: is empty"));
    p.apiserver_sans = vec!["my host".into()];
    assert!(ensure(&p).unwrap_err().to_string().contains("\"my host\""));
    p.apiserver_sans = vec!["héllo".into()];
    assert!(ensure(&p).unwrap_err().to_string().contains("only ASCII"));
    p = params(tmp.path());
    p.node_name = " ".into();
    assert!(ensure(&p).unwrap_err().to_string().contains("node_name"));
    assert!(!p.dir.exists());

    let pki = ensure(&params(tmp.path())).unwrap();
    let err = ensure_kubeconfig(&pki, Identity::Admin, "", "http://127.0.0.1:6443", tmp.path()).unwrap_err();
    assert!(err.to_string().contains("https://"), "{err}");
    let err = ensure_kubeconfig(&pki, Identity::Kubelet, "", "https://127.0.0.1:6443", tmp.path()).unwrap_err();
    assert!(err.to_string().contains("node_name"), "{err}");
    let missing = Pki { dir: tmp.path().join("nowhere") };
    let err = ensure_kubeconfig(&missing, Identity::Admin, "", "https://127.0.0.1:6443", tmp.path()).unwrap_err();
    assert!(err.to_string().contains("ca.crt is missing"), "{err}");
}

#[test]
fn ha_adds_an_etcd_ca_whose_certs_serve_and_dial() {
    let tmp = tempfile::tempdir().unwrap();
    let params = PkiParams { etcd_sans: Some(vec!["node-1".into(), "10.0.0.5".into(), "127.0.0.1".into()]), ..params(tmp.path()) };
    let pki = ensure(&params).unwrap();
    let ca = std::fs::read_to_string(pki.ca_cert()).unwrap();
    let etcd_ca = std::fs::read_to_string(pki.etcd_ca_cert()).unwrap();
    assert_ne!(ca, etcd_ca, "etcd needs its own CA so node certs cannot reach it");
    let peer = std::fs::read_to_string(pki.etcd_peer_cert()).unwrap();
    let der = cert::cert_der(&peer).unwrap();
    let parsed = cert::parse_der(&der).unwrap();
    let eku = parsed.extended_key_usage().unwrap().unwrap().value.clone();
    assert!(eku.server_auth && eku.client_auth);
    let before = std::fs::read(pki.etcd_server_cert()).unwrap();
    ensure(&params).unwrap();
    assert_eq!(before, std::fs::read(pki.etcd_server_cert()).unwrap(), "unchanged inputs keep the cert");
}
