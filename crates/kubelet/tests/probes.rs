//! Probes and lifecycle hooks against real containers: a managed containerd, busybox containers
//! on the (test's own) host network made through CRI, and the ProbeManager watching them.
//! Needs root (skipped, saying so, without).

mod probe_support;
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Pod};
use kubelet::probes::{run_handler, ProbeEvent, ProbeManager, Target};
use probe_support::{eventually, Node};
use tokio::sync::mpsc::UnboundedReceiver;

fn pod_with(uid: &str, containers: serde_json::Value) -> Arc<Pod> {
    let pod = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": uid, "namespace": "default", "uid": uid},
        "spec": {"containers": containers},
    });
    Arc::new(serde_json::from_value(pod).unwrap())
}

/// The next event within `limit`, if any.
async fn next_event(rx: &mut UnboundedReceiver<ProbeEvent>, limit: Duration) -> Option<ProbeEvent> {
    tokio::time::timeout(limit, rx.recv()).await.ok().flatten()
}

/// An exec liveness probe that starts failing says so after failureThreshold periods, in
/// upstream's words, and not before; initialDelaySeconds holds the first probe back.
#[test]
fn exec_liveness_probe_failure_and_initial_delay() {
    if !support::can_run_containers() {
        return;
    }
    support::netns::run(async {
        let node = Node::start("krust-probes-exec-").await;
        let sandbox = node.sandbox("liveness").await;
        let id = node
            .container(&sandbox, "main", 0, "touch /tmp/healthy; exec sleep 3600")
            .await;
        let pod = pod_with(
            &sandbox.uid,
            serde_json::json!([{
                "name": "main",
                "livenessProbe": {
                    "exec": {"command": ["cat", "/tmp/healthy"]},
                    "periodSeconds": 1,
                    "failureThreshold": 3,
                },
            }]),
        );
        let (probes, mut events) = ProbeManager::new(node.cri.clone());
        probes.add(pod.clone(), "main", &id, Some("127.0.0.1".into()));
        // Without readiness or startup probes a container is started and ready.
        assert!(probes.started(&id) && probes.ready(&id));
        assert_eq!(next_event(&mut events, Duration::from_secs(3)).await, None);

        assert_eq!(node.exec(&id, "rm /tmp/healthy").await, 0);
        let removed = Instant::now();
        let event = next_event(&mut events, Duration::from_secs(10)).await;
        let waited = removed.elapsed();
        match event {
            Some(ProbeEvent::LivenessFailed {
                pod_uid,
                container,
                container_id,
                message,
            }) => {
                assert_eq!(
                    (pod_uid.as_str(), container.as_str()),
                    (sandbox.uid.as_str(), "main")
                );
                assert_eq!(container_id, id);
                assert_eq!(
                    message,
                    "Liveness probe failed: cat: can't open '/tmp/healthy': No such file or directory\n"
                );
            }
            other => panic!("expected LivenessFailed, got {other:?}"),
        }
        // Three failures one second apart: at least two periods after the file went.
        assert!(waited >= Duration::from_millis(1900), "{waited:?}");
        // The worker holds after a failure: no second event for the same container.
        assert_eq!(next_event(&mut events, Duration::from_secs(2)).await, None);
        probes.remove(&id);
        assert!(!probes.ready(&id));

        // initialDelaySeconds: a probe that always fails is not run before 4 s have passed.
        let delayed = node
            .container(&sandbox, "delayed", 0, "exec sleep 3600")
            .await;
        let pod = pod_with(
            &sandbox.uid,
            serde_json::json!([{
                "name": "delayed",
                "livenessProbe": {
                    "exec": {"command": ["false"]},
                    "initialDelaySeconds": 4,
                    "periodSeconds": 1,
                    "failureThreshold": 1,
                },
            }]),
        );
        let started = Instant::now();
        probes.add(pod, "delayed", &delayed, None);
        let event = next_event(&mut events, Duration::from_secs(10)).await;
        let waited = started.elapsed();
        assert!(
            matches!(&event, Some(ProbeEvent::LivenessFailed { message, .. }) if message == "Liveness probe failed: "),
            "{event:?}"
        );
        assert!(
            waited >= Duration::from_millis(3500),
            "probed after {waited:?}"
        );
        assert!(waited < Duration::from_secs(7), "probed after {waited:?}");

        // An exec probe that outlives timeoutSeconds fails as timed out.
        let slow = node.container(&sandbox, "slow", 0, "exec sleep 3600").await;
        let pod = pod_with(
            &sandbox.uid,
            serde_json::json!([{
                "name": "slow",
                "livenessProbe": {
                    "exec": {"command": ["sleep", "10"]},
                    "timeoutSeconds": 1,
                    "failureThreshold": 1,
                },
            }]),
        );
        probes.add(pod, "slow", &slow, None);
        let event = next_event(&mut events, Duration::from_secs(10)).await;
        assert!(
            matches!(&event, Some(ProbeEvent::LivenessFailed { message, .. })
                if message == "Liveness probe failed: command \"sleep 10\" timed out"),
            "{event:?}"
        );
        probes.remove_pod(&sandbox.uid);
        node.stop().await;
    });
}

