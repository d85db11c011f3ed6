//! The bottom floor: the on-host file contract (which file lives where),
//! the config file's schema, and facts about the host (name, addresses,
//! CIDRs, cgroups). Every module above uses it; it uses none of them.

pub mod check;
pub mod config;
pub mod facts;
pub mod layout;
pub mod net;
pub mod paths;

pub use layout::Layout;
