//! Controllers inside the binary, run by every server as in-process
//! services: `manifests` (the auto-deployed manifests directory, which also
//! carries the built-in addons) and `servicelb` (LoadBalancer Services on
//! the nodes' addresses).

pub mod manifests;
pub mod servicelb;
