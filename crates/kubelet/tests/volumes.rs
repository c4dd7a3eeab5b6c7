//! Pod volumes end to end against a real API server in process, with the kubelet's own
//! `system:node:e2e` client (so the Node authorizer must allow each read): files, modes,
//! in-place updates through `..data`, projected tokens (TokenReview accepts them; rotated),
//! the downward API, tmpfs mounts and their teardown, hostPath checks, claims and the CRI
//! mounts a container gets. No containers run here (see volumes_container.rs).

#[path = "support/apiserver.rs"]
mod apiserver;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use apiserver::{ApiServer, NODE};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, PersistentVolume, PersistentVolumeClaim, Pod, Secret, ServiceAccount,
};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kubelet::cri::api::MountPropagation;
use kubelet::volumes::{VolumeError, Volumes};
use serde_json::json;

struct Node {
    server: ApiServer,
    data: tempfile::TempDir,
    volumes: Volumes,
}

async fn node() -> Node {
    let server = ApiServer::start().await;
    let data = tempfile::Builder::new()
        .prefix("krust-volumes-")
        .tempdir_in("/tmp")
        .unwrap();
    let ctx = server.node_context(data.path(), &data.path().join("no-runtime.sock"));
    Node {
        volumes: Volumes::new(ctx),
        server,
        data,
    }
}

impl Node {
    /// Creates the pod bound to this node (so the Node authorizer relates its objects to us).
    async fn pod(&self, name: &str, spec: serde_json::Value) -> Pod {
        let mut spec = spec;
        spec["nodeName"] = json!(NODE);
        spec["serviceAccountName"] = json!("default");
        if spec.get("containers").is_none() {
            spec["containers"] = json!([{"name": "c", "image": "busybox"}]);
        }
        self.server
            .create(json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": "default",
                             "labels": {"app": "web", "tier": "front"},
                             "annotations": {"note": "say \"hi\""}},
                "spec": spec
            }))
            .await
    }

    fn volume_dir(&self, pod: &Pod, plugin: &str, name: &str) -> PathBuf {
        let uid = pod.metadata.uid.as_deref().unwrap();
        self.data
            .path()
            .join("kubelet/pods")
            .join(uid)
            .join("volumes")
            .join(plugin)
            .join(name)
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Whether `path` is the root of a tmpfs mount.
fn is_tmpfs_mount(path: &Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let p = path.to_string_lossy();
    mounts.lines().any(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        f.get(4) == Some(&p.as_ref()) && l.contains(" - tmpfs ")
    })
}

