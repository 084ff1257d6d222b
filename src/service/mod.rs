//! The gRPC engine (placeholder while it is written).

/// Generated types and service traits of `proto/segkit/v1/engine.proto`.
pub mod pb {
    tonic::include_proto!("segkit.v1");

    /// The encoded file descriptor set, for gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/segkit_v1_descriptor.bin"));
}
