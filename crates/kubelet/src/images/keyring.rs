//! Registry credentials from image pull secrets, matched to an image as upstream's credential
//! keyring does (pkg/credentialprovider: `BasicDockerKeyring`, `MakeDockerKeyring`):
//!
//! - a `kubernetes.io/dockerconfigjson` secret's `.dockerconfigjson` (`{"auths": {...}}`) and a
//!   `kubernetes.io/dockercfg` secret's `.dockercfg` (the map itself) are read; any other type is
//!   ignored, and all the pod's secrets make one keyring;
//! - a key is a schemeless URL (`https://` and `http://` dropped, `/v1/` and `/v2/` path prefixes
//!   dropped): `host[:port][/path]`; keys are tried longest first (reverse sorted), so a
//!   credential for `quay.io/team` is tried before one for `quay.io`;
//! - a key matches an image's repository when the ports are equal, the host has as many dot
//!   separated parts as the image's and each part matches as a glob (`*.example.com`), and the
//!   key's path is a prefix of the image's path;
//! - an image of the default registry (`busybox`, `docker.io/...`) falls back to the key
//!   `index.docker.io` (what `https://index.docker.io/v1/` becomes).
//!
//! Each credential is handed to CRI PullImage in turn; with none, the pull is anonymous.

use base64::Engine;
use serde_json::Value;

use crate::cri::api;

#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("{0}")]
    Invalid(String),
}

/// The credentials of the pull secrets, by schemeless key, longest key first.
#[derive(Debug, Default, Clone)]
pub struct Keyring {
    entries: Vec<(String, Vec<api::AuthConfig>)>,
}

/// One pull secret as the keyring reads it.
pub struct PullSecret<'a> {
    pub type_: &'a str,
    pub data: &'a std::collections::BTreeMap<String, Vec<u8>>,
}

impl Keyring {
    /// The keyring of a pod's pull secrets. A secret that does not parse fails the pull, as
    /// upstream's `MakeDockerKeyring` does.
    pub fn from_secrets(secrets: &[PullSecret<'_>]) -> Result<Keyring, KeyringError> {
        let mut keyring = Keyring::default();
        for s in secrets {
            let (key, nested) = match s.type_ {
                "kubernetes.io/dockerconfigjson" => (".dockerconfigjson", true),
                "kubernetes.io/dockercfg" => (".dockercfg", false),
                _ => continue,
            };
            let Some(bytes) = s.data.get(key).filter(|b| !b.is_empty()) else {
                continue;
            };
            let config: Value = serde_json::from_slice(bytes)
                .map_err(|e| KeyringError::Invalid(format!("invalid {key}: {e}")))?;
            let auths = if nested { &config["auths"] } else { &config };
            if let Some(auths) = auths.as_object() {
                for (location, entry) in auths {
                    keyring.add(location, entry)?;
                }
            }
        }
        keyring.entries.sort_by(|a, b| b.0.cmp(&a.0));
        Ok(keyring)
    }

    fn add(&mut self, location: &str, entry: &Value) -> Result<(), KeyringError> {
        let Some(key) = key_of(location) else {
            tracing::warn!(entry = location, "invalid docker config entry, ignored");
            return Ok(());
        };
        let credential = credential(entry)?;
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some((_, list)) => list.push(credential),
            None => self.entries.push((key, vec![credential])),
        }
        Ok(())
    }

    /// The credentials for `image`, in the order to try them (empty: pull anonymously).
    pub fn lookup(&self, image: &str) -> Vec<api::AuthConfig> {
        let repo = repository(image);
        let found: Vec<_> = self
            .entries
            .iter()
            .filter(|(key, _)| urls_match(key, &repo))
            .flat_map(|(_, list)| list.iter().cloned())
            .collect();
        if !found.is_empty() || !is_default_registry(&repo) {
            return found;
        }
        self.entries
            .iter()
            .find(|(k, _)| k == "index.docker.io")
            .map(|(_, list)| list.clone())
            .unwrap_or_default()
    }
}

/// A docker config entry's credential: `username`/`password`, overridden by `auth`
/// (base64 of `user:password`) when that is set.
fn credential(entry: &Value) -> Result<api::AuthConfig, KeyringError> {
    let text = |k: &str| entry[k].as_str().unwrap_or("").to_string();
    let (mut username, mut password) = (text("username"), text("password"));
    let auth = text("auth");
    if !auth.is_empty() {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.as_bytes())
            .map_err(|e| KeyringError::Invalid(format!("invalid auth: {e}")))?;
        let decoded = String::from_utf8_lossy(&decoded).into_owned();
        let (u, p) = decoded.split_once(':').ok_or_else(|| {
            KeyringError::Invalid(
                "unable to parse auth field, must be formatted as base64(username:password)".into(),
            )
        })?;
        username = u.to_string();
        password = p.trim_matches('\0').to_string();
    }
    Ok(api::AuthConfig {
        username,
        password,
        // The runtime compares a set server address with the registry host it pulls from;
        // upstream leaves it empty, so the keyring alone decides where a credential goes.
        ..Default::default()
    })
}

