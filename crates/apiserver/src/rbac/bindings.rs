//! The bindings of one scope (cluster-wide, or one namespace), indexed by subject.
//!
//! Upstream walks every binding on every request. With thousands of bindings that walk is most
//! of RBAC's cost, so bindings are also indexed by the user name and group names their subjects
//! grant to; a request only looks at the bindings naming the user or one of its groups. The
//! candidates are visited in binding-name order, exactly the order (and so exactly the reason
//! text) of a full walk in name order.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::objects::{Binding, Subject};
use crate::authn::UserInfo;

#[derive(Debug, Clone, Default)]
pub struct Bindings {
    by_name: BTreeMap<String, Binding>,
    /// `u:<user name>` / `g:<group>` → names of bindings with such a subject.
    by_subject: HashMap<String, BTreeSet<String>>,
}

/// The index key a subject grants to. Service accounts are users named
/// `system:serviceaccount:NS:NAME`; one without a namespace takes the binding's (and in a
/// ClusterRoleBinding, where there is none, applies to no one). Other kinds apply to no one.
fn subject_key(subject: &Subject, binding_namespace: &str) -> Option<String> {
    match subject.kind.as_str() {
        "User" => Some(format!("u:{}", subject.name)),
        "Group" => Some(format!("g:{}", subject.name)),
        "ServiceAccount" => {
            let ns = if subject.namespace.is_empty() {
                binding_namespace
            } else {
                &subject.namespace
            };
            (!ns.is_empty()).then(|| format!("u:system:serviceaccount:{ns}:{}", subject.name))
        }
        _ => None,
    }
}

impl Bindings {
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    pub fn insert(&mut self, binding: Binding) {
        let name = binding.metadata.name.clone();
        self.remove(&name);
        for key in keys(&binding) {
            self.by_subject.entry(key).or_default().insert(name.clone());
        }
        self.by_name.insert(name, binding);
    }

    pub fn remove(&mut self, name: &str) {
        let Some(old) = self.by_name.remove(name) else {
            return;
        };
        for key in keys(&old) {
            if let Some(names) = self.by_subject.get_mut(&key) {
                names.remove(name);
                if names.is_empty() {
                    self.by_subject.remove(&key);
                }
            }
        }
    }

    /// The bindings that may apply to `user`, in name order.
    pub fn candidates<'a>(&'a self, user: &UserInfo) -> impl Iterator<Item = &'a Binding> + 'a {
        let mut names: BTreeSet<&'a str> = BTreeSet::new();
        let groups = user.groups.iter().map(|g| format!("g:{g}"));
        for key in std::iter::once(format!("u:{}", user.name)).chain(groups) {
            if let Some(found) = self.by_subject.get(&key) {
                names.extend(found.iter().map(String::as_str));
            }
        }
        names.into_iter().filter_map(|n| self.by_name.get(n))
    }
}

fn keys(binding: &Binding) -> BTreeSet<String> {
    let ns = &binding.metadata.namespace;
    binding
        .subjects
        .iter()
        .filter_map(|s| subject_key(s, ns))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rbac::objects::{Meta, RoleRef};

    fn binding(name: &str, ns: &str, subjects: Vec<Subject>) -> Binding {
        Binding {
            metadata: Meta {
                name: name.into(),
                namespace: ns.into(),
                ..Default::default()
            },
            role_ref: RoleRef::cluster_role("view"),
            subjects,
        }
    }

    fn names(b: &Bindings, user: &UserInfo) -> Vec<String> {
        b.candidates(user)
            .map(|b| b.metadata.name.clone())
            .collect()
    }

    #[test]
    fn candidates_follow_inserts_and_removals() {
        let mut b = Bindings::default();
        b.insert(binding("z", "dev", vec![Subject::group("devs")]));
        b.insert(binding(
            "a",
            "dev",
            vec![Subject::user("ann"), Subject::group("devs")],
        ));
        b.insert(binding(
            "sa",
            "dev",
            vec![Subject::service_account("", "builder")],
        ));
        let ann = UserInfo {
            name: "ann".into(),
            uid: String::new(),
            groups: vec!["devs".into()],
            extra: Default::default(),
        };
        assert_eq!(names(&b, &ann), ["a", "z"]);
        let builder = UserInfo {
            name: "system:serviceaccount:dev:builder".into(),
            uid: String::new(),
            groups: vec![],
            extra: Default::default(),
        };
        assert_eq!(names(&b, &builder), ["sa"]);
        b.insert(binding("a", "dev", vec![Subject::user("bob")]));
        assert_eq!(
            names(&b, &ann),
            ["z"],
            "a replaced binding loses its old subjects"
        );
        b.remove("z");
        assert!(names(&b, &ann).is_empty());
        assert!(
            b.by_subject.keys().all(|k| k != "g:devs"),
            "empty index entries are dropped"
        );
    }
}
