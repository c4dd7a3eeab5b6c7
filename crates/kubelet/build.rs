//! Generates the CRI v1 client (runtime.v1) and the few containerd services image import needs
//! from the vendored protos with protox, so that a fresh machine needs no `protoc`.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cri = "../../proto/cri";
    let ctrd = "../../proto/containerd";
    let api = "github.com/containerd/containerd/api";
    let mut files = vec![format!("{cri}/api.proto")];
    for service in ["content", "images", "snapshots", "diff", "leases"] {
        files.push(format!(
            "{ctrd}/{api}/services/{service}/v1/{service}.proto"
        ));
    }
    let fds = protox::compile(&files, [cri, ctrd])?;
    tonic_prost_build::configure()
        .build_server(false)
        .build_client(true)
        .compile_fds(fds)?;
    println!("cargo:rerun-if-changed={cri}");
    println!("cargo:rerun-if-changed={ctrd}");
    Ok(())
}
