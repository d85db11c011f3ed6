//! Version information.

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub fn print() {
    println!("k8s {VERSION}");
    println!("datastore: etcd v3 API {} over SQLite {}", crate::datastore::ETCD_API_VERSION, rusqlite::version());
}
