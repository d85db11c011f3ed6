//! `k8s version`: our version and that of every part we carry.

use crate::payload::{Payload, PayloadError};

/// The crate's version, or `K8S_VERSION` at build time (a release build
/// stamps it; the upgrade tests build the same code under two versions).
pub const VERSION: &str = match option_env!("K8S_VERSION") {
    Some(v) => v,
    None => env!("CARGO_PKG_VERSION"),
};

pub fn print() -> Result<(), PayloadError> {
    println!("k8s {VERSION}");
    println!("binary: linux/{}, {}", crate::payload::this_arch(), linkage());
    println!(
        "datastore: etcd v3 API {} over SQLite {}",
        crate::datastore::ETCD_API_VERSION,
        rusqlite::version()
    );
    let Some(payload) = Payload::of_current_exe()? else {
        println!("components: none attached (plain cargo build; `make dist` builds dist/k8s)");
        return Ok(());
    };
    let manifest = payload.manifest()?;
    println!("kubernetes: {}", manifest.kubernetes_version);
    println!("components for: {}", manifest.arch);
    for part in manifest.parts.iter().filter(|p| p.kind != "link") {
        // A multicall binary is shown with the names it answers to.
        let aliases: Vec<&str> = manifest
            .parts
            .iter()
            .filter(|l| l.kind == "link" && l.target.as_deref() == Some(part.name.as_str()))
            .map(|l| l.name.as_str())
            .collect();
        match &part.image {
            Some(image) => println!("  image {image}"),
            None if aliases.is_empty() => println!("  {:<26} {}", part.name, part.version),
            None => println!("  {:<26} {} ({})", part.name, part.version, aliases.join(", ")),
        }
    }
    Ok(())
}

/// Whether this binary was linked statically (`make build`: glibc's libc.a),
/// so it runs whatever libc the host has, or none.
fn linkage() -> &'static str {
    if cfg!(target_feature = "crt-static") {
        "static"
    } else {
        "dynamically linked"
    }
}
