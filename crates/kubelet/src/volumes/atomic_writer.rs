//! Upstream's atomic writer (pkg/volume/util/atomic_writer.go): a volume's files live in a
//! timestamped directory `..<time>.<random>`; `..data` is a symlink to the current one and each
//! top-level name the user sees is a symlink through `..data`. A new version is written into a
//! new directory and published by renaming `..data_tmp` over `..data`, one atomic step, so a
//! reader sees the old files or the new ones, never a mix. Unchanged payloads write nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path};

use super::SetUpError;

const DATA_DIR: &str = "..data";
const NEW_DATA_DIR: &str = "..data_tmp";

/// One file of a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileProjection {
    pub(crate) data: Vec<u8>,
    pub(crate) mode: u32,
}

/// Relative path in the volume → content.
pub(crate) type Payload = BTreeMap<String, FileProjection>;

/// With `fs_group`, every file and directory is owned by that group and group-readable (upstream's
/// `SetVolumeOwnership` on these read-only volumes: mode |= 0440, directories setgid).
pub(crate) fn write(
    target: &Path,
    payload: &Payload,
    fs_group: Option<u32>,
) -> Result<(), SetUpError> {
    for path in payload.keys() {
        validate_path(path)?;
    }
    let grouped;
    let payload = match fs_group {
        None => payload,
        Some(_) => {
            grouped = payload
                .iter()
                .map(|(k, f)| {
                    let mode = f.mode | 0o440;
                    (
                        k.clone(),
                        FileProjection {
                            data: f.data.clone(),
                            mode,
                        },
                    )
                })
                .collect::<Payload>();
            &grouped
        }
    };
    let io = |what: &str| SetUpError::io(format!("{what} in {}", target.display()));
    let old = fs::read_link(target.join(DATA_DIR)).ok();
    let unchanged = match &old {
        Some(old) => same_content(&target.join(old), payload, fs_group).map_err(io("compare"))?,
        None => false,
    };
    if !unchanged {
        let dir = new_timestamped_dir(target).map_err(io("create the data directory"))?;
        write_payload(&target.join(&dir), payload, fs_group).map_err(io("write the payload"))?;
        let tmp = target.join(NEW_DATA_DIR);
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&dir, &tmp).map_err(io("symlink ..data_tmp"))?;
        fs::rename(&tmp, target.join(DATA_DIR)).map_err(io("publish ..data"))?;
    }
    let visible: BTreeSet<String> = payload.keys().map(|p| top_level(p).to_string()).collect();
    link_user_visible(target, &visible).map_err(io("link the visible files"))?;
    remove_stale(target, &visible).map_err(io("remove old files"))?;
    if !unchanged {
        if let Some(old) = old {
            let _ = fs::remove_dir_all(target.join(old));
        }
    }
    Ok(())
}

/// Upstream's `validatePath`: relative, no `..` element, not starting with `..`.
fn validate_path(path: &str) -> Result<(), SetUpError> {
    let invalid = |why: &str| SetUpError::Message(format!("invalid path {path:?}: {why}"));
    if path.is_empty() {
        return Err(invalid("empty"));
    }
    if Path::new(path).is_absolute() {
        return Err(invalid("must be relative path"));
    }
    if path.starts_with("..") {
        return Err(invalid("must not start with '..'"));
    }
    if Path::new(path)
        .components()
        .any(|c| matches!(c, Component::ParentDir))
    {
        return Err(invalid("must not contain '..'"));
    }
    Ok(())
}

fn top_level(path: &str) -> &str {
    path.split('/').find(|s| !s.is_empty()).unwrap_or(path)
}

/// Whether the published directory holds exactly `payload` (content and mode).
fn same_content(dir: &Path, payload: &Payload, fs_group: Option<u32>) -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let mut on_disk = BTreeSet::new();
    list_files(dir, dir, &mut on_disk)?;
    if on_disk.len() != payload.len() || payload.keys().any(|k| !on_disk.contains(k)) {
        return Ok(false);
    }
    for (path, file) in payload {
        let p = dir.join(path);
        let meta = fs::symlink_metadata(&p)?;
        let mode = meta.permissions().mode() & 0o7777;
        let group_ok = fs_group.is_none_or(|gid| meta.gid() == gid);
        if mode != file.mode || !group_ok || fs::read(&p)? != file.data {
            return Ok(false);
        }
    }
    Ok(true)
}

