//! RBAC over upstream's bootstrap policy and upstream's own evaluator, escalation and
//! reconciliation cases (`rbac_test.go`, `policy_comparator_test.go`, `reconcile_role_test.go`),
//! through the public API an `Authorizer` and the registry use.

use apiserver::authn::UserInfo;
use apiserver::authz::{forbidden_message, Attributes, Authorizer, Decision};
use apiserver::rbac::escalation::{check_binding_write, check_role_write};
use apiserver::rbac::objects::decode;
use apiserver::rbac::reconcile::{reconcile, reconcile_all, Operation};
use apiserver::rbac::rules::covers;
use apiserver::rbac::{bootstrap, Object, Policy, PolicyRule, RbacAuthorizer, RbacDecision};
use serde_json::{json, Value};

fn user(name: &str, groups: &[&str]) -> UserInfo {
    UserInfo {
        name: name.into(),
        uid: String::new(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        extra: Default::default(),
    }
}

fn authenticated(name: &str) -> UserInfo {
    user(name, &["system:authenticated"])
}

/// A resource request; `resource` may be `pods/log`.
fn req(u: &UserInfo, verb: &str, group: &str, resource: &str, ns: &str, name: &str) -> Attributes {
    let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
    Attributes {
        user: u.clone(),
        verb: verb.into(),
        resource_request: true,
        api_group: group.into(),
        api_version: "v1".into(),
        resource: resource.into(),
        subresource: subresource.into(),
        namespace: ns.into(),
        name: name.into(),
        path: String::new(),
        field_selector: String::new(),
    }
}

fn path(u: &UserInfo, verb: &str, p: &str) -> Attributes {
    Attributes {
        user: u.clone(),
        verb: verb.into(),
        resource_request: false,
        api_group: String::new(),
        api_version: String::new(),
        resource: String::new(),
        subresource: String::new(),
        namespace: String::new(),
        name: String::new(),
        path: p.into(),
        field_selector: String::new(),
    }
}

fn allows(policy: &Policy, attrs: &Attributes) -> bool {
    matches!(policy.authorize(attrs), RbacDecision::Allow(_))
}

/// Whether `policy` lets `u` do `verb` on `resource` (may be `pods/log`).
fn can(
    policy: &Policy,
    u: &UserInfo,
    verb: &str,
    group: &str,
    resource: &str,
    ns: &str,
    name: &str,
) -> bool {
    allows(policy, &req(u, verb, group, resource, ns, name))
}

fn can_path(policy: &Policy, u: &UserInfo, verb: &str, p: &str) -> bool {
    allows(policy, &path(u, verb, p))
}

fn rule(verbs: &str, groups: &str, resources: &str, urls: &str) -> Value {
    fn list(s: &str) -> Vec<&str> {
        s.split(',').filter(|x| !x.is_empty()).collect()
    }
    // `""` is the core group for a resource rule, and no group at all for a URL rule.
    let groups: Vec<&str> = if resources.is_empty() {
        vec![]
    } else {
        groups.split(',').collect()
    };
    json!({"verbs": list(verbs), "apiGroups": groups, "resources": list(resources), "nonResourceURLs": list(urls)})
}

fn cluster_role(name: &str, rules: Vec<Value>) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": name}, "rules": rules})
}

fn role(ns: &str, name: &str, rules: Vec<Value>) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": name, "namespace": ns}, "rules": rules})
}

/// `User:alice`, `Group:devs`, `ServiceAccount:ns:name` (ns may be empty).
fn subjects(specs: &[&str]) -> Value {
    let one = |spec: &&str| -> Value {
        let (kind, rest) = spec.split_once(':').expect("KIND:NAME");
        match (kind, rest.split_once(':')) {
            ("ServiceAccount", Some((ns, name))) => {
                json!({"kind": kind, "name": name, "namespace": ns})
            }
            _ => json!({"kind": kind, "apiGroup": "rbac.authorization.k8s.io", "name": rest}),
        }
    };
    Value::Array(specs.iter().map(one).collect())
}

fn role_binding(ns: &str, name: &str, ref_kind: &str, ref_name: &str, who: &[&str]) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
           "metadata": {"name": name, "namespace": ns},
           "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": ref_kind, "name": ref_name},
           "subjects": subjects(who)})
}

fn cluster_role_binding(name: &str, ref_name: &str, who: &[&str]) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
           "metadata": {"name": name},
           "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": ref_name},
           "subjects": subjects(who)})
}

fn bootstrap_with(extra: &[Value]) -> Policy {
    let mut policy = bootstrap::policy().expect("bootstrap policy");
    for value in extra {
        policy.apply(value).expect("valid RBAC object");
    }
    policy
}

// ---- evaluation over the bootstrap policy ----

