//! hostPath type checks, with upstream's messages (pkg/volume/hostpath `checkTypeInternal`).

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::SetUpError;

/// Checks (and for the `...OrCreate` types creates) `path` as `type_` says; an empty or absent
/// type checks nothing.
pub(crate) fn check_type(path: &Path, type_: Option<&str>) -> Result<(), SetUpError> {
    let shown = path.display();
    let failed = |what: &str| {
        SetUpError::Message(format!("hostPath type check failed: {shown} is not {what}"))
    };
    let meta = fs::metadata(path).ok();
    let ft = meta.as_ref().map(|m| m.file_type());
    let is = |f: fn(&fs::FileType) -> bool| ft.as_ref().is_some_and(f);
    match type_.unwrap_or("") {
        "" => Ok(()),
        "DirectoryOrCreate" if meta.is_none() => {
            make_dir(path).map_err(SetUpError::io(format!("cannot create directory {shown}")))
        }
        "DirectoryOrCreate" | "Directory" if is(fs::FileType::is_dir) => Ok(()),
        "DirectoryOrCreate" | "Directory" => Err(failed("a directory")),
        "FileOrCreate" if meta.is_none() => {
            make_file(path).map_err(SetUpError::io(format!("cannot create file {shown}")))
        }
        "FileOrCreate" | "File" if is(fs::FileType::is_file) => Ok(()),
        "FileOrCreate" | "File" => Err(failed("a file")),
        "Socket" if is(FileTypeExt::is_socket) => Ok(()),
        "Socket" => Err(failed("a socket file")),
        "CharDevice" if is(FileTypeExt::is_char_device) => Ok(()),
        "CharDevice" => Err(failed("a character device")),
        "BlockDevice" if is(FileTypeExt::is_block_device) => Ok(()),
        "BlockDevice" => Err(failed("a block device")),
        other => Err(SetUpError::Message(format!(
            "{other} is an invalid volume type"
        ))),
    }
}

/// Upstream's `MakeDir`: the path and its parents, 0755.
fn make_dir(path: &Path) -> io::Result<()> {
    fs::create_dir_all(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
}

/// Upstream's `MakeFile`: an empty 0644 file (its parent must exist).
fn make_file(path: &Path) -> io::Result<()> {
    fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o644)
        .open(path)
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_as_upstream() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs::write(&file, "x").unwrap();
        assert!(check_type(dir.path(), Some("Directory")).is_ok());
        let e = check_type(&file, Some("Directory"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            format!(
                "hostPath type check failed: {} is not a directory",
                file.display()
            )
        );
        let e = check_type(dir.path(), Some("File"))
            .unwrap_err()
            .to_string();
        assert!(e.ends_with("is not a file"), "{e}");
        assert!(check_type(&file, Some("Socket"))
            .unwrap_err()
            .to_string()
            .ends_with("is not a socket file"));
        let made = dir.path().join("a/b");
        check_type(&made, Some("DirectoryOrCreate")).unwrap();
        assert!(made.is_dir());
        let created = dir.path().join("new");
        check_type(&created, Some("FileOrCreate")).unwrap();
        assert!(created.is_file());
        assert_eq!(
            check_type(&file, Some("Bogus")).unwrap_err().to_string(),
            "Bogus is an invalid volume type"
        );
    }
}
