//! What an image tarball holds, as the blobs to put into containerd's content store (each with
//! the garbage-collection labels containerd's own import sets), the layer chains to unpack, and
//! the names to register. Pure reading: nothing here talks to containerd.

use std::collections::{BTreeMap, HashSet};
use std::io::Read;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::archive::Archive;
use super::reference;
use super::ImportError;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// The snapshotter krust's containerd unpacks into.
pub const SNAPSHOTTER: &str = "overlayfs";

/// An OCI content descriptor.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Index {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

#[derive(Debug, Deserialize)]
struct Manifest {
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

#[derive(Debug, Default, Deserialize)]
struct ImageConfig {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
    #[serde(default)]
    rootfs: RootFs,
}

#[derive(Debug, Default, Deserialize)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
}

/// Where a blob's bytes come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A file inside the tarball.
    Archive(String),
    /// Made here (a docker-archive image's manifest).
    Bytes(Vec<u8>),
}

#[derive(Debug, Clone)]
pub struct Blob {
    pub digest: String,
    pub size: u64,
    /// "layer", "config", "manifest" or "index", for progress messages.
    pub kind: &'static str,
    pub source: Source,
    /// Labels containerd's garbage collector follows (`containerd.io/gc.ref.*`) and the layer's
    /// uncompressed digest.
    pub labels: BTreeMap<String, String>,
}

/// One image's layers, to unpack into the snapshotter in order.
#[derive(Debug, Clone)]
pub struct Unpack {
    pub layers: Vec<Descriptor>,
    pub diff_ids: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Named {
    pub name: String,
    pub target: Descriptor,
}

#[derive(Debug, Default)]
pub struct Plan {
    /// Leaves first: layers and configs, then manifests, then indexes.
    pub blobs: Vec<Blob>,
    pub unpacks: Vec<Unpack>,
    pub images: Vec<Named>,
}

impl Plan {
    pub fn total_bytes(&self) -> u64 {
        self.blobs.iter().map(|b| b.size).sum()
    }
}

/// The platform this machine runs, in OCI's words.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    }
}

pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// containerd's chain ID of a layer stack (the snapshot name of its top layer).
pub fn chain_id(diff_ids: &[String]) -> String {
    let mut chain = String::new();
    for (i, diff_id) in diff_ids.iter().enumerate() {
        chain = if i == 0 {
            diff_id.clone()
        } else {
            sha256_digest(format!("{chain} {diff_id}").as_bytes())
        };
    }
    chain
}

/// Reads the tarball's layout: an OCI image layout (`index.json`) or a docker archive
/// (`manifest.json`), preferring the OCI layout when both are there (as newer `docker save`
/// writes).
pub fn plan(archive: &Archive) -> Result<Plan, ImportError> {
    if archive.contains("index.json") {
        oci(archive)
    } else if archive.contains("manifest.json") {
        docker(archive)
    } else {
        Err(ImportError::NotAnArchive {
            file: archive.path().to_path_buf(),
            reason:
                "it has neither index.json (an OCI image layout) nor manifest.json (docker save)"
                    .into(),
        })
    }
}

fn json<T: serde::de::DeserializeOwned>(
    archive: &Archive,
    bytes: &[u8],
    what: &str,
) -> Result<T, ImportError> {
    serde_json::from_slice(bytes).map_err(|e| {
        ImportError::Invalid(format!(
            "{what} in {} is not valid: {e}",
            archive.path().display()
        ))
    })
}

fn blob_path(digest: &str) -> Result<String, ImportError> {
    match digest.split_once(':') {
        Some((alg, hex))
            if !alg.is_empty()
                && !hex.is_empty()
                && hex.chars().all(|c| c.is_ascii_alphanumeric()) =>
        {
            Ok(format!("blobs/{alg}/{hex}"))
        }
        _ => Err(ImportError::Invalid(format!("bad digest {digest:?}"))),
    }
}

struct Builder<'a> {
    archive: &'a Archive,
    plan: Plan,
    seen: HashSet<String>,
    /// Platforms of the manifests seen, for the error when none is this machine's.
    platforms: Vec<String>,
}

fn oci(archive: &Archive) -> Result<Plan, ImportError> {
    let index: Index = json(archive, &archive.read("index.json")?, "index.json")?;
    if index.manifests.is_empty() {
        return Err(ImportError::Invalid(format!(
            "index.json in {} lists no images",
            archive.path().display()
        )));
    }
    let mut b = Builder {
        archive,
        plan: Plan::default(),
        seen: HashSet::new(),
        platforms: Vec::new(),
    };
    for desc in &index.manifests {
        b.visit(desc)?;
        let mut target = desc.clone();
        target.platform = None;
        let name = oci_name(&desc.annotations)
            .map(|n| reference::normalize(&n))
            .transpose()
            .map_err(ImportError::Invalid)?;
        b.name(name, target, desc)?;
    }
    b.finish()
}

