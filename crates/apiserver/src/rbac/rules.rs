//! What a single rule allows, and whether one set of rules covers another.
//!
//! Matching follows upstream's `RuleAllows` and the `*Matches` helpers of
//! `pkg/apis/rbac/v1/evaluation_helpers.go`; covering follows `policy_comparator.go` and
//! `policy_compact.go` of `pkg/registry/rbac/validation`, because the escalation message lists
//! the missing rules in exactly upstream's broken-down-then-compacted form.

use std::collections::{BTreeSet, HashMap};

use super::objects::{PolicyRule, ALL};

/// The parts of a request a rule is matched against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request<'a> {
    pub verb: &'a str,
    /// True for API objects; false for paths such as `/healthz`.
    pub resource_request: bool,
    pub api_group: &'a str,
    pub resource: &'a str,
    pub subresource: &'a str,
    pub name: &'a str,
    pub path: &'a str,
}

impl<'a> Request<'a> {
    pub fn from_attributes(attrs: &'a crate::authz::Attributes) -> Self {
        Request {
            verb: &attrs.verb,
            resource_request: attrs.resource_request,
            api_group: &attrs.api_group,
            resource: &attrs.resource,
            subresource: &attrs.subresource,
            name: &attrs.name,
            path: &attrs.path,
        }
    }
}

/// Upstream's `RuleAllows`.
pub fn rule_allows(rule: &PolicyRule, req: &Request) -> bool {
    if !verb_matches(rule, req.verb) {
        return false;
    }
    if !req.resource_request {
        return non_resource_url_matches(rule, req.path);
    }
    api_group_matches(rule, req.api_group)
        && resource_matches(rule, req.resource, req.subresource)
        && resource_name_matches(rule, req.name)
}

fn verb_matches(rule: &PolicyRule, verb: &str) -> bool {
    rule.verbs.iter().any(|v| v == ALL || v == verb)
}

fn api_group_matches(rule: &PolicyRule, group: &str) -> bool {
    rule.api_groups.iter().any(|g| g == ALL || g == group)
}

/// A rule names `resource`, `resource/subresource` or `*/subresource` (upstream compares with
/// the joined `resource/subresource`; this compares the halves to avoid building it per rule).
fn resource_matches(rule: &PolicyRule, resource: &str, subresource: &str) -> bool {
    rule.resources.iter().any(|r| {
        if r == ALL {
            return true;
        }
        if subresource.is_empty() {
            return r == resource;
        }
        r.split_once('/')
            .is_some_and(|(res, sub)| sub == subresource && (res == resource || res == ALL))
    })
}

/// A rule without names applies to every name; one with names never to a nameless request
/// (list, create without a name), as upstream.
fn resource_name_matches(rule: &PolicyRule, name: &str) -> bool {
    rule.resource_names.is_empty() || rule.resource_names.iter().any(|n| n == name)
}

fn non_resource_url_matches(rule: &PolicyRule, path: &str) -> bool {
    rule.non_resource_urls.iter().any(|u| url_covers(u, path))
}

/// `*` alone matches everything; a trailing `*` is a prefix match; otherwise exact.
fn url_covers(owner: &str, path: &str) -> bool {
    owner == ALL || owner == path || prefix_covers(owner, path)
}

/// Upstream's `Covers`: whether `owner` grants everything `servant` does, and if not, the
/// uncovered pieces (each with at most one group, resource, verb and name).
pub fn covers(owner: &[PolicyRule], servant: &[PolicyRule]) -> (bool, Vec<PolicyRule>) {
    let uncovered: Vec<PolicyRule> = servant
        .iter()
        .flat_map(breakdown)
        .filter(|sub| !owner.iter().any(|o| rule_covers(o, sub)))
        .collect();
    (uncovered.is_empty(), uncovered)
}

/// Upstream's `BreakdownRule`: one rule per group × resource × verb (× name), and per
/// non-resource URL × verb.
pub fn breakdown(rule: &PolicyRule) -> Vec<PolicyRule> {
    let mut out = Vec::new();
    for group in &rule.api_groups {
        for resource in &rule.resources {
            for verb in &rule.verbs {
                let base = PolicyRule {
                    verbs: vec![verb.clone()],
                    api_groups: vec![group.clone()],
                    resources: vec![resource.clone()],
                    ..Default::default()
                };
                if rule.resource_names.is_empty() {
                    out.push(base);
                    continue;
                }
                for name in &rule.resource_names {
                    out.push(PolicyRule {
                        resource_names: vec![name.clone()],
                        ..base.clone()
                    });
                }
            }
        }
    }
    for url in &rule.non_resource_urls {
        for verb in &rule.verbs {
            out.push(PolicyRule::non_resource(&[verb], &[url]));
        }
    }
    out
}

