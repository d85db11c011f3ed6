//! Generated etcd v3 wire types and service traits (see `proto/`).

pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

pub use etcdserverpb::*;
pub use mvccpb::{event::EventType, Event, KeyValue};