/// The name an OCI index entry gives: containerd's full-name annotation, or the OCI ref name
/// when it is a full reference (a bare tag like `latest` names no repository).
fn oci_name(annotations: &BTreeMap<String, String>) -> Option<String> {
    if let Some(name) = annotations.get("io.containerd.image.name") {
        return Some(name.clone());
    }
    let refname = annotations.get("org.opencontainers.image.ref.name")?;
    refname.contains('/').then(|| refname.clone())
}

impl Builder<'_> {
    fn visit(&mut self, desc: &Descriptor) -> Result<(), ImportError> {
        if !self.seen.insert(desc.digest.clone()) {
            return Ok(());
        }
        let path = blob_path(&desc.digest)?;
        match desc.media_type.as_str() {
            OCI_INDEX | DOCKER_MANIFEST_LIST => {
                let bytes = self.archive.read(&path)?;
                let index: Index = json(self.archive, &bytes, &path)?;
                let mut labels = BTreeMap::new();
                for (i, child) in index.manifests.iter().enumerate() {
                    // Other platforms' manifests are often left out of an archive.
                    if !self.archive.contains(&blob_path(&child.digest)?) {
                        continue;
                    }
                    self.visit(child)?;
                    labels.insert(
                        format!("containerd.io/gc.ref.content.m.{i}"),
                        child.digest.clone(),
                    );
                }
                self.push(desc, "index", Source::Archive(path), labels)?;
            }
            OCI_MANIFEST | DOCKER_MANIFEST => {
                let bytes = self.archive.read(&path)?;
                let manifest: Manifest = json(self.archive, &bytes, &path)?;
                let labels = self.manifest(&manifest)?;
                self.push(desc, "manifest", Source::Archive(path), labels)?;
            }
            other => {
                return Err(ImportError::Invalid(format!(
                    "{} lists {} of type {other:?}, which is not an image manifest or index",
                    self.archive.path().display(),
                    desc.digest
                )))
            }
        }
        Ok(())
    }

    /// Adds a manifest's config and layers; returns the manifest's own labels.
    fn manifest(&mut self, manifest: &Manifest) -> Result<BTreeMap<String, String>, ImportError> {
        let config_path = blob_path(&manifest.config.digest)?;
        let config_bytes = self.archive.read(&config_path)?;
        let config: ImageConfig = json(self.archive, &config_bytes, &config_path)?;
        let layers: Vec<(Descriptor, Source)> = manifest
            .layers
            .iter()
            .map(|l| Ok((l.clone(), Source::Archive(blob_path(&l.digest)?))))
            .collect::<Result<_, ImportError>>()?;
        self.image(
            manifest.config.clone(),
            &config,
            Source::Archive(config_path),
            layers,
        )
    }

    /// Adds one image's config and layers (and the unpack when it is this machine's platform);
    /// returns the labels its manifest carries.
    fn image(
        &mut self,
        config_desc: Descriptor,
        config: &ImageConfig,
        config_source: Source,
        layers: Vec<(Descriptor, Source)>,
    ) -> Result<BTreeMap<String, String>, ImportError> {
        if config.rootfs.diff_ids.len() != layers.len() {
            return Err(ImportError::Invalid(format!(
                "image config {} lists {} layers but its manifest {}",
                config_desc.digest,
                config.rootfs.diff_ids.len(),
                layers.len()
            )));
        }
        let mut manifest_labels = BTreeMap::new();
        manifest_labels.insert(
            "containerd.io/gc.ref.content.config".to_string(),
            config_desc.digest.clone(),
        );
        for (i, ((layer, source), diff_id)) in
            layers.iter().zip(&config.rootfs.diff_ids).enumerate()
        {
            manifest_labels.insert(
                format!("containerd.io/gc.ref.content.l.{i}"),
                layer.digest.clone(),
            );
            let mut labels = BTreeMap::new();
            labels.insert("containerd.io/uncompressed".to_string(), diff_id.clone());
            self.push(layer, "layer", source.clone(), labels)?;
        }
        let platform = format!("{}/{}", config.os, config.architecture);
        let ours = (config.os.is_empty() || config.os == "linux")
            && (config.architecture.is_empty() || config.architecture == host_arch());
        let mut config_labels = BTreeMap::new();
        if ours {
            // The snapshot chain belongs to the image: the collector keeps it while the config is kept.
            config_labels.insert(
                format!("containerd.io/gc.ref.snapshot.{SNAPSHOTTER}"),
                chain_id(&config.rootfs.diff_ids),
            );
            self.plan.unpacks.push(Unpack {
                layers: layers.into_iter().map(|(d, _)| d).collect(),
                diff_ids: config.rootfs.diff_ids.clone(),
            });
        }
        self.platforms.push(platform);
        self.push(&config_desc, "config", config_source, config_labels)?;
        Ok(manifest_labels)
    }

    fn push(
        &mut self,
        desc: &Descriptor,
        kind: &'static str,
        source: Source,
        labels: BTreeMap<String, String>,
    ) -> Result<(), ImportError> {
        if let Source::Archive(path) = &source {
            let size = self.archive.size(path).ok_or_else(|| {
                ImportError::Invalid(format!(
                    "{} lacks the {kind} {} its manifest lists",
                    self.archive.path().display(),
                    desc.digest
                ))
            })?;
            if size != desc.size {
                return Err(ImportError::Invalid(format!(
                    "the {kind} {} in {} is {size} bytes, but its descriptor says {}",
                    desc.digest,
                    self.archive.path().display(),
                    desc.size
                )));
            }
        }
        if self.plan.blobs.iter().any(|b| b.digest == desc.digest) {
            return Ok(());
        }
        self.plan.blobs.push(Blob {
            digest: desc.digest.clone(),
            size: desc.size,
            kind,
            source,
            labels,
        });
        Ok(())
    }

    /// Registers `target` under `name`, or under its config digest (an image with no name,
    /// listed by its ID alone) when the archive names no repository.
    fn name(
        &mut self,
        name: Option<String>,
        target: Descriptor,
        desc: &Descriptor,
    ) -> Result<(), ImportError> {
        let name = match name {
            Some(name) => name,
            None => self.config_digest(desc)?,
        };
        if !self.plan.images.iter().any(|n| n.name == name) {
            self.plan.images.push(Named { name, target });
        }
        Ok(())
    }

    /// The config digest of the image `desc` points at (the first manifest of an index).
    fn config_digest(&self, desc: &Descriptor) -> Result<String, ImportError> {
        let path = blob_path(&desc.digest)?;
        match desc.media_type.as_str() {
            OCI_INDEX | DOCKER_MANIFEST_LIST => {
                let index: Index = json(self.archive, &self.archive.read(&path)?, &path)?;
                let first = index
                    .manifests
                    .iter()
                    .find(|m| {
                        blob_path(&m.digest)
                            .map(|p| self.archive.contains(&p))
                            .unwrap_or(false)
                    })
                    .ok_or_else(|| {
                        ImportError::Invalid(format!("index {} is empty", desc.digest))
                    })?;
                self.config_digest(first)
            }
            _ => {
                let m: Manifest = json(self.archive, &self.archive.read(&path)?, &path)?;
                Ok(m.config.digest)
            }
        }
    }

    fn finish(self) -> Result<Plan, ImportError> {
        if self.plan.unpacks.is_empty() {
            return Err(ImportError::Invalid(format!(
                "{} holds no image for linux/{} (it has {})",
                self.archive.path().display(),
                host_arch(),
                self.platforms.join(", ")
            )));
        }
        let mut plan = self.plan;
        // Leaves first, so everything a manifest or index refers to is stored before it.
        let rank = |k: &str| match k {
            "layer" | "config" => 0,
            "manifest" => 1,
            _ => 2,
        };
        plan.blobs.sort_by_key(|b| rank(b.kind));
        Ok(plan)
    }
}

