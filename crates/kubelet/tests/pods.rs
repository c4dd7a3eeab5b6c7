//! The pod lifecycle end to end: pods bound to the node through the real API server run on the
//! real containerd (`kubelet::pods`), with their status written back. Each test runs in a network
//! namespace of its own; needs root (skipped, saying so, without).

mod pods_support;
mod support;

use std::time::{Duration, Instant};

use pods_support::{condition, container_id, container_status, Cluster, BUSYBOX, NODE};
use serde_json::json;

fn host_pod(name: &str, containers: serde_json::Value) -> serde_json::Value {
    json!({
        "metadata": {"name": name, "labels": {"app": name}, "annotations": {"note": "n1"}},
        "spec": {
            "hostNetwork": true,
            "terminationGracePeriodSeconds": 3,
            "containers": containers,
        }
    })
}

/// Memory limit, cpu quota and period, from cgroup v2 or v1.
const CGROUP_LIMITS: &str =
    "cd /sys/fs/cgroup; if [ -f memory.max ]; then cat memory.max cpu.max; \
    else cat memory/memory.limit_in_bytes cpu/cpu.cfs_quota_us cpu/cpu.cfs_period_us; fi";

fn phase(pod: &serde_json::Value) -> &str {
    pod["status"]["phase"].as_str().unwrap_or("")
}

