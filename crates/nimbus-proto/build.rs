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
    // Payloads and streamed chunks as `bytes::Bytes`: they pass from HTTP bodies to gRPC
    // and back (and between a worker's queues) without a copy.
    tonic_prost_build::configure()
        .bytes(".nimbus.worker.v1.InvokeRequest.payload")
        .bytes(".nimbus.worker.v1.InvokeResponse.payload")
        .bytes(".nimbus.worker.v1.InvokeEvent.chunk")
        .compile_fds(fds)?;
    for f in files {
        println!("cargo:rerun-if-changed={}", root.join(f).display());
    }
    Ok(())
}
