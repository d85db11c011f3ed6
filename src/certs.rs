//! `k8s certs check|rotate`, on a server as root (like k3s's `k3s
//! certificate check|rotate`): every certificate of this server with its
//! expiry and what the next start does about it; and a forced renewal that
//! removes leaf certificates and kubeconfigs while the server is stopped, so
//! its next start issues them anew ([`crate::pki::ensure`] re-issues what is
//! missing). CAs are never touched: see docs/certificates.md.

use std::io;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::ValueEnum;
use time::{Duration, OffsetDateTime};

use crate::cli::{CertService, CertsCommand, OutputFormat};
use crate::host::config::Local;
use crate::host::Layout;
use crate::pki::expiry::{check, Row};
use crate::pki::{Identity, Lifetimes, Pki};

pub fn run(command: CertsCommand) -> anyhow::Result<()> {
    match command {
        CertsCommand::Check { output, data_dir } => {
            let local = Local::resolve(data_dir.data_dir)?;
            let layout = Layout::new(&local.data_dir);
            let lt = Lifetimes::from_env()?;
            let rows = check(&layout, &local.admin_kubeconfig, &lt, OffsetDateTime::now_utc())?;
            match output {
                OutputFormat::Text => print!("{}", table(&layout, &lt, &rows)),
                OutputFormat::Json => println!("{}", json(&rows)),
            }
            Ok(())
        }
        CertsCommand::Rotate { services, data_dir } => {
            let layout = Layout::new(&Local::resolve(data_dir.data_dir)?.data_dir);
            let removed = rotate(&layout, &services)?;
            for path in &removed {
                println!("removed {}", path.display());
            }
            if removed.is_empty() {
                println!("nothing to remove under {}", layout.data_dir().display());
            }
            println!("the leaf certificates' keys are kept, kubeconfigs get new ones");
            println!("start the server to issue new certificates: systemctl start k8s-server");
            Ok(())
        }
    }
}

/// The rows as an aligned table, files relative to the data dir.
pub fn table(layout: &Layout, lt: &Lifetimes, rows: &[Row]) -> String {
    let head = ["FILE", "SUBJECT CN", "ISSUER CN", "NOT AFTER (UTC)", "DAYS LEFT", "STATUS"].map(String::from);
    let mut lines = vec![head.to_vec()];
    for row in rows {
        let file = row.file.strip_prefix(layout.data_dir()).unwrap_or(&row.file);
        lines.push(vec![
            file.display().to_string(),
            row.cert.subject_cn.clone(),
            row.cert.issuer_cn.clone(),
            utc(row.cert.not_after, "%Y-%m-%d %H:%M:%S"),
            row.days_left.to_string(),
            row.status.as_str().to_string(),
        ]);
    }
    let widths: Vec<usize> =
        (0..head.len()).map(|col| lines.iter().map(|line| line[col].len()).max().unwrap_or(0)).collect();
    let mut out = format!(
        "certificates of {}; leaves are renewed at server start with less than {} left\n",
        layout.data_dir().display(),
        span(lt.renew_before)
    );
    for line in lines {
        let cells: Vec<String> = line.iter().zip(&widths).map(|(cell, w)| format!("{cell:w$}")).collect();
        out += cells.join("  ").trim_end();
        out += "\n";
    }
    out
}

/// A row in JSON: the table's columns in its order, plus `ca`.
#[derive(serde::Serialize)]
struct JsonRow<'a> {
    file: String,
    subject_cn: &'a str,
    issuer_cn: &'a str,
    not_after: String,
    days_left: i64,
    ca: bool,
    status: &'static str,
}

/// The rows as a JSON array of objects (full paths, RFC 3339 times).
pub fn json(rows: &[Row]) -> String {
    let rows: Vec<JsonRow> = rows
        .iter()
        .map(|row| JsonRow {
            file: row.file.display().to_string(),
            subject_cn: &row.cert.subject_cn,
            issuer_cn: &row.cert.issuer_cn,
            not_after: utc(row.cert.not_after, "%Y-%m-%dT%H:%M:%SZ"),
            days_left: row.days_left,
            ca: row.cert.ca,
            status: row.status.as_str(),
        })
        .collect();
    // Serialized from the structs (not a `Value`) to keep the fields' order.
    serde_json::to_string_pretty(&rows).expect("strings and numbers serialize")
}

