//! Compiles `proto/` with protox (a pure-Rust protobuf compiler), so building
//! Nimbus needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [
        "nimbus/meta/v1/raft.proto",
        "nimbus/meta/v1/meta.proto",
        "nimbus/worker/v1/worker.proto",
    ];
    let fds = protox::compile(files, [&root])?;
    tonic_prost_build::configure().compile_fds(fds)?;
    for f in files {
        println!("cargo:rerun-if-changed={}", root.join(f).display());
    }
    Ok(())
}
