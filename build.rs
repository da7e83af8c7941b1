//! Generates the tonic clients and servers for LND's interceptor stream, HTLC events,
//! channel calls and block notifications from `proto/`.
//!
//! `protox` parses the `.proto` files in pure Rust, so no system `protoc` is needed
//! and `cargo build` works on a fresh machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/router.proto",
        "proto/lightning.proto",
        "proto/chainnotifier.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
