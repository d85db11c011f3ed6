//! `k8s check-config`: runs the host check's script here and prints its
//! findings (see [`crate::host::check`]); exit 1 when one fails.

use anyhow::Context;

use crate::cli::{CheckConfigArgs, CheckRole, OutputFormat};
use crate::host::check::{self, Level, Observations, Want};
use crate::host::config::PodNetwork;

pub fn run(a: &CheckConfigArgs) -> anyhow::Result<()> {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(check::SCRIPT)
        .output()
        .context("running the check script with sh")?;
    let want = Want { server: a.role == CheckRole::Server, etcd: a.etcd, vxlan: a.pod_network == PodNetwork::Vxlan, static_binary: Want::STATIC };
    let findings = check::judge(&Observations::parse(&String::from_utf8_lossy(&out.stdout)), want);
    match a.output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&findings)?),
        OutputFormat::Text => {
            let width = findings.iter().map(|f| f.check.len()).max().unwrap_or(0);
            for f in &findings {
                println!("{:<4}  {:<width$}  {}", f.level.as_str(), f.check, f.detail);
            }
        }
    }
    let failed = findings.iter().filter(|f| f.level == Level::Fail).count();
    if failed > 0 {
        anyhow::bail!("{failed} check(s) failed: this host cannot run k8s until they are fixed");
    }
    Ok(())
}
