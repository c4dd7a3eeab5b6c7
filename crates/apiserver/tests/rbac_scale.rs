//! RBAC decisions stay cheap with the benchmark size: the bootstrap policy plus 1,000
//! Roles and 1,000 RoleBindings (and 1,000 ClusterRoles with ClusterRoleBindings). Prints the
//! mean time per decision; the bound is loose enough for an unoptimised build on a busy machine.

use std::time::{Duration, Instant};

use apiserver::authn::UserInfo;
use apiserver::authz::Attributes;
use apiserver::rbac::{bootstrap, Policy, RbacDecision};
use serde_json::json;

const OBJECTS: usize = 1000;

fn large_policy() -> Policy {
    let mut policy = bootstrap::policy().expect("bootstrap policy");
    for i in 0..OBJECTS {
        let ns = format!("ns{}", i % 100);
        let rule = json!({"verbs": ["get", "list"], "apiGroups": [""], "resources": [format!("things{i}")]});
        let objects = [
            json!({"kind": "Role", "metadata": {"name": format!("r{i}"), "namespace": ns}, "rules": [rule]}),
            json!({"kind": "RoleBinding", "metadata": {"name": format!("rb{i}"), "namespace": ns},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": format!("r{i}")},
                   "subjects": [{"kind": "User", "name": format!("user{i}")}, {"kind": "Group", "name": format!("team{i}")}]}),
            json!({"kind": "ClusterRole", "metadata": {"name": format!("cr{i}")}, "rules": [rule]}),
            json!({"kind": "ClusterRoleBinding", "metadata": {"name": format!("crb{i}")},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": format!("cr{i}")},
                   "subjects": [{"kind": "ServiceAccount", "name": format!("sa{i}"), "namespace": "apps"}]}),
        ];
        for object in &objects {
            policy.apply(object).expect("valid object");
        }
    }
    policy
}

fn attrs(user: &str, groups: &[&str], resource: &str, ns: &str) -> Attributes {
    Attributes {
        user: UserInfo {
            name: user.into(),
            uid: String::new(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            extra: Default::default(),
        },
        verb: "get".into(),
        resource_request: true,
        api_group: String::new(),
        api_version: "v1".into(),
        resource: resource.into(),
        subresource: String::new(),
        namespace: ns.into(),
        name: "x".into(),
        path: String::new(),
        field_selector: String::new(),
    }
}

fn mean(policy: &Policy, a: &Attributes, rounds: u32) -> Duration {
    // Warm caches first so the first case measured is not charged for them.
    for _ in 0..rounds / 10 {
        std::hint::black_box(policy.authorize(a));
    }
    let start = Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(policy.authorize(a));
    }
    start.elapsed() / rounds
}

#[test]
fn decisions_with_a_thousand_roles_and_bindings() {
    let policy = large_policy();
    let allowed = attrs("user999", &["system:authenticated"], "things999", "ns99");
    let denied = attrs("nobody", &["system:authenticated"], "secrets", "ns5");
    let masters = attrs(
        "admin",
        &["system:masters", "system:authenticated"],
        "secrets",
        "ns5",
    );
    assert!(matches!(policy.authorize(&allowed), RbacDecision::Allow(_)));
    assert!(matches!(
        policy.authorize(&denied),
        RbacDecision::NoOpinion(_)
    ));
    assert!(matches!(policy.authorize(&masters), RbacDecision::Allow(_)));
    for (name, a) in [
        ("allowed via RoleBinding", &allowed),
        ("denied", &denied),
        ("system:masters", &masters),
    ] {
        let per = mean(&policy, a, 1000);
        eprintln!("rbac decision, {name}: {per:?}");
        assert!(
            per < Duration::from_millis(20),
            "{name}: {per:?} per decision"
        );
    }
}
