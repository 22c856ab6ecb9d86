//! With feature `grpc`, compiles `proto/inference_v2.proto` (the V2 gRPC service) with protoc
//! (scripts/bootstrap.sh installs it) into the server's message and service types.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/inference_v2.proto");
    #[cfg(feature = "grpc")]
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_protos(&["proto/inference_v2.proto"], &["proto"])?;
    Ok(())
}