fn has(set: &[String], item: &str) -> bool {
    set.iter().any(|s| s == item)
}

fn has_all(set: &[String], items: &[String]) -> bool {
    items.iter().all(|i| has(set, i))
}

fn resources_cover_all(owner: &[String], wanted: &[String]) -> bool {
    if has(owner, ALL) || has_all(owner, wanted) {
        return true;
    }
    wanted.iter().all(|path| {
        has(owner, path)
            || path
                .split_once('/')
                .is_some_and(|(_, sub)| has(owner, &format!("*/{sub}")))
    })
}

fn urls_cover_all(owner: &[String], wanted: &[String]) -> bool {
    wanted
        .iter()
        .all(|path| owner.iter().any(|o| o == path || prefix_covers(o, path)))
}

/// A trailing `*` (upstream trims every trailing `*`) makes the rest a prefix.
fn prefix_covers(owner: &str, path: &str) -> bool {
    owner.ends_with('*') && path.starts_with(owner.trim_end_matches('*'))
}

/// Upstream's `ruleCovers`: `sub` comes from [`breakdown`], so it has at most one of each.
fn rule_covers(owner: &PolicyRule, sub: &PolicyRule) -> bool {
    let verbs = has(&owner.verbs, ALL) || has_all(&owner.verbs, &sub.verbs);
    let groups = has(&owner.api_groups, ALL) || has_all(&owner.api_groups, &sub.api_groups);
    let resources = resources_cover_all(&owner.resources, &sub.resources);
    let urls = urls_cover_all(&owner.non_resource_urls, &sub.non_resource_urls);
    let names = if sub.resource_names.is_empty() {
        owner.resource_names.is_empty()
    } else {
        owner.resource_names.is_empty() || has_all(&owner.resource_names, &sub.resource_names)
    };
    verbs && groups && resources && urls && names
}

/// Upstream's `CompactRules`: merges the verbs of rules naming one group, one resource and at
/// most one name, so the escalation message lists `Verbs:["get" "list"]` once per resource.
pub fn compact(rules: &[PolicyRule]) -> Vec<PolicyRule> {
    let mut out = Vec::new();
    let mut simple: HashMap<(String, String, Option<String>), usize> = HashMap::new();
    for rule in rules {
        let Some(key) = simple_key(rule) else {
            out.push(rule.clone());
            continue;
        };
        match simple.get(&key) {
            Some(&i) => merge_verbs(&mut out[i], &rule.verbs),
            None => {
                simple.insert(key, out.len());
                out.push(rule.clone());
            }
        }
    }
    out
}

fn simple_key(rule: &PolicyRule) -> Option<(String, String, Option<String>)> {
    let simple = rule.resource_names.len() <= 1
        && rule.non_resource_urls.is_empty()
        && rule.api_groups.len() == 1
        && rule.resources.len() == 1;
    simple.then(|| {
        (
            rule.api_groups[0].clone(),
            rule.resources[0].clone(),
            rule.resource_names.first().cloned(),
        )
    })
}

fn merge_verbs(into: &mut PolicyRule, verbs: &[String]) {
    for verb in verbs {
        if !has(&into.verbs, verb) {
            into.verbs.push(verb.clone());
        }
    }
}

/// Upstream's `CompactString`: `{APIGroups:[""], Resources:["pods"], Verbs:["get"]}`.
pub fn compact_string(rule: &PolicyRule) -> String {
    let fields = [
        ("APIGroups", &rule.api_groups),
        ("Resources", &rule.resources),
        ("NonResourceURLs", &rule.non_resource_urls),
        ("ResourceNames", &rule.resource_names),
        ("Verbs", &rule.verbs),
    ];
    let parts: Vec<String> = fields
        .iter()
        .filter(|(_, values)| !values.is_empty())
        .map(|(label, values)| format!("{label}:{}", go_quote_list(values)))
        .collect();
    format!("{{{}}}", parts.join(", "))
}

/// Go's `%q` of a `[]string`: `["a" "b"]`.
pub fn go_quote_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| go_quote(s)).collect();
    format!("[{}]", quoted.join(" "))
}