fn utc(at: OffsetDateTime, format: &str) -> String {
    chrono::DateTime::from_timestamp(at.unix_timestamp(), 0).map(|t| t.format(format).to_string()).unwrap_or_default()
}

/// "120 days", or hours when not whole days (a `K8S_CERT_LEAF_DAYS` window).
fn span(d: Duration) -> String {
    if d.whole_hours() % 24 == 0 {
        format!("{} days", d.whole_days())
    } else {
        format!("{} hours", d.whole_hours())
    }
}

/// Removes the leaf certificates and kubeconfigs of `services` (all when
/// empty) with the server stopped; returns what it removed. Leaf keys stay,
/// so a leaf keeps its key across the re-issue; a kubeconfig holds its own
/// key and gets a new one. CAs, their keys, `sa.*` and the encryption
/// config are in no service's list.
pub fn rotate(layout: &Layout, services: &[CertService]) -> anyhow::Result<Vec<PathBuf>> {
    let pki = Pki { dir: layout.pki_dir() };
    if !pki.ca_cert().exists() {
        bail!("{} does not exist: no k8s server has run with this data dir (see --data-dir)", pki.ca_cert().display());
    }
    // Held while removing: a server starting now would find half a PKI.
    let _lock = layout.lock().context("stop the server first: systemctl stop k8s-server")?;
    let chosen = if services.is_empty() { CertService::value_variants() } else { services };
    let mut removed = Vec::new();
    for path in chosen.iter().flat_map(|s| service_files(*s, &pki, &layout.kubeconfig_dir())) {
        match std::fs::remove_file(&path) {
            Ok(()) => removed.push(path),
            // Never issued here (etcd's in single-node mode) or named twice.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot remove {}", path.display())),
        }
    }
    Ok(removed)
}