#[test]
fn system_masters_may_do_anything_and_says_why() {
    let policy = bootstrap_with(&[]);
    let admin = user("admin", &["system:masters", "system:authenticated"]);
    for attrs in [
        req(&admin, "delete", "apps", "deployments", "prod", "web"),
        req(&admin, "get", "", "secrets", "kube-system", "x"),
        req(&admin, "create", "", "pods/exec", "default", "p"),
        req(&admin, "list", "", "nodes", "", ""),
        path(&admin, "post", "/anything/at/all"),
    ] {
        assert_eq!(
            policy.authorize(&attrs),
            RbacDecision::Allow(
                r#"RBAC: allowed by ClusterRoleBinding "cluster-admin" of ClusterRole "cluster-admin" to Group "system:masters""#
                    .into()
            )
        );
    }
}

#[test]
fn a_user_without_bindings_is_refused_with_upstreams_message() {
    let policy = bootstrap_with(&[]);
    let bob = authenticated("bob");
    let attrs = req(&bob, "list", "", "pods", "default", "");
    let RbacDecision::NoOpinion(reason) = policy.authorize(&attrs) else {
        panic!("bob may not list pods");
    };
    assert_eq!(
        forbidden_message(&attrs, &reason),
        r#"forbidden: User "bob" cannot list resource "pods" in API group "" in the namespace "default""#
            .replacen("forbidden: ", "pods is forbidden: ", 1)
    );
}

#[test]
fn view_reads_but_not_secrets_and_edit_reads_secrets() {
    let policy = bootstrap_with(&[
        role_binding("dev", "viewers", "ClusterRole", "view", &["User:vera"]),
        role_binding("dev", "editors", "ClusterRole", "edit", &["User:ed"]),
    ]);
    let (vera, ed) = (authenticated("vera"), authenticated("ed"));
    assert!(can(&policy, &vera, "get", "", "pods", "dev", "p"));
    assert!(can(
        &policy,
        &vera,
        "list",
        "apps",
        "deployments",
        "dev",
        ""
    ));
    assert!(!can(&policy, &vera, "get", "", "secrets", "dev", "s"));
    assert!(!can(&policy, &vera, "create", "", "pods", "dev", ""));
    assert!(can(&policy, &ed, "get", "", "secrets", "dev", "s"));
    assert!(can(
        &policy,
        &ed,
        "create",
        "apps",
        "deployments",
        "dev",
        ""
    ));
    assert!(!can(
        &policy,
        &ed,
        "create",
        "rbac.authorization.k8s.io",
        "roles",
        "dev",
        ""
    ));
    assert_eq!(
        policy.authorize(&req(&vera, "get", "", "pods", "dev", "p")),
        RbacDecision::Allow(
            r#"RBAC: allowed by RoleBinding "viewers/dev" of ClusterRole "view" to User "vera""#
                .into()
        )
    );
}

#[test]
fn a_role_binding_to_a_cluster_role_is_namespace_scoped() {
    let policy = bootstrap_with(&[role_binding(
        "dev",
        "viewers",
        "ClusterRole",
        "view",
        &["User:vera"],
    )]);
    let vera = authenticated("vera");
    assert!(can(&policy, &vera, "get", "", "pods", "dev", "p"));
    assert!(!can(&policy, &vera, "get", "", "pods", "prod", "p"));
    assert!(
        !can(&policy, &vera, "list", "", "pods", "", ""),
        "not across all namespaces"
    );
    assert!(!can(&policy, &vera, "list", "", "nodes", "", ""));
}

#[test]
fn view_allows_pod_logs_but_not_exec() {
    let policy = bootstrap_with(&[role_binding(
        "dev",
        "viewers",
        "ClusterRole",
        "view",
        &["User:vera"],
    )]);
    let vera = authenticated("vera");
    assert!(can(&policy, &vera, "get", "", "pods/log", "dev", "p"));
    assert!(!can(&policy, &vera, "create", "", "pods/exec", "dev", "p"));
    assert!(!can(&policy, &vera, "get", "", "pods/exec", "dev", "p"));
}

#[test]
fn resource_names_limit_to_named_objects() {
    let policy = bootstrap_with(&[
        role(
            "dev",
            "one-config",
            vec![rule("get,update", "", "configmaps", "")],
        ),
        role_binding("dev", "one-config", "Role", "one-config", &["User:carl"]),
    ]);
    let carl = authenticated("carl");
    assert!(
        can(&policy, &carl, "get", "", "configmaps", "dev", "any"),
        "unnamed rule"
    );
    let mut named = role(
        "dev",
        "one-config",
        vec![rule("get,update", "", "configmaps", "")],
    );
    named["rules"][0]["resourceNames"] = json!(["app-config"]);
    let policy = bootstrap_with(&[
        named,
        role_binding("dev", "one-config", "Role", "one-config", &["User:carl"]),
    ]);
    assert!(can(
        &policy,
        &carl,
        "get",
        "",
        "configmaps",
        "dev",
        "app-config"
    ));
    assert!(can(
        &policy,
        &carl,
        "update",
        "",
        "configmaps",
        "dev",
        "app-config"
    ));
    assert!(!can(
        &policy,
        &carl,
        "get",
        "",
        "configmaps",
        "dev",
        "other"
    ));
    assert!(!can(&policy, &carl, "list", "", "configmaps", "dev", ""));
}