/// A busybox pod with an init container reaches Running with upstream's status fields, and its
/// environment holds values from a configMap, a secret, the downward API and its resources.
#[test]
fn a_pod_runs_with_its_status_and_environment() {
    if !support::can_run_containers() {
        return;
    }
    support::netns::run(async {
        let cluster = Cluster::start().await;
        let cms: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
            kube::Api::namespaced(cluster.admin.clone(), "default");
        cms.create(
            &Default::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "cfg"},
                "data": {"color": "blue", "size": "L"}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
        let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
            kube::Api::namespaced(cluster.admin.clone(), "default");
        secrets
            .create(
                &Default::default(),
                &serde_json::from_value(json!({
                    "metadata": {"name": "sec"},
                    "stringData": {"password": "s3cret"}
                }))
                .unwrap(),
            )
            .await
            .unwrap();
        let mut pod = host_pod(
            "web",
            json!([{
                "name": "main",
                "image": BUSYBOX,
                "command": ["sh", "-c", "echo started $(COLOR); exec sleep 3600"],
                "workingDir": "/tmp",
                "resources": {"limits": {"memory": "64Mi", "cpu": "250m"}},
                "env": [
                    {"name": "COLOR", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "color"}}},
                    {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "password"}}},
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                    {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                    {"name": "GREETING", "value": "hello $(COLOR) $$(COLOR) $(MISSING)"},
                    {"name": "OPTIONAL", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k", "optional": true}}}
                ],
                "envFrom": [{"prefix": "CFG_", "configMapRef": {"name": "cfg"}}]
            }]),
        );
        pod["spec"]["initContainers"] = json!([{
            "name": "init",
            "image": BUSYBOX,
            "command": ["sh", "-c", "echo init done; sleep 1"]
        }]);
        cluster.create_pod(pod).await;
        let pod = cluster
            .wait_pod("web", 60, "Running and Ready", |p| {
                phase(p) == "Running" && condition(p, "Ready")["status"] == "True"
            })
            .await;
        let status = &pod["status"];
        assert_eq!(status["hostIP"], "127.0.0.1", "{status:#}");
        assert_eq!(status["podIP"], "127.0.0.1", "{status:#}");
        assert_eq!(status["podIPs"], json!([{"ip": "127.0.0.1"}]));
        assert_eq!(status["hostIPs"], json!([{"ip": "127.0.0.1"}]));
        assert_eq!(status["qosClass"], "Burstable");
        assert!(status["startTime"].is_string());
        for kind in [
            "PodReadyToStartContainers",
            "Initialized",
            "ContainersReady",
            "Ready",
        ] {
            assert_eq!(
                condition(&pod, kind)["status"],
                "True",
                "{kind}: {status:#}"
            );
        }
        let main = container_status(&pod, "main");
        assert_eq!(main["ready"], true);
        assert_eq!(main["started"], true);
        assert_eq!(main["restartCount"], 0);
        assert_eq!(main["image"], BUSYBOX);
        assert!(
            main["imageID"].as_str().unwrap().contains("sha256:"),
            "{main}"
        );
        assert!(main["containerID"]
            .as_str()
            .unwrap()
            .starts_with("containerd://"));
        assert!(main["state"]["running"]["startedAt"].is_string(), "{main}");
        let init = container_status(&pod, "init");
        assert_eq!(init["state"]["terminated"]["exitCode"], 0, "{init}");
        assert_eq!(init["state"]["terminated"]["reason"], "Completed", "{init}");
        // The init container finished before the main one started.
        let init_done = init["state"]["terminated"]["finishedAt"].as_str().unwrap();
        let main_started = main["state"]["running"]["startedAt"].as_str().unwrap();
        assert!(init_done <= main_started, "{init_done} > {main_started}");

        let id = container_id(&pod, "main");
        let env = cluster
            .cri
            .exec_sync(&id, &["sh", "-c", "env; echo cwd=$(pwd)"], 10)
            .await
            .unwrap();
        let env = String::from_utf8_lossy(&env.stdout).to_string();
        for want in [
            "COLOR=blue",
            "PASSWORD=s3cret",
            "POD_NAME=web",
            &format!("NODE_NAME={NODE}"),
            "POD_IP=127.0.0.1",
            "APP=web",
            "MEM=64",
            "GREETING=hello blue $(COLOR) $(MISSING)",
            "CFG_color=blue",
            "CFG_size=L",
            "cwd=/tmp",
        ] {
            assert!(env.lines().any(|l| l == want), "{want} not in:\n{env}");
        }
        assert!(!env.contains("OPTIONAL="), "{env}");
        // The limits are the container's cgroup's.
        let limits = cluster
            .cri
            .exec_sync(&id, &["sh", "-c", CGROUP_LIMITS], 10)
            .await
            .unwrap();
        let seen = String::from_utf8_lossy(&limits.stdout);
        assert_eq!(
            seen.split_whitespace().collect::<Vec<_>>(),
            ["67108864", "25000", "100000"],
            "{}",
            String::from_utf8_lossy(&limits.stderr)
        );
        // The container's log, where the layout says, with the expanded command's output.
        let log = cluster.pod_log_dir(&pod).join("main/0.log");
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(text.contains("started blue"), "{}: {text}", log.display());
        cluster.stop().await;
    });
}

/// The security context reaches the container: user and group, a read-only root filesystem,
/// capabilities dropped and added.
#[test]
fn the_security_context_applies() {
    if !support::can_run_containers() {
        return;
    }
    support::netns::run(async {
        let cluster = Cluster::start().await;
        let mut pod = host_pod(
            "secure",
            json!([{
                "name": "main",
                "image": BUSYBOX,
                "command": ["sleep", "3600"],
                "securityContext": {
                    "runAsUser": 65534,
                    "readOnlyRootFilesystem": true,
                    "allowPrivilegeEscalation": false,
                    "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}
                }
            }]),
        );
        pod["spec"]["securityContext"] = json!({"runAsGroup": 65534, "runAsUser": 1000});
        cluster.create_pod(pod).await;
        let pod = cluster
            .wait_pod("secure", 60, "Running", |p| phase(p) == "Running")
            .await;
        let id = container_id(&pod, "main");
        let out = cluster
            .cri
            .exec_sync(
                &id,
                &["sh", "-c", "id -u; id -g; touch /x 2>/dev/null || echo ro; grep -E '^(CapBnd|NoNewPrivs)' /proc/self/status"],
                10,
            )
            .await
            .unwrap();
        let out = String::from_utf8_lossy(&out.stdout).to_string();
        // CAP_NET_BIND_SERVICE alone (bit 10) is left in the bounding set.
        assert_eq!(
            out, "65534\n65534\nro\nCapBnd:\t0000000000000400\nNoNewPrivs:\t1\n",
            "{out}"
        );
        cluster.stop().await;
    });
}

