//! Compiles `proto/helloworld.proto` into Rust with protox (a protobuf
//! compiler written in Rust), so building needs neither a system `protoc`
//! nor the network.

use std::process::ExitCode;

fn main() -> ExitCode {
    const PROTO: &str = "proto/helloworld.proto";
    println!("cargo:rerun-if-changed={PROTO}");
    let descriptors = match protox::compile([PROTO], ["proto"]) {
        Ok(descriptors) => descriptors,
        Err(error) => {
            eprintln!("cannot compile {PROTO}: {error}");
            return ExitCode::FAILURE;
        }
    };
    // No `connect` helpers: the binaries build their channels themselves.
    if let Err(error) = tonic_prost_build::configure()
        .build_transport(false)
        .compile_fds(descriptors)
    {
        eprintln!("cannot generate the gRPC code for {PROTO}: {error}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
