//! `k8s status` and `k8s kubeconfig`: what a running server reports.

use std::path::Path;

use anyhow::Context;

use crate::kubeapi::{self, Api};
use crate::host::paths::ADMIN_KUBECONFIG;
use crate::host::Layout;
use crate::server::status;

pub async fn print(data_dir: &Path) -> anyhow::Result<()> {
    let layout = Layout::new(data_dir);
    let Some(s) = status::read(&layout) else {
        println!("k8s server: not running");
        return Ok(());
    };
    println!("k8s server: pid {}, {}", s.pid, if s.ready { "ready" } else { "starting" });
    println!("{:<26} {:<8} {}", "COMPONENT", "PID", "STATE");
    // HA servers list their etcd member among the components.
    if !crate::etcd::has_data(data_dir) {
        println!("{:<26} {:<8} {}", "datastore (SQLite)", s.pid, "in process");
    }
    for c in &s.components {
        let pid = c.pid.map_or("-".to_string(), |p| p.to_string());
        println!("{:<26} {:<8} {}", c.name, pid, c.state);
    }
    let api = Api::from_kubeconfig(Path::new(ADMIN_KUBECONFIG))?;
    match api.get("/api/v1/nodes").await {
        Ok(Some(list)) => {
            println!("\n{:<26} {:<10} {}", "NODE", "STATUS", "VERSION");
            for n in list["items"].as_array().into_iter().flatten() {
                let ready = if kubeapi::node_ready(n).is_some() { "Ready" } else { "NotReady" };
                println!("{:<26} {:<10} {}", n["metadata"]["name"].as_str().unwrap_or("?"), ready,
                    n.pointer("/status/nodeInfo/kubeletVersion").and_then(|v| v.as_str()).unwrap_or("?"));
            }
        }
        Ok(None) => {}
        Err(e) => println!("\nnodes: the API server does not answer ({e:#})"),
    }
    Ok(())
}

pub fn print_kubeconfig() -> anyhow::Result<()> {
    let text = std::fs::read_to_string(ADMIN_KUBECONFIG)
        .with_context(|| format!("cannot read {ADMIN_KUBECONFIG}; is a k8s server installed here (and are you root)?"))?;
    print!("{text}");
    Ok(())
}