/// A container exiting 1 under restartPolicy Always goes into CrashLoopBackOff with upstream's
/// message, a growing restart count and back-off, and its previous log kept.
#[test]
fn a_crashing_container_backs_off() {
    if !support::can_run_containers() {
        return;
    }
    support::netns::run(async {
        let cluster = Cluster::start().await;
        cluster
            .create_pod(host_pod(
                "crash",
                json!([{"name": "main", "image": BUSYBOX, "command": ["sh", "-c", "echo run; exit 1"]}]),
            ))
            .await;
        let pod = cluster
            .wait_pod("crash", 60, "CrashLoopBackOff", |p| {
                container_status(p, "main")["state"]["waiting"]["reason"] == "CrashLoopBackOff"
            })
            .await;
        let uid = pod["metadata"]["uid"].as_str().unwrap();
        let main = container_status(&pod, "main");
        assert_eq!(
            main["state"]["waiting"]["message"],
            format!("back-off 10s restarting failed container=main pod=crash_default({uid})"),
            "{main}"
        );
        assert_eq!(main["lastState"]["terminated"]["exitCode"], 1, "{main}");
        assert_eq!(main["lastState"]["terminated"]["reason"], "Error", "{main}");
        assert_eq!(main["restartCount"], 1, "{main}");
        assert_eq!(phase(&pod), "Running");
        assert_eq!(condition(&pod, "Ready")["status"], "False");
        // The next back-off is twice as long, after another restart.
        let started = Instant::now();
        let pod = cluster
            .wait_pod("crash", 40, "back-off 20s", |p| {
                let m = container_status(p, "main");
                m["state"]["waiting"]["message"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("back-off 20s"))
            })
            .await;
        assert!(
            started.elapsed() >= Duration::from_secs(7),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(container_status(&pod, "main")["restartCount"], 2);
        // The previous container's log stays for `kubectl logs --previous`; older ones go.
        let dir = cluster.pod_log_dir(&pod).join("main");
        let prev = std::fs::read_to_string(dir.join("1.log")).unwrap_or_default();
        assert!(prev.contains("run"), "{prev}");
        assert!(dir.join("2.log").exists());
        assert!(!dir.join("0.log").exists());
        cluster.stop().await;
    });
}

/// Under restartPolicy Never a pod whose container exits 0 is Succeeded, and one exiting 1 is
/// Failed; neither is restarted.
#[test]
fn never_restarted_pods_end_succeeded_or_failed() {
    if !support::can_run_containers() {
        return;
    }
    support::netns::run(async {
        let cluster = Cluster::start().await;
        for (name, code) in [("ok", 0), ("bad", 1)] {
            let mut pod = host_pod(
                name,
                json!([{"name": "main", "image": BUSYBOX, "command": ["sh", "-c", format!("echo bye > /dev/termination-log; exit {code}")]}]),
            );
            pod["spec"]["restartPolicy"] = json!("Never");
            cluster.create_pod(pod).await;
        }
        let ok = cluster
            .wait_pod("ok", 60, "Succeeded", |p| phase(p) == "Succeeded")
            .await;
        let main = container_status(&ok, "main");
        assert_eq!(main["state"]["terminated"]["reason"], "Completed", "{main}");
        assert_eq!(main["state"]["terminated"]["exitCode"], 0);
        assert_eq!(main["state"]["terminated"]["message"], "bye\n");
        assert_eq!(main["restartCount"], 0);
        assert_eq!(main["ready"], false);
        assert_eq!(condition(&ok, "Ready")["reason"], "PodCompleted");
        let bad = cluster
            .wait_pod("bad", 60, "Failed", |p| phase(p) == "Failed")
            .await;
        let main = container_status(&bad, "main");
        assert_eq!(main["state"]["terminated"]["exitCode"], 1, "{main}");
        assert_eq!(main["state"]["terminated"]["reason"], "Error");
        tokio::time::sleep(Duration::from_secs(3)).await;
        let again = serde_json::to_value(cluster.get_pod("bad").await.unwrap()).unwrap();
        assert_eq!(container_status(&again, "main")["restartCount"], 0);
        assert_eq!(phase(&again), "Failed");
        cluster.stop().await;
    });
}

/// Deleting a pod stops its containers within the grace period (a process ignoring SIGTERM is
/// killed when it ends), removes its sandbox and then the object.
#[test]
fn deleting_a_pod_stops_it_within_its_grace_period() {
    if !support::can_run_containers() {
        return;
    }
    support::netns::run(async {
        let cluster = Cluster::start().await;
        // `sleep` as PID 1 ignores SIGTERM: only the kill at the end of the grace period stops it.
        cluster
            .create_pod(host_pod(
                "doomed",
                json!([{"name": "main", "image": BUSYBOX, "command": ["sleep", "3600"]}]),
            ))
            .await;
        cluster
            .wait_pod("doomed", 60, "Running", |p| phase(p) == "Running")
            .await;
        assert_eq!(cluster.cri.list_pod_sandboxes().await.unwrap().len(), 1);
        let started = Instant::now();
        cluster
            .pods_api()
            .delete("doomed", &Default::default())
            .await
            .unwrap();
        pods_support::eventually("the pod object removed", 30, || async {
            cluster.get_pod("doomed").await.is_none().then_some(())
        })
        .await;
        let took = started.elapsed();
        assert!(took >= Duration::from_secs(2), "{took:?}");
        assert!(took < Duration::from_secs(10), "{took:?}");
        assert!(cluster.cri.list_containers().await.unwrap().is_empty());
        assert!(cluster.cri.list_pod_sandboxes().await.unwrap().is_empty());
        cluster.stop().await;
    });
}

/// An image that is nowhere gives ErrImagePull with the pull's error, then ImagePullBackOff.
#[test]
fn a_missing_image_gives_err_image_pull_then_back_off() {
    if !support::can_run_containers() {
        return;
    }
    support::netns::run(async {
        let cluster = Cluster::start().await;
        cluster
            .create_pod(host_pod(
                "noimage",
                json!([{"name": "main", "image": "localhost/krust/missing:1"}]),
            ))
            .await;
        let pod = cluster
            .wait_pod("noimage", 60, "ErrImagePull", |p| {
                container_status(p, "main")["state"]["waiting"]["reason"] == "ErrImagePull"
            })
            .await;
        let message = container_status(&pod, "main")["state"]["waiting"]["message"]
            .as_str()
            .unwrap_or("")
            .to_string();
        // Upstream's message is the runtime's gRPC error as grpc-go prints it.
        assert!(
            message.starts_with("rpc error: code = ")
                && message.contains("\"localhost/krust/missing:1\""),
            "{message}"
        );
        let pod = cluster
            .wait_pod("noimage", 30, "ImagePullBackOff", |p| {
                container_status(p, "main")["state"]["waiting"]["reason"] == "ImagePullBackOff"
            })
            .await;
        assert_eq!(
            container_status(&pod, "main")["state"]["waiting"]["message"],
            "Back-off pulling image \"localhost/krust/missing:1\""
        );
        assert_eq!(phase(&pod), "Pending");
        cluster.stop().await;
    });
}

/// A restarted pod lifecycle adopts the running containers without restarting them, and removes
/// the sandbox of a pod deleted while it was down.
#[test]
fn a_restarted_agent_adopts_running_containers() {
    if !support::can_run_containers() {
        return;
    }
    support::netns::run(async {
        let mut cluster = Cluster::start().await;
        for name in ["keep", "gone"] {
            cluster
                .create_pod(host_pod(
                    name,
                    json!([{"name": "main", "image": BUSYBOX, "command": ["sleep", "3600"]}]),
                ))
                .await;
        }
        let before = cluster
            .wait_pod("keep", 60, "Running", |p| phase(p) == "Running")
            .await;
        cluster
            .wait_pod("gone", 60, "Running", |p| phase(p) == "Running")
            .await;
        cluster.stop_pods().await;
        // Deleted for good while no agent watches: its sandbox is an orphan.
        cluster
            .pods_api()
            .delete(
                "gone",
                &kube::api::DeleteParams {
                    grace_period_seconds: Some(0),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        cluster.restart_pods();
        pods_support::eventually("the orphaned sandbox removed", 30, || async {
            let sandboxes = cluster.cri.list_pod_sandboxes().await.unwrap();
            (sandboxes.len() == 1).then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let after = serde_json::to_value(cluster.get_pod("keep").await.unwrap()).unwrap();
        assert_eq!(container_id(&after, "main"), container_id(&before, "main"));
        assert_eq!(container_status(&after, "main")["restartCount"], 0);
        assert_eq!(phase(&after), "Running");
        let running = cluster.cri.list_containers().await.unwrap();
        assert_eq!(running.len(), 1, "{running:?}");
        cluster.stop().await;
    });
}

/// A manifest in the manifests directory runs as a static pod with a mirror pod named
/// `<name>-<node>`; removing the manifest stops it and deletes the mirror.
#[test]
fn static_pods_run_from_manifests_with_mirror_pods() {
    if !support::can_run_containers() {
        return;
    }
    support::netns::run(async {
        let cluster = Cluster::start().await;
        let dir = cluster.manifests_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let manifest = format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: static-web\nspec:\n  hostNetwork: true\n  terminationGracePeriodSeconds: 2\n  containers:\n  - name: web\n    image: {BUSYBOX}\n    command: [sleep, \"3600\"]\n"
        );
        std::fs::write(dir.join("web.yaml"), manifest).unwrap();
        let name = format!("static-web-{NODE}");
        let mirror = cluster
            .wait_pod(&name, 60, "mirror Running", |p| phase(p) == "Running")
            .await;
        let annotations = &mirror["metadata"]["annotations"];
        assert!(
            annotations["kubernetes.io/config.mirror"].is_string(),
            "{annotations}"
        );
        assert_eq!(annotations["kubernetes.io/config.source"], "file");
        assert_eq!(mirror["metadata"]["ownerReferences"][0]["kind"], "Node");
        assert_eq!(container_status(&mirror, "web")["ready"], true);
        std::fs::remove_file(dir.join("web.yaml")).unwrap();
        pods_support::eventually("the mirror pod deleted", 40, || async {
            cluster.get_pod(&name).await.is_none().then_some(())
        })
        .await;
        pods_support::eventually("the static pod's sandbox removed", 30, || async {
            cluster
                .cri
                .list_pod_sandboxes()
                .await
                .unwrap()
                .is_empty()
                .then_some(())
        })
        .await;
        cluster.stop().await;
    });
}

/// Volumes are mounted (a configMap's keys as files), postStart runs after the start, readiness
/// follows its probe, and a failing liveness probe restarts the container.
#[test]
fn volumes_hooks_and_probes_drive_the_pod() {
    if !support::can_run_containers() {
        return;
    }
    support::netns::run(async {
        let cluster = Cluster::start().await;
        let cms: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
            kube::Api::namespaced(cluster.admin.clone(), "default");
        cms.create(
            &Default::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "files"}, "data": {"motd": "hi there"}}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
        let mut pod = host_pod(
            "probed",
            json!([{
                "name": "main",
                "image": BUSYBOX,
                "command": ["sh", "-c", "touch /tmp/healthy; sleep 2; touch /tmp/ready; sleep 4; rm /tmp/healthy; exec sleep 3600"],
                "volumeMounts": [{"name": "files", "mountPath": "/etc/files"}, {"name": "scratch", "mountPath": "/scratch"}],
                "lifecycle": {"postStart": {"exec": {"command": ["sh", "-c", "echo posted > /scratch/post"]}}},
                "readinessProbe": {"exec": {"command": ["cat", "/tmp/ready"]}, "periodSeconds": 1},
                "livenessProbe": {"exec": {"command": ["cat", "/tmp/healthy"]}, "periodSeconds": 1, "failureThreshold": 1}
            }]),
        );
        pod["spec"]["volumes"] = json!([
            {"name": "files", "configMap": {"name": "files"}},
            {"name": "scratch", "emptyDir": {}}
        ]);
        cluster.create_pod(pod).await;
        let running = cluster
            .wait_pod("probed", 60, "Running, not ready", |p| {
                phase(p) == "Running" && container_status(p, "main")["state"]["running"].is_object()
            })
            .await;
        assert_eq!(
            condition(&running, "Ready")["status"],
            "False",
            "{:#}",
            running["status"]
        );
        let id = container_id(&running, "main");
        let out = cluster
            .cri
            .exec_sync(
                &id,
                &["sh", "-c", "cat /etc/files/motd; echo; cat /scratch/post"],
                10,
            )
            .await
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "hi there\nposted\n");
        cluster
            .wait_pod("probed", 20, "Ready", |p| {
                condition(p, "Ready")["status"] == "True"
            })
            .await;
        let restarted = cluster
            .wait_pod("probed", 40, "restarted by its liveness probe", |p| {
                container_status(p, "main")["restartCount"].as_i64() >= Some(1)
            })
            .await;
        let main = container_status(&restarted, "main");
        assert!(main["lastState"]["terminated"].is_object(), "{main}");
        assert_ne!(container_id(&restarted, "main"), id);
        cluster.stop().await;
    });
}

/// A pod off the host network gets an address from the node's pod CIDR through CNI (written as
/// the node module does), its own hostname, and that address in its status and downward API.
#[test]
fn a_pod_network_pod_gets_an_address_from_the_pod_cidr() {
    if !support::can_run_containers() {
        return;
    }
    support::netns::run(async {
        let cluster = Cluster::start().await;
        kubelet::network::PodNetwork::new(&cluster.data_dir)
            .write("10.88.7.0/24")
            .unwrap();
        cluster
            .create_pod(json!({
                "metadata": {"name": "netpod"},
                "spec": {
                    "terminationGracePeriodSeconds": 2,
                    "containers": [{
                        "name": "main",
                        "image": BUSYBOX,
                        "command": ["sleep", "3600"],
                        "env": [{"name": "MY_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]
                    }]
                }
            }))
            .await;
        let pod = cluster
            .wait_pod("netpod", 60, "Running", |p| phase(p) == "Running")
            .await;
        let ip = pod["status"]["podIP"].as_str().unwrap().to_string();
        assert!(ip.starts_with("10.88.7."), "{ip}");
        assert_eq!(pod["status"]["hostIP"], "127.0.0.1");
        let id = container_id(&pod, "main");
        let out = cluster
            .cri
            .exec_sync(&id, &["sh", "-c", "hostname; echo $MY_IP"], 10)
            .await
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("netpod\n{ip}\n")
        );
        cluster
            .pods_api()
            .delete("netpod", &Default::default())
            .await
            .unwrap();
        pods_support::eventually("the pod removed", 30, || async {
            cluster.get_pod("netpod").await.is_none().then_some(())
        })
        .await;
        cluster.stop().await;
    });
}
