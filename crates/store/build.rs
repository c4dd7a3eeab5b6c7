//! Generates the etcd v3 API (KV, Watch, Lease, Maintenance, ...) from the vendored protos with
//! protox, so that a fresh machine needs no `protoc`.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = "../../proto/etcd";
    let files = ["rpc.proto", "kv.proto", "auth.proto"].map(|f| format!("{dir}/{f}"));
    let fds = protox::compile(&files, [dir])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    Ok(())
}
