//! The real kubectl (1.33 and 1.27) against krust over TLS with a client-certificate kubeconfig.

mod common;

use common::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_namespaces_and_version() {
    let s = TestServer::start().await;
    let ns = s.ok(&["get", "ns"]).await;
    for n in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(ns.contains(n), "{ns}");
    }
    let v = s.ok(&["version", "-o", "json"]).await;
    assert!(v.contains("v1.33.0"), "{v}");
    s.stop().await;
}
