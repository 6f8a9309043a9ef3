//! Compiles `proto/*.proto` with protox (no system `protoc`) into prost messages and tonic
//! server traits (and, with the `client` feature, clients).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(["proto/pdpb.proto", "proto/tikvpb.proto"], ["proto"])?;
    let client = std::env::var_os("CARGO_FEATURE_CLIENT").is_some();
    tonic_prost_build::configure().build_client(client).compile_fds(fds)?;
    Ok(())
}