fn root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() == 0 };
    if !root {
        eprintln!("skipped: mounting tmpfs needs root");
    }
    root
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_and_secret_files_modes_and_updates_in_place() {
    if !root() {
        return;
    }
    let n = node().await;
    let cm: ConfigMap = n
        .server
        .create(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "cfg", "namespace": "default"},
            "data": {"a.conf": "one", "b.conf": "two"},
            "binaryData": {"bin": "AAEC"}}))
        .await;
    let _: Secret = n
        .server
        .create(json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "sec", "namespace": "default"},
            "data": {"password": "czNjcjN0", "user": "YWRtaW4="}}))
        .await;
    let pod = n
        .pod(
            "files",
            json!({"volumes": [
                {"name": "all", "configMap": {"name": "cfg"}},
                {"name": "some", "configMap": {"name": "cfg", "defaultMode": 0o600,
                    "items": [{"key": "a.conf", "path": "nested/a"}, {"key": "b.conf", "path": "b", "mode": 0o444}]}},
                {"name": "creds", "secret": {"secretName": "sec", "defaultMode": 0o400}}
            ]}),
        )
        .await;
    let vols = n.volumes.setup(&pod).await.expect("setup");

    let all = n.volume_dir(&pod, "kubernetes.io~configmap", "all");
    assert_eq!(read(&all.join("a.conf")), "one");
    assert_eq!(std::fs::read(all.join("bin")).unwrap(), vec![0u8, 1, 2]);
    assert_eq!(mode(&all.join("a.conf")), 0o644);
    assert_eq!(
        std::fs::read_link(all.join("a.conf")).unwrap(),
        Path::new("..data/a.conf")
    );
    let data_before = std::fs::read_link(all.join("..data")).unwrap();
    assert!(data_before.to_string_lossy().starts_with(".."));

    let some = n.volume_dir(&pod, "kubernetes.io~configmap", "some");
    assert_eq!(read(&some.join("nested/a")), "one");
    assert_eq!(mode(&some.join("nested/a")), 0o600);
    assert_eq!(mode(&some.join("b")), 0o444);
    assert!(!some.join("a.conf").exists());

    let creds = n.volume_dir(&pod, "kubernetes.io~secret", "creds");
    assert_eq!(read(&creds.join("password")), "s3cr3t");
    assert_eq!(mode(&creds.join("user")), 0o400);
    assert!(is_tmpfs_mount(&creds), "secrets live on tmpfs");
    assert_eq!(vols.host_path("creds"), Some(creds.as_path()));

    // A second sync with nothing changed rewrites nothing.
    n.volumes.setup(&pod).await.expect("setup again");
    assert_eq!(std::fs::read_link(all.join("..data")).unwrap(), data_before);

    // The configMap changes: the same path shows the new content through a new ..data, the
    // removed key is gone. An open directory handle (a container's view) sees it too.
    let dir_handle = std::fs::File::open(&all).unwrap();
    let api: Api<ConfigMap> = Api::namespaced(n.server.admin.clone(), "default");
    let mut cm = cm;
    cm.data = Some(
        [
            ("a.conf".to_string(), "uno".to_string()),
            ("b.conf".to_string(), "two".to_string()),
        ]
        .into(),
    );
    cm.binary_data = None;
    api.replace("cfg", &PostParams::default(), &cm)
        .await
        .unwrap();
    n.volumes.setup(&pod).await.expect("setup after the update");
    let data_after = std::fs::read_link(all.join("..data")).unwrap();
    assert_ne!(data_after, data_before);
    assert!(
        !all.join(&data_before).exists(),
        "the old version is removed"
    );
    assert_eq!(read(&all.join("a.conf")), "uno");
    assert!(std::fs::symlink_metadata(all.join("bin")).is_err());
    let via_handle = std::fs::read_to_string(format!(
        "/proc/self/fd/{}/a.conf",
        std::os::fd::AsRawFd::as_raw_fd(&dir_handle)
    ))
    .unwrap();
    assert_eq!(via_handle, "uno");

    n.volumes
        .teardown(pod.metadata.uid.as_deref().unwrap())
        .await
        .unwrap();
    assert!(!is_tmpfs_mount(&creds));
    assert!(!creds.exists() && !all.exists());
    n.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_objects_fail_as_upstream_and_optional_ones_are_empty() {
    let n = node().await;
    let pod = n
        .pod(
            "missing",
            json!({"volumes": [{"name": "cfg", "configMap": {"name": "nope"}}]}),
        )
        .await;
    let err = n.volumes.setup(&pod).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "MountVolume.SetUp failed for volume \"cfg\" : configmap \"nope\" not found"
    );
    assert_eq!(err.reason(), "FailedMount");

    let _: ConfigMap = n
        .server
        .create(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "few", "namespace": "default"}, "data": {"a": "1"}}))
        .await;
    let pod = n
        .pod(
            "missing-key",
            json!({"volumes": [{"name": "cfg", "configMap": {"name": "few", "items": [{"key": "zz", "path": "z"}]}}]}),
        )
        .await;
    let err = n.volumes.setup(&pod).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "MountVolume.SetUp failed for volume \"cfg\" : configmap references non-existent config key: zz"
    );

    let pod = n
        .pod(
            "optional",
            json!({"volumes": [{"name": "cfg", "configMap": {"name": "nope", "optional": true}}]}),
        )
        .await;
    n.volumes.setup(&pod).await.expect("optional and missing");
    let dir = n.volume_dir(&pod, "kubernetes.io~configmap", "cfg");
    assert!(dir.join("..data").is_dir());
    n.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projected_token_is_valid_for_the_pod_and_rotated() {
    if !root() {
        return;
    }
    let n = node().await;
    let _: ServiceAccount = n
        .server
        .create(json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "default", "namespace": "default"}}))
        .await;
    let _: ConfigMap = n
        .server
        .create(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "ca", "namespace": "default"}, "data": {"ca.crt": "CERT"}}))
        .await;
    let pod = n
        .pod(
            "tokens",
            json!({"volumes": [{"name": "api", "projected": {"defaultMode": 420, "sources": [
                {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                {"configMap": {"name": "ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}
            ]}}]}),
        )
        .await;
    n.volumes.setup(&pod).await.expect("setup");
    let dir = n.volume_dir(&pod, "kubernetes.io~projected", "api");
    assert!(is_tmpfs_mount(&dir));
    assert_eq!(read(&dir.join("ca.crt")), "CERT");
    assert_eq!(read(&dir.join("namespace")), "default");
    assert_eq!(mode(&dir.join("token")), 0o644);
    let token = read(&dir.join("token"));
    let claims = jwt_claims(&token);
    assert_eq!(claims["kubernetes.io"]["pod"]["name"], "tokens");
    assert_eq!(
        claims["kubernetes.io"]["pod"]["uid"],
        pod.metadata.uid.clone().unwrap()
    );
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3607
    );
    let user = review(&n, &token).await;
    assert_eq!(user, "system:serviceaccount:default:default");

    // Not yet 80% of its lifetime: the same token.
    n.volumes.advance_token_clock(Duration::from_secs(2000));
    n.volumes.setup(&pod).await.unwrap();
    assert_eq!(read(&dir.join("token")), token);
    // Past 80%: a new one, valid too.
    n.volumes.advance_token_clock(Duration::from_secs(1000));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    n.volumes.setup(&pod).await.unwrap();
    let rotated = read(&dir.join("token"));
    assert_ne!(rotated, token, "the token is rotated");
    assert_eq!(review(&n, &rotated).await, user);

    n.volumes
        .teardown(pod.metadata.uid.as_deref().unwrap())
        .await
        .unwrap();
    assert!(!is_tmpfs_mount(&dir));
    n.server.stop().await;
}

fn jwt_claims(token: &str) -> serde_json::Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// The user TokenReview says the token belongs to (panics if not authenticated).
async fn review(n: &Node, token: &str) -> String {
    let api: Api<TokenReview> = Api::all(n.server.admin.clone());
    let review = TokenReview {
        spec: TokenReviewSpec {
            token: Some(token.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let answer = api.create(&PostParams::default(), &review).await.unwrap();
    let status = answer.status.unwrap();
    assert_eq!(status.authenticated, Some(true), "{status:?}");
    status.user.unwrap().username.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downward_api_files() {
    let n = node().await;
    let pod = n
        .pod(
            "downward",
            json!({
                "containers": [{"name": "main", "image": "busybox",
                    "resources": {"limits": {"memory": "64Mi"}, "requests": {"cpu": "250m"}}}],
                "volumes": [{"name": "info", "downwardAPI": {"items": [
                    {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                    {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}},
                    {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
                    {"path": "uid", "fieldRef": {"fieldPath": "metadata.uid"}},
                    {"path": "app", "fieldRef": {"fieldPath": "metadata.labels['app']"}},
                    {"path": "mem_mi", "resourceFieldRef": {"containerName": "main", "resource": "limits.memory", "divisor": "1Mi"}},
                    {"path": "cpu_m", "resourceFieldRef": {"containerName": "main", "resource": "requests.cpu", "divisor": "1m"}},
                    {"path": "cpu_limit", "resourceFieldRef": {"containerName": "main", "resource": "limits.cpu"}, "mode": 0o400}
                ]}}]}),
        )
        .await;
    n.volumes.setup(&pod).await.expect("setup");
    let dir = n.volume_dir(&pod, "kubernetes.io~downward-api", "info");
    assert_eq!(read(&dir.join("labels")), "app=\"web\"\ntier=\"front\"");
    assert_eq!(read(&dir.join("annotations")), "note=\"say \\\"hi\\\"\"");
    assert_eq!(read(&dir.join("name")), "downward");
    assert_eq!(read(&dir.join("uid")), pod.metadata.uid.clone().unwrap());
    assert_eq!(read(&dir.join("app")), "web");
    assert_eq!(read(&dir.join("mem_mi")), "64");
    assert_eq!(read(&dir.join("cpu_m")), "250");
    // No limit: the node's allocatable cpu.
    assert_eq!(read(&dir.join("cpu_limit")), "4");
    assert_eq!(mode(&dir.join("cpu_limit")), 0o400);
    assert_eq!(mode(&dir.join("name")), 0o644);

    // The labels change: the file follows at the next sync.
    let api: Api<Pod> = Api::namespaced(n.server.admin.clone(), "default");
    let pod = api
        .patch(
            "downward",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"tier": null}}})),
        )
        .await
        .unwrap();
    n.volumes.setup(&pod).await.unwrap();
    assert_eq!(read(&dir.join("labels")), "app=\"web\"");
    n.volumes
        .teardown(pod.metadata.uid.as_deref().unwrap())
        .await
        .unwrap();
    assert!(!dir.exists());
    n.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_empty_dir_is_a_sized_tmpfs_unmounted_at_teardown() {
    if !root() {
        return;
    }
    let n = node().await;
    let pod = n
        .pod(
            "scratch",
            json!({"volumes": [
                {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
                {"name": "bypod", "emptyDir": {"medium": "Memory"}},
                {"name": "disk", "emptyDir": {}}
            ],
            "containers": [{"name": "c", "image": "busybox",
                "resources": {"limits": {"memory": "64Mi"}}}]}),
        )
        .await;
    n.volumes.setup(&pod).await.expect("setup");
    n.volumes.setup(&pod).await.expect("setup is idempotent");
    let mem = n.volume_dir(&pod, "kubernetes.io~empty-dir", "mem");
    let disk = n.volume_dir(&pod, "kubernetes.io~empty-dir", "disk");
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = mountinfo
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(mem.to_str().unwrap()))
        .expect("tmpfs mounted once");
    assert_eq!(
        mountinfo
            .lines()
            .filter(|l| l.split(' ').nth(4) == Some(mem.to_str().unwrap()))
            .count(),
        1,
        "mounted once, not once per sync"
    );
    assert!(
        line.contains(" - tmpfs ") && line.contains("size=16384k"),
        "{line}"
    );
    // No sizeLimit: the pod's memory limit, as upstream sizes memory volumes.
    let bypod = n.volume_dir(&pod, "kubernetes.io~empty-dir", "bypod");
    let line = mountinfo
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(bypod.to_str().unwrap()))
        .expect("tmpfs mounted");
    assert!(line.contains("size=65536k"), "{line}");
    assert!(disk.is_dir() && !is_tmpfs_mount(&disk));
    assert_eq!(mode(&disk), 0o777);
    std::fs::write(mem.join("f"), "x").unwrap();

    n.volumes
        .teardown(pod.metadata.uid.as_deref().unwrap())
        .await
        .unwrap();
    assert!(!is_tmpfs_mount(&mem));
    assert!(!is_tmpfs_mount(&bypod));
    assert!(!mem.exists() && !disk.exists());
    // Again: nothing left to do, no error.
    n.volumes
        .teardown(pod.metadata.uid.as_deref().unwrap())
        .await
        .unwrap();
    n.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_path_types_are_checked() {
    let n = node().await;
    let host = n.data.path().join("host");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("file"), "x").unwrap();
    let file = host.join("file");
    let pod = n
        .pod(
            "hostpath-bad",
            json!({"volumes": [{"name": "h", "hostPath": {"path": file, "type": "Directory"}}]}),
        )
        .await;
    let err = n.volumes.setup(&pod).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "MountVolume.SetUp failed for volume \"h\" : hostPath type check failed: {} is not a directory",
            file.display()
        )
    );
    let pod = n
        .pod(
            "hostpath-socket",
            json!({"volumes": [{"name": "h", "hostPath": {"path": file, "type": "Socket"}}]}),
        )
        .await;
    let err = n.volumes.setup(&pod).await.unwrap_err().to_string();
    assert!(err.ends_with("is not a socket file"), "{err}");

    let created = host.join("made/here");
    let pod = n
        .pod(
            "hostpath-ok",
            json!({"volumes": [
                {"name": "d", "hostPath": {"path": created, "type": "DirectoryOrCreate"}},
                {"name": "f", "hostPath": {"path": host.join("new-file"), "type": "FileOrCreate"}}
            ],
            "containers": [{"name": "c", "image": "busybox", "volumeMounts": [
                {"name": "d", "mountPath": "/data", "mountPropagation": "HostToContainer"},
                {"name": "f", "mountPath": "/etc/f", "readOnly": true}
            ]}]}),
        )
        .await;
    let vols = n.volumes.setup(&pod).await.expect("setup");
    assert!(created.is_dir());
    assert_eq!(mode(&created), 0o755);
    assert!(host.join("new-file").is_file());
    let mounts = vols.mounts(&container(&pod, "c")).unwrap();
    assert_eq!(mounts[0].host_path, created.to_string_lossy());
    assert_eq!(mounts[0].container_path, "/data");
    assert!(!mounts[0].readonly);
    assert_eq!(
        mounts[0].propagation,
        MountPropagation::PropagationHostToContainer as i32
    );
    assert!(mounts[1].readonly);
    n.server.stop().await;
}