/// The files `rotate` removes for `service`: leaf certs and kubeconfigs only.
fn service_files(service: CertService, pki: &Pki, kubeconfigs: &Path) -> Vec<PathBuf> {
    let kubeconfig = |id: Identity| id.kubeconfig_path(kubeconfigs);
    match service {
        CertService::Apiserver => vec![pki.apiserver_cert()],
        CertService::ApiserverKubeletClient => vec![pki.apiserver_kubelet_client_cert()],
        CertService::Kubelet => vec![pki.kubelet_cert(), kubeconfig(Identity::Kubelet)],
        CertService::FrontProxyClient => vec![pki.front_proxy_client_cert()],
        CertService::MetricsServer => vec![pki.metrics_server_cert()],
        CertService::Etcd => vec![pki.etcd_server_cert(), pki.etcd_peer_cert(), pki.apiserver_etcd_client_cert()],
        CertService::Admin => vec![kubeconfig(Identity::Admin)],
        CertService::Supervisor => vec![kubeconfig(Identity::Supervisor)],
        CertService::ControllerManager => vec![kubeconfig(Identity::ControllerManager)],
        CertService::Scheduler => vec![kubeconfig(Identity::Scheduler)],
        CertService::KubeProxy => vec![kubeconfig(Identity::KubeProxy)],
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::fs;

    use tempfile::TempDir;

    use super::*;
    use crate::pki::expiry::Status;
    use crate::pki::{self, PkiParams, LEAF_DAYS_ENV};

    const URL: &str = "https://127.0.0.1:6443";
    const IDENTITIES: [Identity; 6] = [
        Identity::Admin,
        Identity::Supervisor,
        Identity::ControllerManager,
        Identity::Scheduler,
        Identity::Kubelet,
        Identity::KubeProxy,
    ];

    fn params(layout: &Layout) -> PkiParams {
        PkiParams {
            dir: layout.pki_dir(),
            node_name: "node-1".into(),
            apiserver_sans: vec!["kubernetes".into(), "10.43.0.1".into()],
            kubelet_sans: vec!["node-1".into(), "192.168.50.10".into()],
            etcd_sans: Some(vec!["node-1".into(), "127.0.0.1".into()]),
        }
    }

    /// A server's data dir as `k8s server` leaves it: the HA PKI, the
    /// encryption config and every kubeconfig; `lt`: its leaves' lifetimes.
    fn server(tmp: &TempDir, lt: Option<&Lifetimes>) -> (Layout, Pki) {
        let layout = Layout::new(&tmp.path().join("data"));
        let pki = match lt {
            Some(lt) => pki::ensure_with(&params(&layout), lt).unwrap(),
            None => pki::ensure(&params(&layout)).unwrap(),
        };
        pki::encryption::ensure(&pki).unwrap();
        kubeconfigs(&layout, &pki);
        (layout, pki)
    }

    fn kubeconfigs(layout: &Layout, pki: &Pki) {
        for id in IDENTITIES {
            pki::ensure_kubeconfig(pki, id, "node-1", URL, &layout.kubeconfig_dir()).unwrap();
        }
    }

    fn check_now(layout: &Layout, admin: &Path) -> Vec<Row> {
        check(layout, admin, &Lifetimes::DEFAULT, OffsetDateTime::now_utc()).unwrap()
    }

    fn relative(layout: &Layout, rows: &[Row]) -> Vec<String> {
        rows.iter().map(|r| r.file.strip_prefix(layout.data_dir()).unwrap().display().to_string()).collect()
    }

    /// Every file under `dir`: path → bytes.
    fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
        let mut files = BTreeMap::new();
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files.extend(snapshot(&path));
            } else {
                files.insert(path.clone(), fs::read(&path).unwrap());
            }
        }
        files
    }

    fn not_after(path: &Path) -> OffsetDateTime {
        pki::summarize(&fs::read_to_string(path).unwrap()).unwrap().not_after
    }

    #[test]
    fn a_fresh_pki_lists_every_cert_ok() {
        let tmp = TempDir::new().unwrap();
        let (layout, _) = server(&tmp, None);
        // /etc/k8s/admin.kubeconfig: a copy of the data dir's.
        let admin = tmp.path().join("admin.kubeconfig");
        fs::copy(Identity::Admin.kubeconfig_path(&layout.kubeconfig_dir()), &admin).unwrap();
        let rows = check_now(&layout, &admin);

        let mut files = relative(&layout, &rows[..rows.len() - 1]);
        files.push(rows.last().unwrap().file.display().to_string());
        let want = [
            "pki/apiserver-etcd-client.crt", "pki/apiserver-kubelet-client.crt", "pki/apiserver.crt", "pki/ca.crt",
            "pki/etcd/ca.crt", "pki/etcd/peer.crt", "pki/etcd/server.crt", "pki/front-proxy-ca.crt",
            "pki/front-proxy-client.crt", "pki/kubelet-ca.crt", "pki/kubelet.crt", "pki/metrics-server.crt",
            "kubeconfigs/admin.kubeconfig", "kubeconfigs/controller-manager.kubeconfig",
            "kubeconfigs/kube-proxy.kubeconfig", "kubeconfigs/kubelet.kubeconfig", "kubeconfigs/scheduler.kubeconfig",
            "kubeconfigs/supervisor.kubeconfig", admin.to_str().unwrap(),
        ];
        assert_eq!(files, want);
        // Leaves live a year, or what the test override says (just issued: a day short of it).
        let leaf_days = Lifetimes::from_env().unwrap().leaf.whole_days();
        for row in &rows {
            let (days, status) = if row.cert.ca { (3649, Status::CaOk) } else { (leaf_days - 1, Status::Ok) };
            assert_eq!((row.days_left, row.status), (days, status), "{row:?}");
        }
        let by_file = |name: &str| rows.iter().find(|r| r.file.ends_with(name)).unwrap();
        let ca = &by_file("pki/ca.crt").cert;
        assert!(ca.subject_cn.starts_with("k8s-ca@") && ca.issuer_cn == ca.subject_cn);
        let kubelet = &by_file("kubeconfigs/kubelet.kubeconfig").cert;
        assert_eq!((kubelet.subject_cn.as_str(), kubelet.issuer_cn.as_str()), ("system:node:node-1", ca.subject_cn.as_str()));
        assert_eq!(by_file("pki/etcd/peer.crt").cert.issuer_cn, by_file("pki/etcd/ca.crt").cert.subject_cn);
    }

    #[test]
    fn text_is_aligned_and_json_an_array() {
        let tmp = TempDir::new().unwrap();
        let (layout, _) = server(&tmp, None);
        let rows = check_now(&layout, &tmp.path().join("absent"));
        let text = table(&layout, &Lifetimes::DEFAULT, &rows);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].contains("less than 120 days left"), "{text}");
        assert!(lines[1].starts_with("FILE ") && lines[1].ends_with("STATUS"), "{text}");
        assert_eq!(lines.len(), 2 + rows.len());
        // Every row's status starts under STATUS and its date under NOT AFTER.
        let (status_at, date_at) = (lines[1].find("STATUS").unwrap(), lines[1].find("NOT AFTER").unwrap());
        for (line, row) in lines[2..].iter().zip(&rows) {
            assert_eq!(&line[status_at..], row.status.as_str(), "{text}");
            assert_eq!(line[date_at..date_at + 19], utc(row.cert.not_after, "%Y-%m-%d %H:%M:%S"), "{text}");
        }
        assert!(lines[2].starts_with("pki/apiserver-etcd-client.crt "), "{text}");

        let text = json(&rows);
        assert!(text.find("\"file\"").unwrap() < text.find("\"status\"").unwrap(), "the table's order");
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        let items = json.as_array().unwrap();
        assert_eq!(items.len(), rows.len());
        let ca = items.iter().find(|i| i["file"].as_str().unwrap().ends_with("pki/ca.crt")).unwrap();
        assert_eq!((ca["ca"].as_bool(), ca["status"].as_str(), ca["days_left"].as_i64()), (Some(true), Some("ok (CA)"), Some(3649)));
        assert!(ca["not_after"].as_str().unwrap().ends_with('Z'));
        assert!(ca["file"].as_str().unwrap().starts_with(tmp.path().to_str().unwrap()), "full paths");
        for key in ["subject_cn", "issuer_cn"] {
            assert!(ca[key].as_str().unwrap().starts_with("k8s-ca@"), "{key}");
        }
    }

    #[test]
    fn short_leaves_renew_at_next_start() {
        let tmp = TempDir::new().unwrap();
        let (layout, _) = server(&tmp, Some(&Lifetimes { leaf: Duration::days(30), ..Lifetimes::DEFAULT }));
        for row in check_now(&layout, &tmp.path().join("absent")).iter().filter(|r| r.file.extension().unwrap() == "crt") {
            let want = if row.cert.ca { Status::CaOk } else { Status::Renews };
            assert_eq!(row.status, want, "{row:?}");
            assert!(row.cert.ca || row.days_left == 29, "{row:?}");
        }
    }

    #[test]
    fn statuses_at_their_bounds() {
        let now = OffsetDateTime::now_utc();
        let lt = Lifetimes::DEFAULT;
        let status = |ca: bool, days: i64| {
            let cert = pki::Summary { subject_cn: "x".into(), issuer_cn: "x".into(), not_after: now + Duration::days(days), ca };
            Status::of(&cert, &lt, now)
        };
        assert_eq!(status(false, 121), Status::Ok);
        assert_eq!(status(false, 119), Status::Renews);
        assert_eq!(status(false, -1), Status::Expired);
        assert_eq!(status(true, 366), Status::CaOk);
        assert_eq!(status(true, 364), Status::CaRotate);
        assert_eq!(status(true, 0), Status::CaExpired);
        assert_eq!(Status::CaRotate.as_str(), "rotate the CA: see docs/certificates.md");
        // K8S_CERT_LEAF_DAYS=10: renewed with less than 5 days left, told as hours when not whole days.
        let ten = Lifetimes::with_leaf_days("10").unwrap();
        let cert = |days| pki::Summary { subject_cn: "x".into(), issuer_cn: "x".into(), not_after: now + Duration::days(days), ca: false };
        assert_eq!((Status::of(&cert(6), &ten, now), Status::of(&cert(4), &ten, now)), (Status::Ok, Status::Renews));
        assert_eq!((span(ten.renew_before), span(Lifetimes::with_leaf_days("7").unwrap().renew_before)), ("5 days".into(), "84 hours".into()));
        assert_eq!(LEAF_DAYS_ENV, "K8S_CERT_LEAF_DAYS");
    }

    #[test]
    fn rotate_removes_leaves_and_kubeconfigs_only_and_the_next_start_reissues() {
        let tmp = TempDir::new().unwrap();
        // 200 days: outside the renewal window, so only `rotate` gets them re-issued.
        let (layout, pki) = server(&tmp, Some(&Lifetimes { leaf: Duration::days(200), ..Lifetimes::DEFAULT }));
        let before = snapshot(layout.data_dir());
        let old_end = not_after(&pki.apiserver_cert());

        let mut removed = rotate(&layout, &[]).unwrap();
        removed.sort();
        let leaves = [
            pki.apiserver_cert(), pki.apiserver_kubelet_client_cert(), pki.kubelet_cert(), pki.front_proxy_client_cert(),
            pki.metrics_server_cert(), pki.etcd_server_cert(), pki.etcd_peer_cert(), pki.apiserver_etcd_client_cert(),
        ];
        let mut want: Vec<PathBuf> = leaves.to_vec();
        want.extend(IDENTITIES.map(|id| id.kubeconfig_path(&layout.kubeconfig_dir())));
        want.sort();
        assert_eq!(removed, want);
        // Everything else is byte for byte as it was: CAs, every key, sa.*, the encryption config.
        let after = snapshot(layout.data_dir());
        let kept: BTreeMap<_, _> = before.iter().filter(|(p, _)| !want.contains(p)).map(|(p, b)| (p.clone(), b.clone())).collect();
        assert_eq!(after.into_iter().filter(|(p, _)| !p.ends_with("server.lock")).collect::<BTreeMap<_, _>>(), kept);
        for file in [pki.ca_key(), pki.etcd_ca_key(), pki.sa_key(), pki.sa_pub(), pki.encryption_config(), pki.apiserver_key()] {
            assert!(kept.contains_key(&file), "{}", file.display());
        }

        // The next start: every leaf and kubeconfig is back, for a year, on the same keys.
        pki::ensure_with(&params(&layout), &Lifetimes::DEFAULT).unwrap();
        kubeconfigs(&layout, &pki);
        assert!(want.iter().all(|p| p.exists()));
        assert!(not_after(&pki.apiserver_cert()) - old_end > Duration::days(160));
        assert_eq!(fs::read(pki.apiserver_key()).unwrap(), before[&pki.apiserver_key()]);
        assert_eq!(fs::read(pki.ca_cert()).unwrap(), before[&pki.ca_cert()]);
    }

    #[test]
    fn rotate_only_the_named_services() {
        let tmp = TempDir::new().unwrap();
        let (layout, pki) = server(&tmp, None);
        let mut removed = rotate(&layout, &[CertService::Kubelet, CertService::Apiserver, CertService::Kubelet]).unwrap();
        removed.sort();
        let kubelet_kubeconfig = Identity::Kubelet.kubeconfig_path(&layout.kubeconfig_dir());
        let mut want = vec![pki.apiserver_cert(), pki.kubelet_cert(), kubelet_kubeconfig];
        want.sort();
        assert_eq!(removed, want);
        assert!(pki.apiserver_kubelet_client_cert().exists() && Identity::Admin.kubeconfig_path(&layout.kubeconfig_dir()).exists());
        // Nothing left to remove is no error.
        assert_eq!(rotate(&layout, &[CertService::Apiserver]).unwrap(), Vec::<PathBuf>::new());
    }

    #[test]
    fn rotate_refuses_while_the_server_runs() {
        let tmp = TempDir::new().unwrap();
        let (layout, pki) = server(&tmp, None);
        let _running = layout.lock().unwrap();
        let err = format!("{:#}", rotate(&layout, &[]).unwrap_err());
        assert!(err.contains("stop the server first: systemctl stop k8s-server"), "{err}");
        assert!(pki.apiserver_cert().exists());
    }

    #[test]
    fn no_pki_is_an_error() {
        let tmp = TempDir::new().unwrap();
        let layout = Layout::new(tmp.path());
        let err = check_now_err(&layout);
        assert!(err.contains("pki does not exist") && err.contains("--data-dir"), "{err}");
        assert!(rotate(&layout, &[]).unwrap_err().to_string().contains("--data-dir"));
        assert!(!tmp.path().join("server.lock").exists(), "refused before locking");
    }

    fn check_now_err(layout: &Layout) -> String {
        check(layout, Path::new("/nonexistent"), &Lifetimes::DEFAULT, OffsetDateTime::now_utc()).unwrap_err().to_string()
    }
}
