//! The errors etcd returns, with etcd's gRPC codes and exact messages:
//! clients (clientv3, kube-apiserver, etcdctl) match on these strings.

use tonic::{Code, Status};

fn status(code: Code, msg: &str) -> Status {
    Status::new(code, msg)
}

pub fn compacted() -> Status {
    status(Code::OutOfRange, "etcdserver: mvcc: required revision has been compacted")
}

pub fn future_rev() -> Status {
    status(Code::OutOfRange, "etcdserver: mvcc: required revision is a future revision")
}

pub fn empty_key() -> Status {
    status(Code::InvalidArgument, "etcdserver: key is not provided")
}

pub fn key_not_found() -> Status {
    status(Code::InvalidArgument, "etcdserver: key not found")
}

pub fn lease_provided() -> Status {
    status(Code::InvalidArgument, "etcdserver: lease is provided")
}

pub fn value_provided() -> Status {
    status(Code::InvalidArgument, "etcdserver: value is provided")
}

pub fn request_too_large() -> Status {
    status(Code::InvalidArgument, "etcdserver: request is too large")
}

pub fn too_many_ops() -> Status {
    status(Code::InvalidArgument, "etcdserver: too many operations in txn request")
}

pub fn duplicate_key() -> Status {
    status(Code::InvalidArgument, "etcdserver: duplicate key given in txn request")
}

pub fn lease_not_found() -> Status {
    status(Code::NotFound, "etcdserver: requested lease not found")
}

pub fn lease_exists() -> Status {
    status(Code::FailedPrecondition, "etcdserver: lease already exists")
}

pub fn lease_ttl_too_large() -> Status {
    status(Code::OutOfRange, "etcdserver: too large lease TTL")
}

pub fn response_too_large(bytes: usize, max: usize) -> Status {
    Status::new(
        Code::ResourceExhausted,
        format!("etcdserver: the range answer would hold {bytes} bytes, more than {max}; page it with a limit"),
    )
}

pub fn no_space() -> Status {
    status(Code::ResourceExhausted, "etcdserver: mvcc: database space exceeded")
}

pub fn not_supported(what: &str) -> Status {
    Status::new(
        Code::Unimplemented,
        format!("{what} is not supported by the single-node datastore; HA clusters run etcd"),
    )
}

/// Maps a storage failure to a gRPC status. A full disk becomes etcd's
/// "database space exceeded" so clients treat it as etcd's NOSPACE; anything
/// else is an internal error whose text names the cause.
pub fn storage(err: &rusqlite::Error) -> Status {
    use rusqlite::ErrorCode::*;
    match err.sqlite_error_code() {
        Some(DiskFull) => no_space(),
        Some(ReadOnly) => Status::unavailable(
            "etcdserver: the datastore file is read-only; make it writable and retry",
        ),
        Some(DatabaseCorrupt) | Some(NotADatabase) => Status::data_loss(format!(
            "etcdserver: the datastore file is corrupt ({err}); restore it from a snapshot"
        )),
        _ => Status::internal(format!("etcdserver: storage error: {err}")),
    }
}
