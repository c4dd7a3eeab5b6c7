//! Reading an image tarball without unpacking it: one pass records where each file's bytes are,
//! then files are read in place (seek + take). A gzip-compressed tarball (`docker save | gzip`)
//! is first decompressed to an unnamed temporary file.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::ImportError;

/// Where one file's bytes are inside the tarball.
#[derive(Debug, Clone, Copy)]
struct Span {
    offset: u64,
    size: u64,
}

#[derive(Debug)]
pub struct Archive {
    path: PathBuf,
    file: File,
    files: HashMap<String, Span>,
    /// Symbolic and hard links, resolved on lookup (docker save links duplicate layers).
    links: HashMap<String, String>,
}

/// The largest JSON document (index, manifest, config) read into memory.
const MAX_JSON: u64 = 64 << 20;

impl Archive {
    pub fn open(path: &Path) -> Result<Archive, ImportError> {
        let bad = |reason: String| ImportError::NotAnArchive {
            file: path.to_path_buf(),
            reason,
        };
        let mut file = File::open(path).map_err(|e| ImportError::Io {
            what: format!("cannot open {}", path.display()),
            error: e,
        })?;
        let mut magic = [0u8; 2];
        let n = read_fully(&mut file, &mut magic).map_err(|e| bad(e.to_string()))?;
        file.seek(SeekFrom::Start(0))
            .map_err(|e| bad(e.to_string()))?;
        if n == 2 && magic == [0x1f, 0x8b] {
            let mut plain = tempfile::tempfile().map_err(|e| ImportError::Io {
                what: "cannot create a temporary file to decompress into".into(),
                error: e,
            })?;
            let mut gz = flate2::read::GzDecoder::new(BufReader::new(file));
            std::io::copy(&mut gz, &mut plain).map_err(|e| {
                bad(format!(
                    "it is gzip-compressed but does not decompress: {e}"
                ))
            })?;
            plain
                .seek(SeekFrom::Start(0))
                .map_err(|e| bad(e.to_string()))?;
            file = plain;
        }
        let (files, links) = index(&mut file).map_err(bad)?;
        if files.is_empty() {
            return Err(bad("it holds no files".into()));
        }
        Ok(Archive {
            path: path.to_path_buf(),
            file,
            files,
            links,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn resolve<'a>(&'a self, name: &'a str) -> Option<(&'a str, Span)> {
        let mut name = normalize(name);
        for _ in 0..16 {
            if let Some(span) = self.files.get(&name) {
                let key = self.files.get_key_value(&name).map(|(k, _)| k.as_str())?;
                return Some((key, *span));
            }
            name = self.links.get(&name)?.clone();
        }
        None
    }

    pub fn contains(&self, name: &str) -> bool {
        self.resolve(name).is_some()
    }

    pub fn size(&self, name: &str) -> Option<u64> {
        self.resolve(name).map(|(_, s)| s.size)
    }

    /// A whole (small) file: index.json, manifest.json, a manifest or a config.
    pub fn read(&self, name: &str) -> Result<Vec<u8>, ImportError> {
        let size = self.size(name).ok_or_else(|| self.missing(name))?;
        if size > MAX_JSON {
            return Err(ImportError::Invalid(format!(
                "{name} in {} is {size} bytes, too large for an image document",
                self.path.display()
            )));
        }
        let mut buf = Vec::with_capacity(size as usize);
        self.reader(name)?
            .read_to_end(&mut buf)
            .map_err(|e| self.io(name, e))?;
        Ok(buf)
    }

    /// A reader over one file's bytes.
    pub fn reader(&self, name: &str) -> Result<impl Read + '_, ImportError> {
        let (_, span) = self.resolve(name).ok_or_else(|| self.missing(name))?;
        let mut file = self.file.try_clone().map_err(|e| self.io(name, e))?;
        file.seek(SeekFrom::Start(span.offset))
            .map_err(|e| self.io(name, e))?;
        Ok(BufReader::with_capacity(1 << 20, file.take(span.size)))
    }

    fn missing(&self, name: &str) -> ImportError {
        ImportError::Invalid(format!(
            "{} refers to {name}, which is not in the archive",
            self.path.display()
        ))
    }

    fn io(&self, name: &str, e: std::io::Error) -> ImportError {
        ImportError::Io {
            what: format!("cannot read {name} from {}", self.path.display()),
            error: e,
        }
    }
}

type Index = (HashMap<String, Span>, HashMap<String, String>);

fn index(file: &mut File) -> Result<Index, String> {
    let mut files = HashMap::new();
    let mut links = HashMap::new();
    let mut archive = tar::Archive::new(BufReader::new(&*file));
    let entries = archive
        .entries()
        .map_err(|e| format!("it is not a tar archive ({e})"))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("it is not a tar archive ({e})"))?;
        let path = entry
            .path()
            .map_err(|e| format!("it has an unreadable file name ({e})"))?;
        let name = normalize(&path.to_string_lossy());
        let kind = entry.header().entry_type();
        if kind.is_file() {
            let span = Span {
                offset: entry.raw_file_position(),
                size: entry.size(),
            };
            files.insert(name, span);
        } else if kind.is_symlink() || kind.is_hard_link() {
            let Ok(Some(target)) = entry.link_name() else {
                continue;
            };
            let target = target.to_string_lossy().into_owned();
            let resolved = if kind.is_symlink() && !target.starts_with('/') {
                let dir = Path::new(&name).parent().unwrap_or(Path::new(""));
                normalize(&dir.join(&target).to_string_lossy())
            } else {
                normalize(&target)
            };
            links.insert(name, resolved);
        }
    }
    Ok((files, links))
}

/// `./a/../b//c` → `b/c`.
fn normalize(name: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

fn read_fully(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalized() {
        assert_eq!(normalize("./blobs/sha256/ab"), "blobs/sha256/ab");
        assert_eq!(normalize("a/../b//c"), "b/c");
    }

    #[test]
    fn reads_files_and_follows_links() {
        let dir = tempfile::tempdir().unwrap();
        let tar_path = dir.path().join("t.tar");
        let mut builder = tar::Builder::new(File::create(&tar_path).unwrap());
        let mut header = tar::Header::new_gnu();
        header.set_size(5);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, "./x/layer.tar", &b"hello"[..])
            .unwrap();
        let mut link = tar::Header::new_gnu();
        link.set_entry_type(tar::EntryType::Symlink);
        link.set_size(0);
        builder
            .append_link(&mut link, "y/layer.tar", "../x/layer.tar")
            .unwrap();
        builder.finish().unwrap();
        drop(builder);
        let archive = Archive::open(&tar_path).unwrap();
        assert_eq!(archive.read("x/layer.tar").unwrap(), b"hello");
        assert_eq!(archive.read("y/layer.tar").unwrap(), b"hello");
        assert!(!archive.contains("z"));
    }

    #[test]
    fn garbage_is_not_an_archive() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.tar");
        std::fs::write(&path, b"this is not a tarball at all").unwrap();
        let err = Archive::open(&path).unwrap_err();
        assert!(matches!(err, ImportError::NotAnArchive { .. }), "{err}");
    }
}
