//! The static token file (`known_tokens.csv`) and the legacy static password file
//! (`basic_auth.csv`), in the formats of the upstream API server's `--token-auth-file` and
//! `--basic-auth-file`: `secret,user,uid[,"group1,group2"]`. krust writes them once with random
//! secrets and the API server reads them with [`read_token_file`] / [`read_basic_auth_file`].

use std::path::Path;

use rand::distr::Alphanumeric;
use rand::Rng;

use crate::report::EnsureReport;
use crate::{files, PkiError};

/// One line of known_tokens.csv.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenEntry {
    pub token: String,
    pub user: String,
    pub uid: String,
    pub groups: Vec<String>,
}

/// One line of basic_auth.csv.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordEntry {
    pub password: String,
    pub user: String,
    pub uid: String,
    pub groups: Vec<String>,
}

/// The identities that get a token: (user, uid, groups). The uids are MicroK8s's.
fn token_identities(node_name: &str) -> Vec<(String, &'static str, &'static str)> {
    vec![
        ("admin".into(), "admin", "system:masters"),
        ("system:kube-proxy".into(), "kube-proxy", ""),
        (
            format!("system:node:{node_name}"),
            "kubelet-0",
            "system:nodes",
        ),
        ("system:kube-scheduler".into(), "scheduler", ""),
        ("system:kube-controller-manager".into(), "controller", ""),
    ]
}

/// Writes known_tokens.csv with fresh random tokens unless it exists.
pub fn ensure_token_file(
    path: &Path,
    node_name: &str,
    report: &mut EnsureReport,
) -> Result<(), PkiError> {
    if path.exists() {
        return files::restrict_mode(path, files::SECRET);
    }
    let lines: Vec<String> = token_identities(node_name)
        .iter()
        .map(|(user, uid, groups)| line(&random_secret(), user, uid, groups))
        .collect();
    files::write(path, lines.concat().as_bytes(), files::SECRET)?;
    report.created(path);
    Ok(())
}

/// Writes basic_auth.csv with a random admin password when enabled and missing. When disabled an
/// existing file is left alone (the API server simply does not read it).
pub fn ensure_basic_auth(
    path: &Path,
    enabled: bool,
    report: &mut EnsureReport,
) -> Result<(), PkiError> {
    if !enabled {
        return Ok(());
    }
    if path.exists() {
        return files::restrict_mode(path, files::SECRET);
    }
    let content = line(&random_secret(), "admin", "admin", "system:masters");
    files::write(path, content.as_bytes(), files::SECRET)?;
    report.created(path);
    Ok(())
}

fn line(secret: &str, user: &str, uid: &str, groups: &str) -> String {
    if groups.is_empty() {
        format!("{secret},{user},{uid}\n")
    } else {
        format!("{secret},{user},{uid},\"{groups}\"\n")
    }
}

/// 32 random alphanumerics (~190 bits) from the thread-local CSPRNG.
fn random_secret() -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

/// Parses a static token file.
pub fn read_token_file(path: &Path) -> Result<Vec<TokenEntry>, PkiError> {
    Ok(read_records(path)?
        .into_iter()
        .map(|[token, user, uid, groups]| TokenEntry {
            token,
            user,
            uid,
            groups: split_groups(&groups),
        })
        .collect())
}

/// Parses a static password file.
pub fn read_basic_auth_file(path: &Path) -> Result<Vec<PasswordEntry>, PkiError> {
    Ok(read_records(path)?
        .into_iter()
        .map(|[password, user, uid, groups]| PasswordEntry {
            password,
            user,
            uid,
            groups: split_groups(&groups),
        })
        .collect())
}

fn split_groups(groups: &str) -> Vec<String> {
    groups
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(str::to_string)
        .collect()
}

/// Records as `[secret, user, uid, groups]` (groups empty when absent). Like the upstream reader,
/// a record needs at least three fields and extra fields after the fourth are ignored; `#` lines
/// are comments and blank secrets are an error rather than a way to log in with nothing.
fn read_records(path: &Path) -> Result<Vec<[String; 4]>, PkiError> {
    let text = files::read_opt(path)?.ok_or_else(|| {
        PkiError::io(
            "read",
            path,
            std::io::Error::from(std::io::ErrorKind::NotFound),
        )
    })?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_reader(text.as_bytes());
    let mut out = Vec::new();
    for (idx, record) in reader.records().enumerate() {
        let bad = |reason: String| PkiError::CredentialsFile {
            path: path.to_path_buf(),
            record: idx + 1,
            reason,
        };
        let record = record.map_err(|e| bad(e.to_string()))?;
        let field = |i: usize| record.get(i).unwrap_or("").to_string();
        if record.len() < 3 {
            return Err(bad(format!(
                "expected at least 3 fields (secret,user,uid), found {}",
                record.len()
            )));
        }
        if field(0).is_empty() || field(1).is_empty() {
            return Err(bad("the secret and the user name must not be empty".into()));
        }
        out.push([field(0), field(1), field(2), field(3)]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_token_file_reads_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("known_tokens.csv");
        let mut report = EnsureReport::default();
        ensure_token_file(&path, "node1", &mut report).expect("write");
        let entries = read_token_file(&path).expect("read");
        assert_eq!(entries.len(), 5);
        assert_eq!(entries[0].user, "admin");
        assert_eq!(entries[0].groups, vec!["system:masters"]);
        assert_eq!(entries[2].user, "system:node:node1");
        assert!(entries[1].groups.is_empty());
        assert!(entries.iter().all(|e| e.token.len() == 32));
    }

    #[test]
    fn parses_quoted_groups_and_rejects_short_records() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("basic_auth.csv");
        std::fs::write(&path, "# comment\npw,alice,1001,\"dev, ops\"\n").expect("write");
        let entries = read_basic_auth_file(&path).expect("read");
        assert_eq!(entries[0].password, "pw");
        assert_eq!(entries[0].groups, vec!["dev", "ops"]);
        std::fs::write(&path, "pw,alice\n").expect("write");
        let err = read_basic_auth_file(&path).expect_err("short");
        assert!(err.to_string().contains("record 1"), "{err}");
    }

    #[test]
    fn basic_auth_only_when_enabled() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("basic_auth.csv");
        let mut report = EnsureReport::default();
        ensure_basic_auth(&path, false, &mut report).expect("disabled");
        assert!(!path.exists());
        ensure_basic_auth(&path, true, &mut report).expect("enabled");
        assert_eq!(read_basic_auth_file(&path).expect("read")[0].user, "admin");
    }
}
