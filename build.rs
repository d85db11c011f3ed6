// Compiles our description of the etcd v3 wire API (proto/) into the tonic
// services the datastore serves and the clients HA mode uses against the
// carried etcd. protoc comes from a crate so a plain `cargo build` needs
// nothing installed on the host.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    tonic_build::configure()
        .build_client(true)
        .compile_protos(&["proto/etcd.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