fn container(pod: &Pod, name: &str) -> Container {
    pod.spec
        .as_ref()
        .unwrap()
        .containers
        .iter()
        .find(|c| c.name == name)
        .unwrap()
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mounts_with_sub_paths_and_read_only() {
    let n = node().await;
    let _: ConfigMap = n
        .server
        .create(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "cfg", "namespace": "default"}, "data": {"app.conf": "x=1"}}))
        .await;
    let pod = n
        .pod(
            "mounts",
            json!({
                "volumes": [
                    {"name": "cfg", "configMap": {"name": "cfg"}},
                    {"name": "work", "emptyDir": {}}
                ],
                "containers": [{"name": "app", "image": "busybox",
                    "env": [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                    "volumeMounts": [
                        {"name": "cfg", "mountPath": "/etc/app"},
                        {"name": "cfg", "mountPath": "/etc/app.conf", "subPath": "app.conf"},
                        {"name": "work", "mountPath": "/work", "readOnly": true},
                        {"name": "work", "mountPath": "/logs", "subPathExpr": "logs/$(POD)"}
                    ]},
                    {"name": "bad", "image": "busybox", "volumeMounts": [
                        {"name": "work", "mountPath": "/x", "subPathExpr": "$(NOPE)"}]},
                    {"name": "escape", "image": "busybox", "volumeMounts": [
                        {"name": "work", "mountPath": "/x", "subPath": "../../etc"}]},
                    {"name": "bidi", "image": "busybox", "volumeMounts": [
                        {"name": "work", "mountPath": "/x", "mountPropagation": "Bidirectional"}]}
                ]
            }),
        )
        .await;
    let vols = n.volumes.setup(&pod).await.expect("setup");
    let cfg = n.volume_dir(&pod, "kubernetes.io~configmap", "cfg");
    let work = n.volume_dir(&pod, "kubernetes.io~empty-dir", "work");
    let m = vols.mounts(&container(&pod, "app")).unwrap();
    assert_eq!(m.len(), 4);
    assert_eq!(
        (
            m[0].container_path.as_str(),
            m[0].host_path.as_str(),
            m[0].readonly
        ),
        ("/etc/app", cfg.to_str().unwrap(), true),
        "configMap volumes are always read-only"
    );
    // The key's file itself (through its symlinks), as upstream's subPath of a configMap.
    assert!(m[1].host_path.starts_with(cfg.to_str().unwrap()));
    assert_eq!(read(Path::new(&m[1].host_path)), "x=1");
    assert!(m[1].readonly);
    assert_eq!(m[2].host_path, work.to_str().unwrap());
    assert!(m[2].readonly);
    assert_eq!(m[3].host_path, work.join("logs/mounts").to_str().unwrap());
    assert!(!m[3].readonly && work.join("logs/mounts").is_dir());
    assert_eq!(
        m[3].propagation,
        MountPropagation::PropagationPrivate as i32
    );

    let err = vols.mounts(&container(&pod, "bad")).unwrap_err();
    assert!(
        matches!(&err, VolumeError::Mount(m) if m.contains("missing value for NOPE")),
        "{err}"
    );
    assert_eq!(err.reason(), "CreateContainerConfigError");
    let err = vols
        .mounts(&container(&pod, "escape"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("must not contain '..'"), "{err}");
    let err = vols
        .mounts(&container(&pod, "bidi"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("only to privileged containers"), "{err}");
    // Not in the pod (the API refuses such a pod; a static pod could have one).
    let unknown: Container = serde_json::from_value(json!({"name": "unknown",
        "volumeMounts": [{"name": "nothere", "mountPath": "/x"}]}))
    .unwrap();
    let err = vols.mounts(&unknown).unwrap_err().to_string();
    assert_eq!(
        err,
        "cannot find volume \"nothere\" to mount into container \"unknown\""
    );
    n.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_mount_their_bound_volume() {
    let n = node().await;
    let path = n.data.path().join("storage/pv1");
    let _: PersistentVolumeClaim = n
        .server
        .create(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data", "namespace": "default"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}))
        .await;
    let pod = n
        .pod(
            "claimer",
            json!({"volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}],
                   "containers": [{"name": "c", "image": "busybox",
                       "volumeMounts": [{"name": "d", "mountPath": "/data"}]}]}),
        )
        .await;
    let err = n.volumes.setup(&pod).await.unwrap_err().to_string();
    assert!(err.contains("has non-bound phase (\"Pending\")"), "{err}");

    // Bind it by hand (the binder's job, tested in the controllers crate).
    let pvs: Api<PersistentVolume> = Api::all(n.server.admin.clone());
    let pv: PersistentVolume = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv1"},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                 "hostPath": {"path": path, "type": "DirectoryOrCreate"},
                 "claimRef": {"namespace": "default", "name": "data"}}
    }))
    .unwrap();
    pvs.create(&PostParams::default(), &pv).await.unwrap();
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(n.server.admin.clone(), "default");
    pvcs.patch(
        "data",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"volumeName": "pv1"}})),
    )
    .await
    .unwrap();
    pvcs.patch_status(
        "data",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Bound"}})),
    )
    .await
    .unwrap();
    let vols = n.volumes.setup(&pod).await.expect("setup once bound");
    assert!(path.is_dir(), "DirectoryOrCreate made the PV's directory");
    let m = vols.mounts(&container(&pod, "c")).unwrap();
    assert_eq!(m[0].host_path, path.to_str().unwrap());
    assert!(!m[0].readonly);
    n.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fs_group_owns_the_volumes() {
    use std::os::unix::fs::MetadataExt;
    if !root() {
        return;
    }
    let n = node().await;
    let _: ConfigMap = n
        .server
        .create(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "cfg", "namespace": "default"}, "data": {"a": "1"}}))
        .await;
    let _: Secret = n
        .server
        .create(json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "sec", "namespace": "default"}, "data": {"k": "dg=="}}))
        .await;
    let pod = n
        .pod(
            "grouped",
            json!({"securityContext": {"fsGroup": 1234},
            "volumes": [
                {"name": "cfg", "configMap": {"name": "cfg"}},
                {"name": "sec", "secret": {"secretName": "sec", "defaultMode": 0o400}},
                {"name": "scratch", "emptyDir": {}}
            ]}),
        )
        .await;
    n.volumes.setup(&pod).await.expect("setup");
    let cfg = n.volume_dir(&pod, "kubernetes.io~configmap", "cfg");
    let sec = n.volume_dir(&pod, "kubernetes.io~secret", "sec");
    let scratch = n.volume_dir(&pod, "kubernetes.io~empty-dir", "scratch");
    let meta = |p: &Path| std::fs::metadata(p).unwrap();
    assert_eq!(meta(&cfg.join("a")).gid(), 1234);
    assert_eq!(mode(&cfg.join("a")), 0o644);
    assert_eq!(meta(&sec.join("k")).gid(), 1234);
    assert_eq!(mode(&sec.join("k")), 0o440, "group-readable, as upstream");
    assert_eq!(meta(&scratch).gid(), 1234);
    assert_eq!(
        mode(&scratch),
        0o2777,
        "setgid: new files inherit the group"
    );
    let data = std::fs::read_link(cfg.join("..data")).unwrap();
    n.volumes.setup(&pod).await.expect("setup again");
    assert_eq!(
        std::fs::read_link(cfg.join("..data")).unwrap(),
        data,
        "the group's modes count as unchanged"
    );
    n.volumes
        .teardown(pod.metadata.uid.as_deref().unwrap())
        .await
        .unwrap();
    n.server.stop().await;
}