/// An httpGet readiness probe (by named port, with a header) follows the file httpd serves; a
/// startup probe holds readiness back until it succeeds; tcpSocket probes see a listener come
/// and a closed port refuse.
#[test]
fn http_readiness_startup_and_tcp_probes() {
    if !support::can_run_containers() {
        return;
    }
    support::netns::run(async {
        let node = Node::start("krust-probes-http-").await;
        let sandbox = node.sandbox("readiness").await;
        let port = support::free_port();
        let script = format!("mkdir -p /www; exec httpd -f -p 127.0.0.1:{port} -h /www");
        let id = node.container(&sandbox, "web", 0, &script).await;
        let pod = pod_with(
            &sandbox.uid,
            serde_json::json!([{
                "name": "web",
                "ports": [{"name": "http", "containerPort": port}],
                "readinessProbe": {
                    "httpGet": {"path": "/ready.html", "port": "http",
                                "httpHeaders": [{"name": "X-Probe", "value": "1"}]},
                    "periodSeconds": 1,
                },
                "startupProbe": {
                    "exec": {"command": ["test", "-f", "/tmp/started"]},
                    "periodSeconds": 1,
                    "failureThreshold": 60,
                },
            }]),
        );
        let (probes, mut events) = ProbeManager::new(node.cri.clone());
        probes.add(pod, "web", &id, Some("127.0.0.1".into()));
        assert!(!probes.started(&id) && !probes.ready(&id));
        // Served, but not started yet: still not ready.
        assert_eq!(node.exec(&id, "echo ok > /www/ready.html").await, 0);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(!probes.started(&id) && !probes.ready(&id));
        assert_eq!(next_event(&mut events, Duration::ZERO).await, None);

        assert_eq!(node.exec(&id, "touch /tmp/started").await, 0);
        let ready = eventually(Duration::from_secs(5), || async { probes.ready(&id) }).await;
        assert!(ready && probes.started(&id));
        assert!(matches!(
            next_event(&mut events, Duration::from_secs(1)).await,
            Some(ProbeEvent::ReadinessChanged { .. })
        ));

        assert_eq!(node.exec(&id, "rm /www/ready.html").await, 0);
        let unready = eventually(Duration::from_secs(5), || async { !probes.ready(&id) }).await;
        assert!(unready, "ready while /ready.html is 404");
        assert!(probes.started(&id), "started stays true");
        assert_eq!(node.exec(&id, "echo ok > /www/ready.html").await, 0);
        assert!(eventually(Duration::from_secs(5), || async { probes.ready(&id) }).await);
        while next_event(&mut events, Duration::from_millis(100))
            .await
            .is_some()
        {}

        // tcpSocket: ready once something listens; a liveness probe on a closed port fails.
        let tcp_port = support::free_port();
        let closed = support::free_port();
        let script = format!("sleep 2; exec nc -ll -p {tcp_port} -e true");
        let nc = node.container(&sandbox, "nc", 0, &script).await;
        let pod = pod_with(
            &sandbox.uid,
            serde_json::json!([{
                "name": "nc",
                "readinessProbe": {"tcpSocket": {"port": tcp_port}, "periodSeconds": 1},
                "livenessProbe": {"tcpSocket": {"port": closed, "host": "127.0.0.1"},
                                  "periodSeconds": 1, "failureThreshold": 2},
            }]),
        );
        probes.add(pod, "nc", &nc, Some("127.0.0.1".into()));
        assert!(!probes.ready(&nc));
        let mut became_ready = false;
        let mut liveness = None;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && !(became_ready && liveness.is_some()) {
            match next_event(&mut events, Duration::from_secs(1)).await {
                Some(ProbeEvent::ReadinessChanged { .. }) => became_ready |= probes.ready(&nc),
                Some(ProbeEvent::LivenessFailed { message, .. }) => liveness = Some(message),
                _ => {}
            }
        }
        assert!(became_ready, "tcp readiness never succeeded");
        assert_eq!(
            liveness.as_deref(),
            Some(
                format!("Liveness probe failed: dial tcp 127.0.0.1:{closed}: connect: connection refused")
                    .as_str()
            )
        );
        probes.remove_pod(&sandbox.uid);
        assert!(!probes.ready(&id));
        node.stop().await;
    });
}