fn list_files(root: &Path, dir: &Path, out: &mut BTreeSet<String>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            list_files(root, &path, out)?;
        } else if let Ok(rel) = path.strip_prefix(root) {
            out.insert(rel.to_string_lossy().into_owned());
        }
    }
    Ok(())
}

/// `..2006_01_02_15_04_05.<random>`, 0755, as upstream's `ioutil.TempDir` naming.
fn new_timestamped_dir(target: &Path) -> io::Result<String> {
    let stamp = k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y_%m_%d_%H_%M_%S")
        .to_string();
    for _ in 0..100 {
        let name = format!("..{stamp}.{}", rand::random::<u32>());
        match fs::create_dir(target.join(&name)) {
            Ok(()) => {
                fs::set_permissions(target.join(&name), fs::Permissions::from_mode(0o755))?;
                return Ok(name);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other("no free name for a timestamped directory"))
}

fn write_payload(dir: &Path, payload: &Payload, fs_group: Option<u32>) -> io::Result<()> {
    for (path, file) in payload {
        let p = dir.join(path);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(&p, &file.data)?;
        fs::set_permissions(&p, fs::Permissions::from_mode(file.mode))?;
    }
    if let Some(gid) = fs_group {
        group_own(dir, gid)?;
    }
    Ok(())
}

/// Gives the timestamped directory and everything in it to `gid`; directories setgid.
fn group_own(path: &Path, gid: u32) -> io::Result<()> {
    std::os::unix::fs::chown(path, None, Some(gid))?;
    if fs::symlink_metadata(path)?.is_dir() {
        fs::set_permissions(path, fs::Permissions::from_mode(0o2755))?;
        for entry in fs::read_dir(path)? {
            group_own(&entry?.path(), gid)?;
        }
    }
    Ok(())
}

/// `name -> ..data/name` for every top-level name (a nested path's first element).
fn link_user_visible(target: &Path, names: &BTreeSet<String>) -> io::Result<()> {
    for name in names {
        let link = target.join(name);
        let want = Path::new(DATA_DIR).join(name);
        match fs::read_link(&link) {
            Ok(current) if current == want => continue,
            Ok(_) => fs::remove_file(&link)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            // Not a symlink: something upstream would never have put there; replace it.
            Err(_) => remove_any(&link)?,
        }
        std::os::unix::fs::symlink(&want, &link)?;
    }
    Ok(())
}

/// Visible names of an older version that the new payload no longer has.
fn remove_stale(target: &Path, names: &BTreeSet<String>) -> io::Result<()> {
    for entry in fs::read_dir(target)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("..") || names.contains(&name) {
            continue;
        }
        remove_any(&entry.path())?;
    }
    Ok(())
}

fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path)?.is_dir() {
        true => fs::remove_dir_all(path),
        false => fs::remove_file(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(data: &str, mode: u32) -> FileProjection {
        FileProjection {
            data: data.as_bytes().to_vec(),
            mode,
        }
    }

    #[test]
    fn publishes_through_data_and_replaces_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let mut payload = Payload::new();
        payload.insert("a".into(), file("1", 0o644));
        payload.insert("sub/b".into(), file("2", 0o400));
        write(dir.path(), &payload, None).unwrap();
        let first = fs::read_link(dir.path().join(DATA_DIR)).unwrap();
        assert_eq!(
            fs::read_link(dir.path().join("a")).unwrap(),
            Path::new("..data/a")
        );
        assert_eq!(fs::read_to_string(dir.path().join("sub/b")).unwrap(), "2");
        // Unchanged: nothing rewritten.
        write(dir.path(), &payload, None).unwrap();
        assert_eq!(fs::read_link(dir.path().join(DATA_DIR)).unwrap(), first);
        // Changed: a new directory, the old one and the dropped name gone.
        payload.remove("sub/b");
        payload.insert("a".into(), file("3", 0o644));
        write(dir.path(), &payload, None).unwrap();
        let second = fs::read_link(dir.path().join(DATA_DIR)).unwrap();
        assert_ne!(first, second);
        assert!(!dir.path().join(&first).exists());
        assert!(fs::symlink_metadata(dir.path().join("sub")).is_err());
        assert_eq!(fs::read_to_string(dir.path().join("a")).unwrap(), "3");
    }

    #[test]
    fn refuses_escaping_paths() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["/etc/x", "../x", "a/../../x", "..data"] {
            let mut payload = Payload::new();
            payload.insert(bad.into(), file("x", 0o644));
            assert!(write(dir.path(), &payload, None).is_err(), "{bad}");
        }
    }
}
