//! What a pod's disk-backed emptyDir volumes hold, which upstream counts in a pod's
//! ephemeral-storage use (`podLocalEphemeralStorageUsage`: containers' rootfs and logs plus
//! local volumes); the stats summary has the first two. Memory-backed emptyDirs (tmpfs, another
//! filesystem) are not counted: they are memory.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::layout::Layout;
use crate::volumes::EMPTY_DIR;

/// Bytes and inodes under the pod's emptyDir volumes on the data dir's filesystem.
pub fn usage(layout: &Layout, pod_uid: &str) -> (u64, u64) {
    let dir = layout.pod_dir(pod_uid).join("volumes").join(EMPTY_DIR);
    let Ok(meta) = std::fs::symlink_metadata(&dir) else {
        return (0, 0);
    };
    let mut total = (0, 0);
    walk(&dir, meta.dev(), &mut total, 0);
    total
}

/// Sums allocated bytes (as du) and inodes, never leaving the device nor following links.
fn walk(dir: &Path, dev: u64, total: &mut (u64, u64), depth: usize) {
    // Deep trees are the pod's business; the bound keeps a hostile one from stalling the loop.
    if depth > 64 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        if meta.dev() != dev {
            continue;
        }
        total.0 += meta.blocks() * 512;
        total.1 += 1;
        if meta.is_dir() {
            walk(&entry.path(), dev, total, depth + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_files_under_the_empty_dirs() {
        let root = tempfile::tempdir().unwrap();
        let layout = Layout::new(root.path());
        let vol = layout.volume_dir("uid1", EMPTY_DIR, "cache");
        std::fs::create_dir_all(vol.join("sub")).unwrap();
        std::fs::write(vol.join("sub/f"), vec![1u8; 64 * 1024]).unwrap();
        let (bytes, inodes) = usage(&layout, "uid1");
        assert!(bytes >= 64 * 1024, "{bytes}");
        assert_eq!(inodes, 3, "cache, sub, f");
        assert_eq!(usage(&layout, "other"), (0, 0));
    }
}