/// postStart-style hooks: an exec hook's effect is visible in the container, an httpGet hook
/// reaches the server, a failing exec hook says why, a sleep hook sleeps.
#[test]
fn lifecycle_hooks_run_in_the_container() {
    if !support::can_run_containers() {
        return;
    }
    support::netns::run(async {
        let node = Node::start("krust-probes-hooks-").await;
        let sandbox = node.sandbox("hooks").await;
        let port = support::free_port();
        let script = format!("mkdir -p /www; exec httpd -f -v -p 127.0.0.1:{port} -h /www");
        let id = node.container(&sandbox, "web", 0, &script).await;
        let spec: Container = serde_json::from_value(serde_json::json!({
            "name": "web", "ports": [{"name": "http", "containerPort": port}],
        }))
        .unwrap();
        let target = Target {
            container_id: &id,
            container: &spec,
            pod_ip: Some("127.0.0.1"),
        };
        let handler =
            |v: serde_json::Value| -> LifecycleHandler { serde_json::from_value(v).unwrap() };

        let exec = handler(
            serde_json::json!({"exec": {"command": ["sh", "-c", "echo hooked > /www/hook.txt"]}}),
        );
        run_handler(&node.cri, &exec, target).await.unwrap();
        let out = node
            .cri
            .exec_sync(&id, &["cat", "/www/hook.txt"], 5)
            .await
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "hooked\n");

        let failing =
            handler(serde_json::json!({"exec": {"command": ["sh", "-c", "echo bad >&2; exit 3"]}}));
        let err = run_handler(&node.cri, &failing, target).await.unwrap_err();
        assert_eq!(
            err,
            "command 'sh -c echo bad >&2; exit 3' exited with 3: bad\n"
        );

        // The httpGet hook reaches httpd (a 404 is fine: only reaching it matters).
        let mut reached = false;
        for _ in 0..50 {
            let get =
                handler(serde_json::json!({"httpGet": {"path": "/poststart", "port": "http"}}));
            if run_handler(&node.cri, &get, target).await.is_ok() {
                reached = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(reached, "httpGet hook never reached httpd");
        let closed = support::free_port();
        let get = handler(serde_json::json!({"httpGet": {"path": "/", "port": closed}}));
        let err = run_handler(&node.cri, &get, target).await.unwrap_err();
        assert!(err.ends_with("connect: connection refused"), "{err}");

        let sleep = handler(serde_json::json!({"sleep": {"seconds": 1}}));
        let started = Instant::now();
        run_handler(&node.cri, &sleep, target).await.unwrap();
        assert!(started.elapsed() >= Duration::from_secs(1));
        node.stop().await;
    });
}