#[test]
fn service_account_subjects() {
    let policy = bootstrap_with(&[
        role_binding(
            "ci",
            "deployer",
            "ClusterRole",
            "edit",
            &["ServiceAccount:ci:deployer"],
        ),
        role_binding(
            "ci",
            "local",
            "ClusterRole",
            "view",
            &["ServiceAccount::reader"],
        ),
    ]);
    let sa = |ns: &str, name: &str| {
        user(
            &format!("system:serviceaccount:{ns}:{name}"),
            &["system:serviceaccounts", "system:authenticated"],
        )
    };
    assert!(can(
        &policy,
        &sa("ci", "deployer"),
        "create",
        "apps",
        "deployments",
        "ci",
        ""
    ));
    assert!(!can(
        &policy,
        &sa("other", "deployer"),
        "create",
        "apps",
        "deployments",
        "ci",
        ""
    ));
    assert!(can(
        &policy,
        &sa("ci", "reader"),
        "list",
        "",
        "pods",
        "ci",
        ""
    ));
    assert_eq!(
        policy.authorize(&req(&sa("ci", "reader"), "list", "", "pods", "ci", "")),
        RbacDecision::Allow(
            r#"RBAC: allowed by RoleBinding "local/ci" of ClusterRole "view" to ServiceAccount "reader/ci""#.into()
        )
    );
    // The bootstrap controller identities.
    let gc = sa("kube-system", "generic-garbage-collector");
    assert!(can(
        &policy,
        &gc,
        "delete",
        "apps",
        "replicasets",
        "dev",
        "rs"
    ));
    assert!(!can(
        &policy,
        &gc,
        "create",
        "apps",
        "replicasets",
        "dev",
        ""
    ));
}

#[test]
fn discovery_and_basic_user_for_the_authenticated() {
    let policy = bootstrap_with(&[]);
    let bob = authenticated("bob");
    for p in [
        "/api",
        "/api/v1",
        "/apis",
        "/apis/apps/v1",
        "/version",
        "/healthz",
        "/openapi/v2",
    ] {
        assert!(can_path(&policy, &bob, "get", p), "{p}");
    }
    assert!(!can_path(&policy, &bob, "post", "/api"));
    assert!(!can_path(&policy, &bob, "get", "/metrics"));
    let rules = "authorization.k8s.io";
    assert!(can(
        &policy,
        &bob,
        "create",
        rules,
        "selfsubjectaccessreviews",
        "",
        ""
    ));
    assert!(can(
        &policy,
        &bob,
        "create",
        rules,
        "selfsubjectrulesreviews",
        "",
        ""
    ));
    assert!(can(
        &policy,
        &bob,
        "create",
        "authentication.k8s.io",
        "selfsubjectreviews",
        "",
        ""
    ));
    assert!(!can(
        &policy,
        &bob,
        "create",
        rules,
        "subjectaccessreviews",
        "",
        ""
    ));
}

#[test]
fn public_info_for_the_unauthenticated() {
    let policy = bootstrap_with(&[]);
    let anonymous = user("system:anonymous", &["system:unauthenticated"]);
    for p in ["/healthz", "/livez", "/readyz", "/version", "/version/"] {
        assert!(can_path(&policy, &anonymous, "get", p), "{p}");
    }
    for p in ["/api", "/apis", "/healthz/etcd", "/metrics", "/openapi/v2"] {
        assert!(!can_path(&policy, &anonymous, "get", p), "{p}");
    }
    assert!(!can(
        &policy,
        &anonymous,
        "create",
        "authorization.k8s.io",
        "selfsubjectaccessreviews",
        "",
        ""
    ));
}

#[test]
fn system_components_hold_their_roles() {
    let policy = bootstrap_with(&[]);
    let scheduler = user("system:kube-scheduler", &["system:authenticated"]);
    assert!(can(
        &policy,
        &scheduler,
        "create",
        "",
        "pods/binding",
        "dev",
        "p"
    ));
    assert!(can(
        &policy,
        &scheduler,
        "update",
        "coordination.k8s.io",
        "leases",
        "kube-system",
        "kube-scheduler"
    ));
    assert!(!can(
        &policy,
        &scheduler,
        "update",
        "coordination.k8s.io",
        "leases",
        "dev",
        "other"
    ));
    let proxy = user("system:kube-proxy", &["system:authenticated"]);
    assert!(can(
        &policy,
        &proxy,
        "watch",
        "discovery.k8s.io",
        "endpointslices",
        "",
        ""
    ));
    let monitor = user("prom", &["system:monitoring", "system:authenticated"]);
    assert!(can_path(&policy, &monitor, "get", "/metrics"));
    let node = user("system:node:n1", &["system:nodes", "system:authenticated"]);
    assert!(
        !can(&policy, &node, "get", "", "secrets", "dev", "s"),
        "nodes go through the Node authorizer"
    );
}

// ---- upstream's rbac_test.go TestAuthorizer cases ----

struct Case {
    objects: Vec<Value>,
    pass: Vec<Attributes>,
    fail: Vec<Attributes>,
}