/// Go's `%q` of a string (`strconv.Quote`), for the characters names can hold.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The sorted, de-duplicated descriptions of `rules` after compaction (`sets.String.List()`).
pub fn describe_missing(rules: &[PolicyRule]) -> Vec<String> {
    let set: BTreeSet<String> = compact(rules).iter().map(compact_string).collect();
    set.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res<'a>(
        verb: &'a str,
        group: &'a str,
        resource: &'a str,
        sub: &'a str,
        name: &'a str,
    ) -> Request<'a> {
        Request {
            verb,
            resource_request: true,
            api_group: group,
            resource,
            subresource: sub,
            name,
            path: "",
        }
    }

    fn url<'a>(verb: &'a str, path: &'a str) -> Request<'a> {
        Request {
            verb,
            path,
            ..Default::default()
        }
    }

    #[test]
    fn stars_match_everything() {
        let rule = PolicyRule::resource(&["*"], &["*"], &["*"]);
        assert!(rule_allows(
            &rule,
            &res("delete", "apps", "deployments", "scale", "x")
        ));
        assert!(
            !rule_allows(&rule, &url("get", "/healthz")),
            "resource rules never match paths"
        );
    }

    #[test]
    fn subresources_need_naming() {
        let pods = PolicyRule::resource(&["get"], &[""], &["pods"]);
        assert!(rule_allows(&pods, &res("get", "", "pods", "", "p")));
        assert!(!rule_allows(&pods, &res("get", "", "pods", "log", "p")));
        let log = PolicyRule::resource(&["get"], &[""], &["pods/log"]);
        assert!(rule_allows(&log, &res("get", "", "pods", "log", "p")));
        assert!(!rule_allows(&log, &res("get", "", "pods", "", "p")));
        let any_scale = PolicyRule::resource(&["get"], &["*"], &["*/scale"]);
        assert!(rule_allows(
            &any_scale,
            &res("get", "apps", "deployments", "scale", "d")
        ));
        assert!(!rule_allows(
            &any_scale,
            &res("get", "apps", "deployments", "status", "d")
        ));
        assert!(!rule_allows(
            &any_scale,
            &res("get", "apps", "deployments", "", "d")
        ));
    }

    #[test]
    fn resource_names_exclude_nameless_requests() {
        let rule =
            PolicyRule::resource(&["get", "list"], &[""], &["configmaps"]).with_names(&["a"]);
        assert!(rule_allows(&rule, &res("get", "", "configmaps", "", "a")));
        assert!(!rule_allows(&rule, &res("get", "", "configmaps", "", "b")));
        assert!(!rule_allows(&rule, &res("list", "", "configmaps", "", "")));
    }

    #[test]
    fn non_resource_urls() {
        let rule = PolicyRule::non_resource(&["get"], &["/healthz", "/api/*"]);
        assert!(rule_allows(&rule, &url("get", "/healthz")));
        assert!(!rule_allows(&rule, &url("get", "/healthz/etcd")));
        assert!(rule_allows(&rule, &url("get", "/api/v1")));
        assert!(rule_allows(&rule, &url("get", "/api/")));
        assert!(!rule_allows(&rule, &url("get", "/api")));
        assert!(!rule_allows(&rule, &url("post", "/healthz")));
        let all = PolicyRule::non_resource(&["*"], &["*"]);
        assert!(rule_allows(&all, &url("post", "/anything")));
    }

    #[test]
    fn covers_finds_the_missing_pieces() {
        let owner = vec![PolicyRule::resource(
            &["get", "list"],
            &[""],
            &["pods", "*/status"],
        )];
        let ok = vec![PolicyRule::resource(
            &["get"],
            &[""],
            &["pods", "nodes/status"],
        )];
        assert!(covers(&owner, &ok).0);
        let want = vec![PolicyRule::resource(
            &["get", "delete"],
            &[""],
            &["pods", "secrets"],
        )];
        let (covered, missing) = covers(&owner, &want);
        assert!(!covered);
        assert_eq!(
            describe_missing(&missing),
            vec![
                r#"{APIGroups:[""], Resources:["pods"], Verbs:["delete"]}"#.to_string(),
                r#"{APIGroups:[""], Resources:["secrets"], Verbs:["get" "delete"]}"#.to_string(),
            ]
        );
    }

    #[test]
    fn names_cover_only_names() {
        let named = vec![PolicyRule::resource(&["get"], &[""], &["secrets"]).with_names(&["a"])];
        let all = vec![PolicyRule::resource(&["get"], &[""], &["secrets"])];
        assert!(!covers(&named, &all).0);
        assert!(covers(&all, &named).0);
        let url_owner = vec![PolicyRule::non_resource(&["get"], &["/api/*"])];
        assert!(
            covers(
                &url_owner,
                &[PolicyRule::non_resource(&["get"], &["/api/v1"])]
            )
            .0
        );
        assert!(
            !covers(
                &url_owner,
                &[PolicyRule::non_resource(&["get"], &["/apis"])]
            )
            .0
        );
    }

    #[test]
    fn quoting_is_gos() {
        assert_eq!(go_quote("a\"b\\c\n"), r#""a\"b\\c\n""#);
        assert_eq!(go_quote_list(&["x".into(), "".into()]), r#"["x" ""]"#);
    }
}