/// A docker config key as the keyring indexes it: without scheme, `/v1/`-`/v2/` prefix or a
/// lone `/`.
fn key_of(location: &str) -> Option<String> {
    let rest = location
        .strip_prefix("https://")
        .or_else(|| location.strip_prefix("http://"))
        .unwrap_or(location);
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return None;
    }
    // `/v2/x` and `/v1/x` are `/x`, as the docker client takes them.
    let path = if path.starts_with("/v2/") || path.starts_with("/v1/") {
        &path[3..]
    } else {
        path
    };
    let path = path.split(['?', '#']).next().unwrap_or("");
    Some(if path.is_empty() || path == "/" {
        host.to_string()
    } else {
        format!("{host}{path}")
    })
}

/// The repository an image names, normalized (`busybox:1` → `docker.io/library/busybox`).
fn repository(image: &str) -> String {
    let full = super::normalize_reference(image).unwrap_or_else(|_| image.to_string());
    let name = full.split('@').next().unwrap_or(&full);
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    match name[last_slash..].find(':') {
        Some(colon) => name[..last_slash + colon].to_string(),
        None => name.to_string(),
    }
}

/// Upstream's `isDefaultRegistryMatch`: the image lives on Docker Hub.
fn is_default_registry(repo: &str) -> bool {
    match repo.split_once('/') {
        None => !repo.is_empty(),
        Some(("", _)) => false,
        Some((first, _)) => {
            first == "docker.io" || first == "index.docker.io" || !first.contains(['.', ':'])
        }
    }
}

/// (host parts, port, path) of a schemeless URL.
fn split_url(url: &str) -> (Vec<&str>, &str, &str) {
    let (authority, path) = match url.find('/') {
        Some(i) => (&url[..i], &url[i..]),
        None => (url, ""),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()) => (h, p),
        _ => (authority, ""),
    };
    (host.split('.').collect(), port, path)
}

/// Upstream's `URLsMatch`: same port, same number of host parts each matching as a glob, and
/// the key's path a prefix of the target's.
fn urls_match(key: &str, target: &str) -> bool {
    let (key_parts, key_port, key_path) = split_url(key);
    let (parts, port, path) = split_url(target);
    key_port == port
        && key_parts.len() == parts.len()
        && path.starts_with(key_path)
        && key_parts
            .iter()
            .zip(&parts)
            .all(|(glob, part)| glob_match(glob.as_bytes(), part.as_bytes()))
}

/// Go's `filepath.Match` for one host part: `*` any run, `?` one character, `[...]` a class
/// (ranges, `^` negation), `\` escapes.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.first() {
        None => text.is_empty(),
        Some(b'*') => (0..=text.len()).any(|i| glob_match(&pattern[1..], &text[i..])),
        Some(b'?') => !text.is_empty() && glob_match(&pattern[1..], &text[1..]),
        Some(b'[') => {
            let Some((&c, rest)) = text.split_first() else {
                return false;
            };
            match class(&pattern[1..], c) {
                Some((true, after)) => glob_match(after, rest),
                _ => false,
            }
        }
        Some(b'\\') if pattern.len() > 1 => {
            text.first() == Some(&pattern[1]) && glob_match(&pattern[2..], &text[1..])
        }
        Some(&p) => text.first() == Some(&p) && glob_match(&pattern[1..], &text[1..]),
    }
}