fn run(case: Case) {
    let policy = Policy::from_values(&case.objects).expect("valid objects");
    for attrs in &case.pass {
        assert!(allows(&policy, attrs), "should pass: {attrs:?}");
    }
    for attrs in &case.fail {
        assert!(!allows(&policy, attrs), "should fail: {attrs:?}");
    }
}

#[test]
fn upstream_authorizer_cases() {
    let admin = user("admin", &[]);
    let with = |name: &str, groups: &str| {
        user(
            name,
            &groups
                .split(',')
                .filter(|g| !g.is_empty())
                .collect::<Vec<_>>(),
        )
    };
    run(Case {
        objects: vec![
            cluster_role("admin", vec![rule("*", "*", "*", "*")]),
            role_binding(
                "ns1",
                "admin",
                "ClusterRole",
                "admin",
                &["User:admin", "Group:admins"],
            ),
        ],
        pass: vec![
            req(&admin, "get", "", "Pods", "ns1", ""),
            req(&admin, "watch", "", "Pods", "ns1", ""),
            req(&with("admin", "group1"), "watch", "", "Foobar", "ns1", ""),
            req(&with("joe", "admins"), "watch", "", "Foobar", "ns1", ""),
            req(
                &with("joe", "group1,admins"),
                "watch",
                "",
                "Foobar",
                "ns1",
                "",
            ),
        ],
        fail: vec![
            req(&admin, "GET", "", "Pods", "ns2", ""),
            req(&admin, "GET", "", "Nodes", "", ""),
            req(&with("admin", "admins"), "GET", "", "Pods", "ns2", ""),
            req(&with("admin", "admins"), "GET", "", "Nodes", "", ""),
        ],
    });

    let foo = user("foo", &[]);
    let bar = with("", "bar");
    let admin_group = with("", "admin");
    let prefixed = user("prefixed", &[]);
    let prefixed_group = with("", "prefixed");
    run(Case {
        objects: vec![
            cluster_role(
                "non-resource-url-getter",
                vec![rule("get", "", "", "/apis")],
            ),
            cluster_role("non-resource-url", vec![rule("*", "", "", "/apis")]),
            cluster_role(
                "non-resource-url-prefix",
                vec![rule("get", "", "", "/apis/*")],
            ),
            cluster_role_binding(
                "non-resource-url-getter",
                "non-resource-url-getter",
                &["User:foo", "Group:bar"],
            ),
            cluster_role_binding(
                "non-resource-url",
                "non-resource-url",
                &["User:admin", "Group:admin"],
            ),
            cluster_role_binding(
                "non-resource-url-prefix",
                "non-resource-url-prefix",
                &["User:prefixed", "Group:prefixed"],
            ),
        ],
        pass: vec![
            path(&foo, "get", "/apis"),
            path(&bar, "get", "/apis"),
            path(&admin, "get", "/apis"),
            path(&admin_group, "get", "/apis"),
            path(&admin, "watch", "/apis"),
            path(&admin_group, "watch", "/apis"),
            path(&prefixed, "get", "/apis/v1"),
            path(&prefixed_group, "get", "/apis/v1"),
            path(&prefixed, "get", "/apis/v1/foobar"),
            path(&prefixed_group, "get", "/apis/v1/foorbar"),
        ],
        fail: vec![
            path(&foo, "watch", "/apis"),
            path(&bar, "watch", "/apis"),
            path(&foo, "get", "/api/v1"),
            path(&bar, "get", "/api/v1"),
            path(&admin, "get", "/api/v1"),
            path(&admin_group, "get", "/api/v1"),
            path(&prefixed, "get", "/api/v1"),
            path(&prefixed_group, "get", "/api/v1"),
        ],
    });

    run(Case {
        objects: vec![
            cluster_role("admin", vec![rule("*", "*", "pods", "*")]),
            role_binding(
                "ns1",
                "admin",
                "ClusterRole",
                "admin",
                &["User:admin", "Group:admins"],
            ),
        ],
        pass: vec![req(&admin, "get", "", "pods", "ns1", "")],
        fail: vec![req(&admin, "get", "", "pods/status", "ns1", "")],
    });

    run(Case {
        objects: vec![
            cluster_role(
                "admin",
                vec![
                    rule("*", "*", "pods/status", "*"),
                    rule("*", "*", "*/scale", "*"),
                ],
            ),
            role_binding(
                "ns1",
                "admin",
                "ClusterRole",
                "admin",
                &["User:admin", "Group:admins"],
            ),
        ],
        pass: vec![
            req(&admin, "get", "", "pods/status", "ns1", ""),
            req(&admin, "get", "", "pods/scale", "ns1", ""),
            req(&admin, "get", "", "deployments/scale", "ns1", ""),
            req(&admin, "get", "", "anything/scale", "ns1", ""),
        ],
        fail: vec![req(&admin, "get", "", "pods", "ns1", "")],
    });
}

