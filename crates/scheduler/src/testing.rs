//! Builders for typed pods and nodes in unit tests.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, Node, NodeCondition, NodeSpec, NodeStatus, Pod, PodSpec, Taint,
    Toleration,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::requests::tests::container;

/// A Ready node with `cpu`, `memory` and 110 pods allocatable, labelled with its hostname.
pub fn node(name: &str, cpu: &str, memory: &str) -> Node {
    let allocatable: BTreeMap<String, Quantity> = [
        ("cpu", cpu),
        ("memory", memory),
        ("pods", "110"),
        ("ephemeral-storage", "100Gi"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
    .collect();
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some([("kubernetes.io/hostname".to_string(), name.to_string())].into()),
            ..Default::default()
        },
        spec: Some(NodeSpec::default()),
        status: Some(NodeStatus {
            allocatable: Some(allocatable.clone()),
            capacity: Some(allocatable),
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: "True".into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

/// A pod in `default` with one container requesting `cpu` and `memory` ("" = no request).
pub fn pod(name: &str, cpu: &str, memory: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{name}")),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![container(cpu, memory)],
            ..Default::default()
        }),
        status: None,
    }
}

pub trait NodeExt {
    fn label(self, key: &str, value: &str) -> Self;
    fn taint(self, key: &str, value: &str, effect: &str) -> Self;
}

impl NodeExt for Node {
    fn label(mut self, key: &str, value: &str) -> Node {
        self.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(key.into(), value.into());
        self
    }

    fn taint(mut self, key: &str, value: &str, effect: &str) -> Node {
        let spec = self.spec.get_or_insert_with(Default::default);
        spec.taints.get_or_insert_with(Vec::new).push(Taint {
            key: key.into(),
            value: Some(value.into()).filter(|v: &String| !v.is_empty()),
            effect: effect.into(),
            time_added: None,
        });
        self
    }
}

pub trait PodExt {
    fn on(self, node: &str) -> Self;
    fn label(self, key: &str, value: &str) -> Self;
    fn tolerate(self, key: &str, operator: &str, value: &str, effect: &str) -> Self;
    fn host_port(self, port: i32) -> Self;
    fn spec_mut(&mut self) -> &mut PodSpec;
}

impl PodExt for Pod {
    fn on(mut self, node: &str) -> Pod {
        self.spec_mut().node_name = Some(node.into());
        self
    }

    fn label(mut self, key: &str, value: &str) -> Pod {
        self.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(key.into(), value.into());
        self
    }

    fn tolerate(mut self, key: &str, operator: &str, value: &str, effect: &str) -> Pod {
        let opt = |s: &str| Some(s.to_string()).filter(|s| !s.is_empty());
        self.spec_mut()
            .tolerations
            .get_or_insert_with(Vec::new)
            .push(Toleration {
                key: opt(key),
                operator: opt(operator),
                value: opt(value),
                effect: opt(effect),
                toleration_seconds: None,
            });
        self
    }

    fn host_port(mut self, port: i32) -> Pod {
        let spec = self.spec_mut();
        if spec.containers.is_empty() {
            spec.containers.push(Container::default());
        }
        spec.containers[0]
            .ports
            .get_or_insert_with(Vec::new)
            .push(ContainerPort {
                container_port: port,
                host_port: Some(port),
                ..Default::default()
            });
        self
    }

    fn spec_mut(&mut self) -> &mut PodSpec {
        self.spec.get_or_insert_with(Default::default)
    }
}
