//! Controllers inside the binary, run by every server as in-process
//! services: `manifests` (the auto-deployed manifests directory, which also
//! carries the built-in addons).

pub mod manifests;