#[test]
fn a_binding_to_a_missing_role_is_reported_in_the_denial() {
    let policy =
        Policy::from_values(&[role_binding("dev", "b", "Role", "gone", &["User:ann"])]).unwrap();
    let ann = authenticated("ann");
    assert_eq!(
        policy.authorize(&req(&ann, "get", "", "pods", "dev", "p")),
        RbacDecision::NoOpinion(r#"RBAC: role.rbac.authorization.k8s.io "gone" not found"#.into())
    );
}

#[tokio::test]
async fn the_authorizer_follows_updates() {
    let authz = RbacAuthorizer::new(bootstrap_with(&[]));
    let vera = authenticated("vera");
    let attrs = req(&vera, "get", "", "pods", "dev", "p");
    assert_eq!(authz.authorize(&attrs).await, Decision::Deny(String::new()));
    let binding = role_binding("dev", "viewers", "ClusterRole", "view", &["User:vera"]);
    let old = authz.snapshot();
    authz.update(|p| p.apply(&binding)).unwrap();
    assert_eq!(authz.authorize(&attrs).await, Decision::Allow);
    assert!(
        !allows(&old, &attrs),
        "a held snapshot does not change under a request"
    );
    authz.update(|p| p.delete(&binding)).unwrap();
    assert_eq!(authz.authorize(&attrs).await, Decision::Deny(String::new()));
}

#[test]
fn rules_for_lists_cluster_and_namespace_rules() {
    let policy = bootstrap_with(&[role_binding(
        "dev",
        "viewers",
        "ClusterRole",
        "view",
        &["User:vera"],
    )]);
    let vera = authenticated("vera");
    let in_dev = policy.rules_for(&vera, "dev");
    assert!(in_dev.errors.is_empty());
    let pods = PolicyRule::resource(&["get"], &[""], &["pods"]);
    assert!(covers(&in_dev.rules, std::slice::from_ref(&pods)).0);
    assert!(
        covers(
            &in_dev.rules,
            &[PolicyRule::non_resource(&["get"], &["/api"])]
        )
        .0,
        "discovery is cluster-wide"
    );
    let in_prod = policy.rules_for(&vera, "prod");
    assert!(!covers(&in_prod.rules, &[pods]).0);
}

// ---- aggregation ----

#[test]
fn aggregation_pulls_labelled_roles_into_admin_edit_view() {
    let mut crontabs = cluster_role(
        "crontab-reader",
        vec![rule("get,list,watch", "stable.example.com", "crontabs", "")],
    );
    crontabs["metadata"]["labels"] = json!({"rbac.authorization.k8s.io/aggregate-to-view": "true"});
    let want = PolicyRule::resource(
        &["get", "list", "watch"],
        &["stable.example.com"],
        &["crontabs"],
    );

    let mut policy = bootstrap_with(&[
        crontabs,
        role_binding("dev", "admins", "ClusterRole", "admin", &["User:ada"]),
    ]);
    let ada = authenticated("ada");
    let attrs = req(&ada, "list", "stable.example.com", "crontabs", "dev", "");
    assert!(
        !allows(&policy, &attrs),
        "not before the aggregated rules are written"
    );
    let updates = policy.aggregate();
    for name in ["view", "edit", "admin"] {
        assert!(
            updates[name].contains(&want),
            "{name} aggregates through view"
        );
    }
    assert!(!updates.contains_key("cluster-admin"));
    assert!(allows(&policy, &attrs));
}

// ---- escalation ----

fn rbac_writer_policy(extra: &[Value]) -> Policy {
    // `role-admin` may write roles and bindings in dev, and read pods there; nothing else.
    let mut objects = vec![
        cluster_role(
            "role-admin",
            vec![
                // Explicit verbs: `*` would include `escalate` and `bind`.
                rule(
                    "get,list,watch,create,update,patch,delete",
                    "rbac.authorization.k8s.io",
                    "roles,rolebindings",
                    "",
                ),
                rule("get,list", "", "pods", ""),
            ],
        ),
        role_binding(
            "dev",
            "role-admin",
            "ClusterRole",
            "role-admin",
            &["User:rita"],
        ),
    ];
    objects.extend_from_slice(extra);
    bootstrap_with(&objects)
}

#[test]
fn creating_a_role_beyond_ones_rights_is_refused() {
    let policy = rbac_writer_policy(&[]);
    let rita = authenticated("rita");
    let ok = role("dev", "pod-reader", vec![rule("get", "", "pods", "")]);
    assert_eq!(check_role_write(&policy, &rita, &ok, None), Ok(()));
    let too_much = role(
        "dev",
        "secret-reader",
        vec![
            rule("get,list", "", "secrets", ""),
            rule("get", "", "pods", ""),
        ],
    );
    let err = check_role_write(&policy, &rita, &too_much, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "roles.rbac.authorization.k8s.io \"secret-reader\" is forbidden: user \"rita\" (groups=[\"system:authenticated\"]) \
         is attempting to grant RBAC permissions not currently held:\n\
         {APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\" \"list\"]}"
    );
    let in_prod = role("prod", "pod-reader", vec![rule("get", "", "pods", "")]);
    assert!(
        check_role_write(&policy, &rita, &in_prod, None).is_err(),
        "rights in dev do not count in prod"
    );
    let root = user("root", &["system:masters"]);
    assert_eq!(check_role_write(&policy, &root, &too_much, None), Ok(()));
}

#[test]
fn the_escalate_verb_allows_granting_more() {
    let policy = rbac_writer_policy(&[
        cluster_role(
            "escalator",
            vec![rule("escalate", "rbac.authorization.k8s.io", "roles", "")],
        ),
        role_binding(
            "dev",
            "escalator",
            "ClusterRole",
            "escalator",
            &["User:rita"],
        ),
    ]);
    let rita = authenticated("rita");
    let too_much = role("dev", "secret-reader", vec![rule("get", "", "secrets", "")]);
    assert_eq!(check_role_write(&policy, &rita, &too_much, None), Ok(()));
    let cluster = cluster_role("secret-reader", vec![rule("get", "", "secrets", "")]);
    assert!(
        check_role_write(&policy, &rita, &cluster, None).is_err(),
        "escalate on roles is not on clusterroles"
    );
}

#[test]
fn binding_needs_the_rights_or_the_bind_verb() {
    let policy = rbac_writer_policy(&[]);
    let rita = authenticated("rita");
    let to_view = role_binding("dev", "v", "ClusterRole", "view", &["User:vic"]);
    let err = check_binding_write(&policy, &rita, &to_view, None).unwrap_err();
    assert!(
        err.to_string().starts_with(
            "rolebindings.rbac.authorization.k8s.io \"v\" is forbidden: user \"rita\" (groups=[\"system:authenticated\"]) \
             is attempting to grant RBAC permissions not currently held:\n"
        ),
        "{err}"
    );
    let to_missing = role_binding("dev", "m", "Role", "nope", &["User:vic"]);
    assert_eq!(
        check_binding_write(&policy, &rita, &to_missing, None)
            .unwrap_err()
            .to_string(),
        r#"rolebindings.rbac.authorization.k8s.io "m" is forbidden: role.rbac.authorization.k8s.io "nope" not found"#
    );

    let mut binder = cluster_role(
        "view-binder",
        vec![rule(
            "bind",
            "rbac.authorization.k8s.io",
            "clusterroles",
            "",
        )],
    );
    binder["rules"][0]["resourceNames"] = json!(["view"]);
    let policy = rbac_writer_policy(&[
        binder,
        role_binding(
            "dev",
            "view-binder",
            "ClusterRole",
            "view-binder",
            &["User:rita"],
        ),
    ]);
    assert_eq!(check_binding_write(&policy, &rita, &to_view, None), Ok(()));
    let to_edit = role_binding("dev", "e", "ClusterRole", "edit", &["User:vic"]);
    assert!(
        check_binding_write(&policy, &rita, &to_edit, None).is_err(),
        "bind is limited to view"
    );
    let cluster_wide = cluster_role_binding("v", "view", &["User:vic"]);
    assert!(
        check_binding_write(&policy, &rita, &cluster_wide, None).is_err(),
        "bind held in dev only"
    );
}

#[test]
fn binding_a_role_one_fully_holds_is_allowed() {
    let policy =
        rbac_writer_policy(&[role("dev", "pod-reader", vec![rule("get", "", "pods", "")])]);
    let rita = authenticated("rita");
    let b = role_binding("dev", "pr", "Role", "pod-reader", &["Group:devs"]);
    assert_eq!(check_binding_write(&policy, &rita, &b, None), Ok(()));
}

#[test]
fn aggregation_rules_need_cluster_admin() {
    let policy = bootstrap_with(&[
        cluster_role(
            "cr-writer",
            vec![rule(
                "get,create,update",
                "rbac.authorization.k8s.io",
                "clusterroles",
                "",
            )],
        ),
        cluster_role_binding("cr-writer", "cr-writer", &["User:rita"]),
    ]);
    let rita = authenticated("rita");
    let mut aggregating = cluster_role("gatherer", vec![]);
    aggregating["aggregationRule"] = json!({"clusterRoleSelectors": [{"matchLabels": {"x": "y"}}]});
    let err = check_role_write(&policy, &rita, &aggregating, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"clusterroles.rbac.authorization.k8s.io "gatherer" is forbidden: must have cluster-admin privileges to use the aggregationRule"#
    );
}

#[test]
fn gc_only_updates_skip_the_escalation_check() {
    let policy = rbac_writer_policy(&[]);
    let rita = authenticated("rita");
    let stored = role("dev", "secret-reader", vec![rule("get", "", "secrets", "")]);
    let mut finalized = stored.clone();
    finalized["metadata"]["finalizers"] = json!(["example.com/cleanup"]);
    assert_eq!(
        check_role_write(&policy, &rita, &finalized, Some(&stored)),
        Ok(())
    );
    let mut widened = stored.clone();
    widened["rules"][0]["verbs"] = json!(["get", "list"]);
    assert!(check_role_write(&policy, &rita, &widened, Some(&stored)).is_err());
}

// ---- upstream's policy_comparator_test.go cases ----

fn rules(list: Vec<Value>) -> Vec<PolicyRule> {
    list.iter().map(|v| decode(v).unwrap()).collect()
}

#[test]
fn upstream_covers_cases() {
    let cases: Vec<(&str, Vec<Value>, Vec<Value>, bool)> = vec![
        (
            "exact match",
            vec![rule("get,list", "", "pods", "")],
            vec![rule("get,list", "", "pods", "")],
            true,
        ),
        (
            "star verb",
            vec![rule("*", "", "pods", "")],
            vec![rule("get,delete", "", "pods", "")],
            true,
        ),
        (
            "star group",
            vec![rule("get", "*", "pods", "")],
            vec![rule("get", "apps,batch", "pods", "")],
            true,
        ),
        (
            "missing verb",
            vec![rule("get", "", "pods", "")],
            vec![rule("get,delete", "", "pods", "")],
            false,
        ),
        (
            "star subresource",
            vec![rule("get", "*", "*/scale", "")],
            vec![rule("get", "apps", "deployments/scale", "")],
            true,
        ),
        (
            "star subresource is not the resource",
            vec![rule("get", "*", "*/scale", "")],
            vec![rule("get", "apps", "deployments", "")],
            false,
        ),
        (
            "url prefix",
            vec![rule("get", "", "", "/foo/*")],
            vec![rule("get", "", "", "/foo/bar,/foo/")],
            true,
        ),
        (
            "url prefix does not cover parent",
            vec![rule("get", "", "", "/foo/*")],
            vec![rule("get", "", "", "/foo")],
            false,
        ),
        (
            "url exact does not cover prefix",
            vec![rule("get", "", "", "/foo/bar")],
            vec![rule("get", "", "", "/foo/*")],
            false,
        ),
        (
            "star url",
            vec![rule("*", "", "", "*")],
            vec![rule("post", "", "", "/anything")],
            true,
        ),
        (
            "resource rule does not cover urls",
            vec![rule("*", "*", "*", "")],
            vec![rule("get", "", "", "/healthz")],
            false,
        ),
        (
            "split across owners",
            vec![rule("get", "", "pods", ""), rule("list", "", "pods", "")],
            vec![rule("get,list", "", "pods", "")],
            true,
        ),
    ];
    for (name, owner, servant, want) in cases {
        assert_eq!(covers(&rules(owner), &rules(servant)).0, want, "{name}");
    }
    let mut named_owner = rule("get", "", "pods", "");
    named_owner["resourceNames"] = json!(["foo"]);
    let mut named_servant = rule("get", "", "pods", "");
    named_servant["resourceNames"] = json!(["foo", "bar"]);
    let (ok, missing) = covers(&rules(vec![named_owner]), &rules(vec![named_servant]));
    assert!(!ok);
    assert_eq!(
        missing,
        vec![PolicyRule::resource(&["get"], &[""], &["pods"]).with_names(&["bar"])]
    );
}

// ---- reconciliation ----

fn with_annotation(mut v: Value, value: &str) -> Value {
    v["metadata"]["annotations"] = json!({"rbac.authorization.kubernetes.io/autoupdate": value});
    v
}

#[test]
fn missing_bootstrap_objects_are_created() {
    let all = bootstrap::objects().unwrap();
    let plan = reconcile_all(&all, |_, _, _| None).unwrap();
    assert_eq!(plan.len(), all.len());
    assert!(plan
        .iter()
        .all(|r| r.operation == Operation::Create && r.to_write().is_some()));
}

#[test]
fn a_reconciled_bootstrap_is_stable() {
    let all = bootstrap::objects().unwrap();
    let plan = reconcile_all(&all, |kind, ns, name| {
        all.iter()
            .find(|v| {
                let o = Object::from_value(v).unwrap();
                o.kind() == kind && o.meta().namespace == ns && o.meta().name == name
            })
            .cloned()
    })
    .unwrap();
    assert!(
        plan.iter().all(|r| r.operation == Operation::None),
        "nothing to write over itself"
    );
}

#[test]
fn reconciliation_adds_missing_rules_and_keeps_user_additions() {
    let expected = with_annotation(
        cluster_role("system:thing", vec![rule("get,list", "", "pods", "")]),
        "true",
    );
    let mut stored = with_annotation(
        cluster_role(
            "system:thing",
            vec![
                rule("get", "", "pods", ""),
                rule("get", "example.com", "widgets", ""),
            ],
        ),
        "true",
    );
    stored["metadata"]["resourceVersion"] = json!("42");
    stored["metadata"]["labels"] = json!({"team": "mine"});
    let r = reconcile(&expected, Some(&stored)).unwrap();
    assert_eq!(r.operation, Operation::Update);
    let written = r.to_write().unwrap();
    assert_eq!(
        rules(written["rules"].as_array().unwrap().clone()),
        vec![
            PolicyRule::resource(&["get"], &[""], &["pods"]),
            PolicyRule::resource(&["get"], &["example.com"], &["widgets"]),
            PolicyRule::resource(&["list"], &[""], &["pods"]),
        ]
    );
    assert_eq!(
        written["metadata"]["resourceVersion"], "42",
        "the stored object is the base"
    );
    assert_eq!(written["metadata"]["labels"]["team"], "mine");
}

#[test]
fn autoupdate_false_is_left_alone() {
    let expected = with_annotation(
        cluster_role("system:thing", vec![rule("get,list", "", "pods", "")]),
        "true",
    );
    let stored = with_annotation(cluster_role("system:thing", vec![]), "false");
    let r = reconcile(&expected, Some(&stored)).unwrap();
    assert!(r.protected);
    assert_eq!(r.to_write(), None);
}

#[test]
fn bindings_gain_missing_subjects_and_are_recreated_on_a_new_role_ref() {
    let expected = with_annotation(
        cluster_role_binding("system:b", "view", &["Group:system:authenticated"]),
        "true",
    );
    let stored = with_annotation(
        cluster_role_binding("system:b", "view", &["User:extra"]),
        "true",
    );
    let r = reconcile(&expected, Some(&stored)).unwrap();
    assert_eq!(r.operation, Operation::Update);
    assert_eq!(
        r.to_write().unwrap()["subjects"],
        subjects(&["User:extra", "Group:system:authenticated"])
    );

    let moved = with_annotation(
        cluster_role_binding("system:b", "edit", &["User:extra"]),
        "true",
    );
    let r = reconcile(&expected, Some(&moved)).unwrap();
    assert_eq!(r.operation, Operation::Recreate);
    assert_eq!(r.to_write(), Some(&expected));
}

#[test]
fn aggregated_bootstrap_roles_keep_their_gathered_rules() {
    let all = bootstrap::cluster_roles().unwrap();
    let expected = all
        .iter()
        .find(|v| v["metadata"]["name"] == "admin")
        .unwrap();
    let mut stored = expected.clone();
    stored["rules"] = json!([rule("get", "", "pods", "")]);
    let r = reconcile(expected, Some(&stored)).unwrap();
    assert_eq!(
        r.operation,
        Operation::None,
        "the controller owns admin's rules"
    );
    let mut unaggregated = stored.clone();
    unaggregated
        .as_object_mut()
        .unwrap()
        .remove("aggregationRule");
    let r = reconcile(expected, Some(&unaggregated)).unwrap();
    assert_eq!(r.operation, Operation::Update);
    assert_eq!(
        r.to_write().unwrap()["aggregationRule"],
        expected["aggregationRule"]
    );
}

// ---- upstream's rule_test.go TestAppliesTo cases ----

#[test]
fn upstream_applies_to_cases() {
    use apiserver::rbac::resolver::applies_to;
    use apiserver::rbac::Subject;
    let first = |subjects: &[Subject], u: &UserInfo, ns: &str| {
        subjects.iter().position(|s| applies_to(u, s, ns))
    };
    let both = [
        Subject::group("system:authenticated"),
        Subject::group("system:unauthenticated"),
    ];
    /// Name, subjects, user, namespace, index of the first subject that applies.
    type Case<'a> = (&'a str, Vec<Subject>, UserInfo, &'a str, Option<usize>);
    let cases: Vec<Case> = vec![
        (
            "single subject that matches username",
            vec![Subject::user("foobar")],
            user("foobar", &[]),
            "",
            Some(0),
        ),
        (
            "multiple subjects, one that matches username",
            vec![Subject::user("barfoo"), Subject::user("foobar")],
            user("foobar", &[]),
            "",
            Some(1),
        ),
        (
            "multiple subjects, none that match username",
            vec![Subject::user("barfoo"), Subject::user("foobar")],
            user("zimzam", &[]),
            "",
            None,
        ),
        (
            "multiple subjects, one that match group",
            vec![Subject::user("barfoo"), Subject::group("foobar")],
            user("zimzam", &["foobar"]),
            "",
            Some(1),
        ),
        (
            "multiple subjects, one that match group, should ignore namespace",
            vec![Subject::user("barfoo"), Subject::group("foobar")],
            user("zimzam", &["foobar"]),
            "namespace1",
            Some(1),
        ),
        (
            "multiple subjects with a service account that matches",
            vec![
                Subject::user("barfoo"),
                Subject::group("foobar"),
                Subject::service_account("kube-system", "default"),
            ],
            user("system:serviceaccount:kube-system:default", &[]),
            "default",
            Some(2),
        ),
        (
            "* user subject name doesn't match all users",
            vec![Subject::user("*")],
            user("foobar", &[]),
            "default",
            None,
        ),
        (
            "binding to all authenticated and unauthenticated subjects matches authenticated user",
            both.to_vec(),
            user("foobar", &["system:authenticated"]),
            "default",
            Some(0),
        ),
        (
            "binding to all authenticated and unauthenticated subjects matches anonymous user",
            both.to_vec(),
            user("system:anonymous", &["system:unauthenticated"]),
            "default",
            Some(1),
        ),
    ];
    for (name, subjects, u, ns, want) in cases {
        assert_eq!(first(&subjects, &u, ns), want, "{name}");
    }
}
