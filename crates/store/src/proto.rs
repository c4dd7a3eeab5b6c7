//! The etcd v3 wire types, generated from `proto/etcd`. They are also the types of the in-process
//! [`crate::Store`] API, so the embedded engine, the gRPC facade and the real-etcd backend share one
//! vocabulary and nothing is translated twice.
#![allow(clippy::all, missing_docs)]

pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}
pub mod authpb {
    tonic::include_proto!("authpb");
}
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}