/// A docker archive (`docker save`): manifest.json lists each image's config, layer files and
/// tags. containerd's store wants a manifest, so one is made here, as containerd's own importer
/// does: docker schema 2, layers typed by their compression.
fn docker(archive: &Archive) -> Result<Plan, ImportError> {
    let entries: Vec<DockerManifestEntry> =
        json(archive, &archive.read("manifest.json")?, "manifest.json")?;
    if entries.is_empty() {
        return Err(ImportError::Invalid(format!(
            "manifest.json in {} lists no images",
            archive.path().display()
        )));
    }
    let mut b = Builder {
        archive,
        plan: Plan::default(),
        seen: HashSet::new(),
        platforms: Vec::new(),
    };
    for entry in &entries {
        let config_bytes = archive.read(&entry.config)?;
        let config: ImageConfig = json(archive, &config_bytes, &entry.config)?;
        let config_desc = Descriptor {
            media_type: DOCKER_CONFIG.into(),
            digest: sha256_digest(&config_bytes),
            size: config_bytes.len() as u64,
            ..Default::default()
        };
        let mut layers = Vec::new();
        for path in &entry.layers {
            let (digest, size, media_type) = hash_layer(archive, path)?;
            let desc = Descriptor {
                media_type: media_type.into(),
                digest,
                size,
                ..Default::default()
            };
            layers.push((desc, Source::Archive(path.clone())));
        }
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": &config_desc,
            "layers": layers.iter().map(|(d, _)| d).collect::<Vec<_>>(),
        });
        let labels = b.image(
            config_desc.clone(),
            &config,
            Source::Archive(entry.config.clone()),
            layers,
        )?;
        let bytes = serde_json::to_vec(&manifest).expect("a manifest serializes");
        let target = Descriptor {
            media_type: DOCKER_MANIFEST.into(),
            digest: sha256_digest(&bytes),
            size: bytes.len() as u64,
            ..Default::default()
        };
        if b.seen.insert(target.digest.clone()) {
            b.plan.blobs.push(Blob {
                digest: target.digest.clone(),
                size: target.size,
                kind: "manifest",
                source: Source::Bytes(bytes),
                labels,
            });
        }
        let tags = entry.repo_tags.clone().unwrap_or_default();
        if tags.is_empty() {
            b.name(Some(config_desc.digest.clone()), target.clone(), &target)?;
        }
        for tag in tags {
            let name = reference::normalize(&tag).map_err(ImportError::Invalid)?;
            b.name(Some(name), target.clone(), &target)?;
        }
    }
    b.finish()
}

