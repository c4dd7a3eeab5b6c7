//! What a run of [`crate::ensure`] or [`crate::refresh`] changed on disk. Every change is logged
//! as it is recorded, so renewals show up in the server log even if the caller ignores the report.

use std::fmt;
use std::path::{Path, PathBuf};

/// What happened to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The file did not exist and was written.
    Created,
    /// A certificate was re-issued, for the given reason (expiring, refresh requested, ...).
    Renewed { reason: String },
    /// A derived file (kubeconfig, public key) was rewritten because its inputs changed.
    Updated,
}

/// One file written by a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub path: PathBuf,
    pub action: Action,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        match &self.action {
            Action::Created => write!(f, "created {path}"),
            Action::Renewed { reason } => write!(f, "renewed {path} ({reason})"),
            Action::Updated => write!(f, "updated {path}"),
        }
    }
}

/// Files a run wrote and the problems it noticed but did not fix (an expiring CA, ...).
/// Empty when everything on disk was already in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnsureReport {
    pub changes: Vec<Change>,
    pub warnings: Vec<String>,
}

impl EnsureReport {
    /// True when nothing was written.
    pub fn is_unchanged(&self) -> bool {
        self.changes.is_empty()
    }

    pub(crate) fn created(&mut self, path: &Path) {
        tracing::info!(path = %path.display(), "created");
        self.push(path, Action::Created);
    }

    pub(crate) fn renewed(&mut self, path: &Path, reason: String) {
        tracing::info!(path = %path.display(), %reason, "certificate renewed");
        self.push(path, Action::Renewed { reason });
    }

    pub(crate) fn updated(&mut self, path: &Path) {
        tracing::info!(path = %path.display(), "updated");
        self.push(path, Action::Updated);
    }

    pub(crate) fn warn(&mut self, message: String) {
        tracing::warn!("{message}");
        self.warnings.push(message);
    }

    fn push(&mut self, path: &Path, action: Action) {
        self.changes.push(Change {
            path: path.to_path_buf(),
            action,
        });
    }
}
