//! `k8s status` and `k8s kubeconfig`: what a running server reports.

use std::path::Path;

use anyhow::Context;
use k8s_openapi::api::core::v1::Node;
use kube::api::ListParams;
use kube::ResourceExt;

use crate::host::config::Local;
use crate::host::Layout;
use crate::kubeclient;
use crate::server::status;

pub async fn print(local: &Local) -> anyhow::Result<()> {
    let layout = Layout::new(&local.data_dir);
    let Some(s) = status::read(&layout) else {
        println!("k8s server: not running");
        return Ok(());
    };
    println!("k8s server: pid {}, {}", s.pid, if s.ready { "ready" } else { "starting" });
    println!("{:<26} {:<8} {}", "COMPONENT", "PID", "STATE");
    // The datastore is among them: SQLite in process (k8s's pid), or etcd.
    for c in &s.components {
        let pid = c.pid.map_or("-".to_string(), |p| p.to_string());
        println!("{:<26} {:<8} {}", c.name, pid, c.state);
    }
    let client = kubeclient::client(&local.admin_kubeconfig).await?;
    match kube::Api::<Node>::all(client).list(&ListParams::default()).await {
        Ok(list) => {
            println!("\n{:<26} {:<10} {}", "NODE", "STATUS", "VERSION");
            for n in &list.items {
                let ready = if kubeclient::node_ready(n) { "Ready" } else { "NotReady" };
                let version = n.status.as_ref().and_then(|s| s.node_info.as_ref()).map_or("?", |i| i.kubelet_version.as_str());
                println!("{:<26} {:<10} {}", n.name_any(), ready, version);
            }
        }
        Err(e) => println!("\nnodes: the API server does not answer ({e})"),
    }
    Ok(())
}

pub fn print_kubeconfig(admin_kubeconfig: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(admin_kubeconfig)
        .with_context(|| format!("cannot read {}; is a k8s server installed here (and are you root)?", admin_kubeconfig.display()))?;
    print!("{text}");
    Ok(())
}
