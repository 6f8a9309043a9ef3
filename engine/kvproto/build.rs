//! Compiles `proto/*.proto` with protox (no system `protoc`) into prost messages and tonic
//! server traits.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(["proto/pdpb.proto", "proto/tikvpb.proto"], ["proto"])?;
    tonic_prost_build::configure().build_client(false).compile_fds(fds)?;
    Ok(())
}
