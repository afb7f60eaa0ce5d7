//! Compiles `proto/` with protox (pure Rust, no protoc) into tonic/prost code,
//! and keeps the encoded descriptor set for gRPC reflection.
use prost::Message;
use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "flick/events/v1/envelope.proto",
    "flick/accounts/v1/accounts.proto",
    "flick/media/v1/media.proto",
    "flick/transcoder/v1/transcoder.proto",
    "flick/recommender/v1/recommender.proto",
    "flick/activity/v1/activity.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    println!("cargo:rerun-if-changed={}", root.display());
    let fds = protox::compile(PROTOS, [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("flick_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(fds)?;
    Ok(())
}
