//! Generated protobuf and gRPC code for every Flick API (see `proto/`).

/// Encoded `FileDescriptorSet` of all Flick protos, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/flick_descriptor.bin"));

pub mod events {
    pub mod v1 {
        tonic::include_proto!("flick.events.v1");
    }
}
pub mod accounts {
    pub mod v1 {
        tonic::include_proto!("flick.accounts.v1");
    }
}
pub mod media {
    pub mod v1 {
        tonic::include_proto!("flick.media.v1");
    }
}
pub mod transcoder {
    pub mod v1 {
        tonic::include_proto!("flick.transcoder.v1");
    }
}
pub mod recommender {
    pub mod v1 {
        tonic::include_proto!("flick.recommender.v1");
    }
}
pub mod activity {
    pub mod v1 {
        tonic::include_proto!("flick.activity.v1");
    }
}