/// A docker-archive layer's digest, size and media type (by its first bytes).
fn hash_layer(archive: &Archive, path: &str) -> Result<(String, u64, &'static str), ImportError> {
    let mut reader = archive.reader(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    let mut head = [0u8; 4];
    loop {
        let n = reader.read(&mut buf).map_err(|e| ImportError::Io {
            what: format!("cannot read {path} from {}", archive.path().display()),
            error: e,
        })?;
        if n == 0 {
            break;
        }
        if size < 4 {
            let take = (4 - size as usize).min(n);
            head[size as usize..size as usize + take].copy_from_slice(&buf[..take]);
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    let media_type = match head {
        [0x1f, 0x8b, _, _] => DOCKER_LAYER_GZIP,
        [0x28, 0xb5, 0x2f, 0xfd] => OCI_LAYER_ZSTD,
        _ => DOCKER_LAYER,
    };
    Ok((
        format!("sha256:{}", hex::encode(hasher.finalize())),
        size,
        media_type,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_containerd() {
        let a = "sha256:aa".to_string();
        let b = "sha256:bb".to_string();
        assert_eq!(chain_id(std::slice::from_ref(&a)), a);
        assert_eq!(
            chain_id(&[a.clone(), b.clone()]),
            sha256_digest(b"sha256:aa sha256:bb")
        );
    }

    /// Writes an OCI layout tarball from (path, bytes) pairs.
    fn layout(dir: &std::path::Path, files: &[(String, Vec<u8>)]) -> std::path::PathBuf {
        let path = dir.join("image.tar");
        let mut builder = tar::Builder::new(std::fs::File::create(&path).unwrap());
        for (name, bytes) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, name, &bytes[..]).unwrap();
        }
        builder.finish().unwrap();
        path
    }

    fn blob(bytes: &[u8]) -> (String, String, Vec<u8>) {
        let digest = sha256_digest(bytes);
        let path = blob_path(&digest).unwrap();
        (digest, path, bytes.to_vec())
    }

    /// A multi-platform index whose archive holds only this machine's manifest: the others are
    /// skipped, the index keeps a GC reference to what is there, the name comes from the
    /// top-level annotation, and the config is labelled with the chain it unpacks to.
    #[test]
    fn multi_platform_index_with_one_platform_present() {
        let dir = tempfile::tempdir().unwrap();
        let (layer_digest, layer_path, layer) = blob(b"pretend this is a tar");
        let diff_id = sha256_digest(b"uncompressed");
        let config = serde_json::json!({
            "architecture": host_arch(), "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        });
        let (config_digest, config_path, config) = blob(config.to_string().as_bytes());
        let manifest = serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer.len()}],
        });
        let (manifest_digest, manifest_path, manifest) = blob(manifest.to_string().as_bytes());
        let absent = sha256_digest(b"another platform");
        let index = serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": [
                {"mediaType": OCI_MANIFEST, "digest": absent, "size": 10, "platform": {"architecture": "s390x", "os": "linux"}},
                {"mediaType": OCI_MANIFEST, "digest": manifest_digest, "size": manifest.len(), "platform": {"architecture": host_arch(), "os": "linux"}},
            ],
        });
        let (index_digest, index_path, index) = blob(index.to_string().as_bytes());
        let top = serde_json::json!({"schemaVersion": 2, "manifests": [
            {"mediaType": OCI_INDEX, "digest": index_digest, "size": index.len(),
             "annotations": {"org.opencontainers.image.ref.name": "example.com/app:1"}},
        ]});
        let path = layout(
            dir.path(),
            &[
                (
                    "oci-layout".into(),
                    br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
                ),
                ("index.json".into(), top.to_string().into_bytes()),
                (index_path, index),
                (manifest_path, manifest),
                (config_path, config),
                (layer_path, layer),
            ],
        );
        let archive = Archive::open(&path).unwrap();
        let plan = plan(&archive).unwrap();
        let kinds: Vec<&str> = plan.blobs.iter().map(|b| b.kind).collect();
        assert_eq!(kinds, ["layer", "config", "manifest", "index"]);
        let index_blob = plan.blobs.iter().find(|b| b.kind == "index").unwrap();
        assert_eq!(
            index_blob.labels.get("containerd.io/gc.ref.content.m.1"),
            Some(&manifest_digest)
        );
        assert!(!index_blob
            .labels
            .contains_key("containerd.io/gc.ref.content.m.0"));
        let config_blob = plan.blobs.iter().find(|b| b.kind == "config").unwrap();
        assert_eq!(
            config_blob
                .labels
                .get("containerd.io/gc.ref.snapshot.overlayfs"),
            Some(&diff_id)
        );
        assert_eq!(plan.unpacks.len(), 1);
        assert_eq!(plan.images.len(), 1);
        assert_eq!(plan.images[0].name, "example.com/app:1");
        assert_eq!(plan.images[0].target.digest, index_digest);
    }

    /// An archive with no image for this machine says which platforms it has; an image with
    /// no repository name is registered under its config digest.
    #[test]
    fn foreign_platform_and_unnamed_images() {
        let dir = tempfile::tempdir().unwrap();
        let build = |arch: &str| {
            let (layer_digest, layer_path, layer) = blob(b"layer");
            let config = serde_json::json!({
                "architecture": arch, "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": [sha256_digest(b"u")]},
            });
            let (config_digest, config_path, config) = blob(config.to_string().as_bytes());
            let manifest = serde_json::json!({
                "schemaVersion": 2,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer.len()}],
            });
            let (manifest_digest, manifest_path, manifest) = blob(manifest.to_string().as_bytes());
            let top = serde_json::json!({"manifests": [
                {"mediaType": OCI_MANIFEST, "digest": manifest_digest, "size": manifest.len(),
                 "annotations": {"org.opencontainers.image.ref.name": "latest"}},
            ]});
            let files = vec![
                ("index.json".to_string(), top.to_string().into_bytes()),
                (manifest_path, manifest),
                (config_path, config),
                (layer_path, layer),
            ];
            (files, config_digest)
        };
        let (files, _) = build("s390x-not-here");
        let archive = Archive::open(&layout(dir.path(), &files)).unwrap();
        let err = plan(&archive).unwrap_err().to_string();
        assert!(err.contains("holds no image for linux/"), "{err}");
        assert!(err.contains("linux/s390x-not-here"), "{err}");

        let (files, config_digest) = build(host_arch());
        let archive = Archive::open(&layout(dir.path(), &files)).unwrap();
        let plan = plan(&archive).unwrap();
        assert_eq!(plan.images[0].name, config_digest);
    }

    #[test]
    fn oci_names() {
        let mut a = BTreeMap::new();
        a.insert(
            "org.opencontainers.image.ref.name".to_string(),
            "latest".to_string(),
        );
        assert_eq!(oci_name(&a), None);
        a.insert(
            "org.opencontainers.image.ref.name".to_string(),
            "docker.io/library/busybox:1".to_string(),
        );
        assert_eq!(oci_name(&a).as_deref(), Some("docker.io/library/busybox:1"));
        a.insert(
            "io.containerd.image.name".to_string(),
            "localhost/x:1".to_string(),
        );
        assert_eq!(oci_name(&a).as_deref(), Some("localhost/x:1"));
    }
}
