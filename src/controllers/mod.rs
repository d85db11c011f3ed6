//! Controllers inside the binary, run by every server as in-process
//! services: `manifests` (the auto-deployed manifests directory, which also
//! carries the built-in addons), `servicelb` (LoadBalancer Services on
//! the nodes' addresses) and `local_path` (the local-path StorageClass's
//! provisioner).

pub mod local_path;
pub mod manifests;
pub mod servicelb;