/// Whether `c` is in the class starting at `pattern` (just after `[`), and the pattern after the
/// closing `]`; `None` for a malformed class (no match, as Go's ErrBadPattern).
fn class(pattern: &[u8], c: u8) -> Option<(bool, &[u8])> {
    let (negated, mut p) = match pattern.first() {
        Some(b'^') => (true, &pattern[1..]),
        _ => (false, pattern),
    };
    let mut matched = false;
    let mut first = true;
    loop {
        match p.first()? {
            b']' if !first => return Some((matched != negated, &p[1..])),
            _ => {}
        }
        first = false;
        let lo = *p.first()?;
        p = &p[1..];
        if p.first() == Some(&b'-') && p.get(1).is_some_and(|&b| b != b']') {
            let hi = p[1];
            p = &p[2..];
            matched |= lo <= c && c <= hi;
        } else {
            matched |= lo == c;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use serde_json::json;

    fn keyring(secrets: &[(&str, &str, Value)]) -> Keyring {
        let data: Vec<BTreeMap<String, Vec<u8>>> = secrets
            .iter()
            .map(|(_, key, v)| BTreeMap::from([(key.to_string(), v.to_string().into_bytes())]))
            .collect();
        let secrets: Vec<PullSecret> = secrets
            .iter()
            .zip(&data)
            .map(|((t, _, _), data)| PullSecret { type_: t, data })
            .collect();
        Keyring::from_secrets(&secrets).unwrap()
    }

    fn users(k: &Keyring, image: &str) -> Vec<String> {
        k.lookup(image).into_iter().map(|a| a.username).collect()
    }

    const JSON: &str = "kubernetes.io/dockerconfigjson";

    #[test]
    fn keys_as_upstream_indexes_them() {
        assert_eq!(
            key_of("https://index.docker.io/v1/").as_deref(),
            Some("index.docker.io")
        );
        assert_eq!(key_of("registry:5000").as_deref(), Some("registry:5000"));
        assert_eq!(
            key_of("http://quay.io/v2/team").as_deref(),
            Some("quay.io/team")
        );
        assert_eq!(key_of("quay.io/").as_deref(), Some("quay.io"));
        assert_eq!(repository("busybox"), "docker.io/library/busybox");
        assert_eq!(repository("127.0.0.1:5000/a/b:tag"), "127.0.0.1:5000/a/b");
        assert_eq!(repository("quay.io/a/b@sha256:abcd"), "quay.io/a/b");
    }

    #[test]
    fn hosts_ports_paths_and_globs() {
        let auth = base64::engine::general_purpose::STANDARD.encode("hub:pw");
        let k = keyring(&[(
            JSON,
            ".dockerconfigjson",
            json!({"auths": {
                "https://index.docker.io/v1/": {"auth": auth},
                "registry.example.com:5000": {"username": "port", "password": "p"},
                "*.example.com": {"username": "glob", "password": "p"},
                "quay.io/team": {"username": "team", "password": "p"},
                "quay.io": {"username": "quay", "password": "p"},
            }}),
        )]);
        assert_eq!(users(&k, "busybox:1.36"), ["hub"]);
        assert_eq!(users(&k, "docker.io/library/busybox"), ["hub"]);
        assert_eq!(users(&k, "registry.example.com:5000/a/b:1"), ["port"]);
        // No port in the key: not for a registry on another port.
        assert!(users(&k, "other.example.com:5000/a").is_empty());
        assert_eq!(users(&k, "other.example.com/a"), ["glob"]);
        // A glob part matches one host part only.
        assert!(users(&k, "a.b.example.com/x").is_empty());
        // Longer keys first.
        assert_eq!(users(&k, "quay.io/team/app"), ["team", "quay"]);
        assert_eq!(users(&k, "quay.io/other/app"), ["quay"]);
        assert!(users(&k, "ghcr.io/x/y").is_empty());
        let hub = &k.lookup("busybox")[0];
        assert_eq!(
            (hub.password.as_str(), hub.server_address.as_str()),
            ("pw", "")
        );
    }

    #[test]
    fn secret_types_and_dockercfg() {
        let k = keyring(&[
            (
                "kubernetes.io/dockercfg",
                ".dockercfg",
                json!({"quay.io": {"username": "old", "password": "w"}}),
            ),
            // Opaque secrets are not pull secrets, whatever they hold.
            (
                "Opaque",
                ".dockerconfigjson",
                json!({"auths": {"quay.io": {"username": "opaque", "password": "w"}}}),
            ),
            (
                JSON,
                ".dockerconfigjson",
                json!({"auths": {"quay.io": {"username": "new", "password": "w"}}}),
            ),
        ]);
        assert_eq!(users(&k, "quay.io/a/b"), ["old", "new"]);
        let bad = BTreeMap::from([(".dockerconfigjson".to_string(), b"{".to_vec())]);
        assert!(Keyring::from_secrets(&[PullSecret {
            type_: JSON,
            data: &bad
        }])
        .is_err());
    }

    #[test]
    fn globs_as_go_filepath_match() {
        let m = |p: &str, t: &str| glob_match(p.as_bytes(), t.as_bytes());
        assert!(m("*", "anything"));
        assert!(m("reg?", "reg1"));
        assert!(!m("reg?", "reg"));
        assert!(m("r[a-c]g", "rbg"));
        assert!(!m("r[^a-c]g", "rbg"));
        assert!(m("127", "127"));
        assert!(!m("12[", "12a"));
    }
}
