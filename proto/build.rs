//! Generates the tonic/prost code for `tandem.v1` with a vendored `protoc`,
//! so a machine without protoc builds, plus the file descriptor set that the
//! binaries serve through gRPC reflection.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY-free: build scripts are single-threaded when this runs.
    unsafe_set_protoc(&protoc);
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("tandem_descriptor.bin"))
        .compile_protos(&["proto/tandem/v1/tandem.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}

#[allow(unsafe_code)]
fn unsafe_set_protoc(path: &std::path::Path) {
    // `set_var` is unsafe since edition 2024 because other threads may read
    // the environment; a build script has no other threads here.
    unsafe { std::env::set_var("PROTOC", path) };
}
