//! containerd's own API, for putting an image in without a registry: the content store (Write
//! and Commit, labels), the image store, and unpacking layers into the snapshotter through the
//! snapshots and diff services, all in the `k8s.io` namespace the CRI plugin reads and under one
//! lease so the garbage collector leaves a half-done import alone.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use indicatif::ProgressBar;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Status};

use super::archive::Archive;
use super::plan::{Blob, Descriptor, Named, Source, Unpack, SNAPSHOTTER};
use super::ImportError;
use crate::proto::containerd::services::content::v1 as content;
use crate::proto::containerd::services::diff::v1 as diff;
use crate::proto::containerd::services::images::v1 as images;
use crate::proto::containerd::services::leases::v1 as leases;
use crate::proto::containerd::services::snapshots::v1 as snapshots;
use crate::proto::containerd::types;

/// The containerd namespace Kubernetes' CRI plugin works in.
pub const NAMESPACE: &str = "k8s.io";

/// Bytes per Write message (containerd accepts up to 16 MiB).
const CHUNK: usize = 1 << 20;

/// Adds containerd's namespace (and lease) headers to every call.
#[derive(Clone)]
pub struct Meta {
    namespace: MetadataValue<tonic::metadata::Ascii>,
    lease: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl tonic::service::Interceptor for Meta {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        req.metadata_mut()
            .insert("containerd-namespace", self.namespace.clone());
        if let Some(lease) = &self.lease {
            req.metadata_mut().insert("containerd-lease", lease.clone());
        }
        Ok(req)
    }
}

type Svc = InterceptedService<Channel, Meta>;

pub struct Store {
    channel: Channel,
    lease: String,
    content: content::content_client::ContentClient<Svc>,
    images: images::images_client::ImagesClient<Svc>,
    snapshots: snapshots::snapshots_client::SnapshotsClient<Svc>,
    diff: diff::diff_client::DiffClient<Svc>,
}

fn runtime_error(what: &str, status: Status) -> ImportError {
    ImportError::Runtime(format!("containerd {what}: {}", status.message()))
}

fn meta(lease: Option<&str>) -> Meta {
    Meta {
        namespace: MetadataValue::from_static(NAMESPACE),
        lease: lease.map(|l| l.parse().expect("lease IDs are ASCII")),
    }
}

impl Store {
    /// Connects to containerd on `socket` and takes a lease that expires within an hour even if
    /// this process dies mid-import.
    pub async fn open(socket: &Path) -> Result<Store, ImportError> {
        if !socket.exists() {
            return Err(ImportError::NotRunning {
                socket: socket.to_path_buf(),
            });
        }
        let channel = crate::grpc::channel(socket).map_err(|_| ImportError::NotRunning {
            socket: socket.to_path_buf(),
        })?;
        let mut lease_client =
            leases::leases_client::LeasesClient::with_interceptor(channel.clone(), meta(None));
        let mut labels = HashMap::new();
        labels.insert(
            "containerd.io/gc.expire".to_string(),
            rfc3339(SystemTime::now() + Duration::from_secs(3600)),
        );
        let id = format!("krust-import-{}", nanos());
        let created = lease_client
            .create(leases::CreateRequest {
                id: id.clone(),
                labels,
            })
            .await
            .map_err(|s| match s.code() {
                Code::Unavailable | Code::Unknown => ImportError::NotRunning {
                    socket: socket.to_path_buf(),
                },
                _ => runtime_error("lease", s),
            })?;
        let lease = created.into_inner().lease.map(|l| l.id).unwrap_or(id);
        let m = meta(Some(&lease));
        Ok(Store {
            content: content::content_client::ContentClient::with_interceptor(
                channel.clone(),
                m.clone(),
            )
            .max_decoding_message_size(16 << 20),
            images: images::images_client::ImagesClient::with_interceptor(
                channel.clone(),
                m.clone(),
            ),
            snapshots: snapshots::snapshots_client::SnapshotsClient::with_interceptor(
                channel.clone(),
                m.clone(),
            ),
            diff: diff::diff_client::DiffClient::with_interceptor(channel.clone(), m),
            channel,
            lease,
        })
    }

    /// Releases the lease: what the import stored is now kept by the images' references alone.
    pub async fn close(self) {
        let mut client =
            leases::leases_client::LeasesClient::with_interceptor(self.channel, meta(None));
        let req = leases::DeleteRequest {
            id: self.lease.clone(),
            sync: false,
        };
        if let Err(e) = client.delete(req).await {
            tracing::warn!(lease = %self.lease, "cannot release the import lease: {}", e.message());
        }
    }

    async fn exists(&mut self, digest: &str) -> Result<bool, ImportError> {
        let req = content::InfoRequest {
            digest: digest.into(),
        };
        match self.content.info(req).await {
            Ok(_) => Ok(true),
            Err(s) if s.code() == Code::NotFound => Ok(false),
            Err(s) => Err(runtime_error("content info", s)),
        }
    }

    /// Stores one blob (unless containerd has it) and sets its labels.
    pub async fn put(
        &mut self,
        blob: &Blob,
        archive: &Arc<Archive>,
        progress: &ProgressBar,
    ) -> Result<(), ImportError> {
        if self.exists(&blob.digest).await? {
            progress.inc(blob.size);
        } else {
            self.write(blob, archive, progress).await?;
        }
        if !blob.labels.is_empty() {
            self.label(&blob.digest, &blob.labels).await?;
        }
        Ok(())
    }

    async fn write(
        &mut self,
        blob: &Blob,
        archive: &Arc<Archive>,
        progress: &ProgressBar,
    ) -> Result<(), ImportError> {
        let (tx, rx) = tokio::sync::mpsc::channel::<content::WriteContentRequest>(4);
        let r#ref = format!("krust-import-{}", blob.digest);
        let labels: HashMap<String, String> = blob.labels.clone().into_iter().collect();
        let source = blob.source.clone();
        let (digest, total) = (blob.digest.clone(), blob.size as i64);
        let archive = archive.clone();
        let progress_reader = progress.clone();
        // Reading the tarball is blocking file I/O: a thread feeds the stream.
        let reader = tokio::task::spawn_blocking(move || -> Result<(), ImportError> {
            let mut input: Box<dyn Read + '_> = match &source {
                Source::Archive(path) => Box::new(archive.reader(path)?),
                Source::Bytes(bytes) => Box::new(&bytes[..]),
            };
            let mut offset = 0i64;
            loop {
                let mut buf = vec![0u8; CHUNK];
                let mut n = 0;
                while n < CHUNK {
                    match input.read(&mut buf[n..]) {
                        Ok(0) => break,
                        Ok(k) => n += k,
                        Err(e) => {
                            return Err(ImportError::Io {
                                what: format!("cannot read {digest} from the archive"),
                                error: e,
                            })
                        }
                    }
                }
                buf.truncate(n);
                let last = n < CHUNK;
                let req = content::WriteContentRequest {
                    action: if last {
                        content::WriteAction::Commit as i32
                    } else {
                        content::WriteAction::Write as i32
                    },
                    r#ref: r#ref.clone(),
                    total,
                    expected: digest.clone(),
                    offset,
                    data: buf,
                    labels: if last { labels.clone() } else { HashMap::new() },
                };
                offset += n as i64;
                progress_reader.inc(n as u64);
                if tx.blocking_send(req).is_err() || last {
                    return Ok(());
                }
            }
        });
        let result = async {
            let mut responses = self
                .content
                .write(ReceiverStream::new(rx))
                .await?
                .into_inner();
            let mut committed = None;
            while let Some(resp) = responses.message().await? {
                if resp.action == content::WriteAction::Commit as i32 {
                    committed = Some(resp.digest);
                }
            }
            Ok::<_, Status>(committed)
        }
        .await;
        let read = reader.await.expect("the reader thread does not panic");
        match result {
            Ok(Some(d)) if d == blob.digest => read,
            Ok(Some(d)) => Err(ImportError::Invalid(format!(
                "the {} {} stored as {d}: the archive is corrupt",
                blob.kind, blob.digest
            ))),
            Ok(None) => {
                read?;
                Err(ImportError::Runtime(format!(
                    "containerd did not commit {}",
                    blob.digest
                )))
            }
            // Another import stored it meanwhile.
            Err(s) if s.code() == Code::AlreadyExists => Ok(()),
            Err(s) => {
                read?;
                if s.code() == Code::FailedPrecondition || s.code() == Code::InvalidArgument {
                    return Err(ImportError::Invalid(format!(
                        "containerd refused the {} {}: {} (the archive is corrupt)",
                        blob.kind,
                        blob.digest,
                        s.message()
                    )));
                }
                Err(runtime_error("content write", s))
            }
        }
    }

    async fn label(
        &mut self,
        digest: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<(), ImportError> {
        let req = content::UpdateRequest {
            info: Some(content::Info {
                digest: digest.into(),
                labels: labels.clone().into_iter().collect(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: labels.keys().map(|k| format!("labels.{k}")).collect(),
            }),
        };
        self.content
            .update(req)
            .await
            .map_err(|s| runtime_error("content labels", s))?;
        Ok(())
    }

    /// Unpacks an image's layers into the snapshotter, one committed snapshot per layer named by
    /// its chain ID, skipping what is already there (layers shared with other images).
    pub async fn unpack(
        &mut self,
        unpack: &Unpack,
        progress: &ProgressBar,
    ) -> Result<(), ImportError> {
        let mut chain = String::new();
        let count = unpack.layers.len();
        for (i, (layer, diff_id)) in unpack.layers.iter().zip(&unpack.diff_ids).enumerate() {
            let parent = chain.clone();
            chain = super::plan::chain_id(&unpack.diff_ids[..=i]);
            let stat = snapshots::StatSnapshotRequest {
                snapshotter: SNAPSHOTTER.into(),
                key: chain.clone(),
            };
            match self.snapshots.stat(stat).await {
                Ok(_) => continue,
                Err(s) if s.code() == Code::NotFound => {}
                Err(s) => return Err(runtime_error("snapshot stat", s)),
            }
            progress.set_message(format!("unpacking layer {}/{count}", i + 1));
            let key = format!("krust-extract-{}-{chain}", nanos());
            let prepared = self
                .snapshots
                .prepare(snapshots::PrepareSnapshotRequest {
                    snapshotter: SNAPSHOTTER.into(),
                    key: key.clone(),
                    parent: parent.clone(),
                    labels: HashMap::new(),
                })
                .await
                .map_err(|s| runtime_error("snapshot prepare", s))?
                .into_inner();
            let applied = self
                .diff
                .apply(diff::ApplyRequest {
                    diff: Some(descriptor(layer)),
                    mounts: prepared.mounts,
                    payloads: HashMap::new(),
                })
                .await;
            let applied = match applied {
                Ok(r) => r.into_inner().applied.map(|d| d.digest).unwrap_or_default(),
                Err(s) => {
                    self.remove(&key).await;
                    return Err(runtime_error(
                        &format!("unpacking layer {}", layer.digest),
                        s,
                    ));
                }
            };
            if &applied != diff_id {
                self.remove(&key).await;
                return Err(ImportError::Invalid(format!(
                    "layer {} unpacks to {applied}, but the image config says {diff_id}: the archive is corrupt",
                    layer.digest
                )));
            }
            let commit = snapshots::CommitSnapshotRequest {
                snapshotter: SNAPSHOTTER.into(),
                name: chain.clone(),
                key: key.clone(),
                labels: HashMap::new(),
            };
            match self.snapshots.commit(commit).await {
                Ok(_) => {}
                // Another import unpacked the same layer meanwhile.
                Err(s) if s.code() == Code::AlreadyExists => self.remove(&key).await,
                Err(s) => {
                    self.remove(&key).await;
                    return Err(runtime_error("snapshot commit", s));
                }
            }
        }
        Ok(())
    }

    async fn remove(&mut self, key: &str) {
        let req = snapshots::RemoveSnapshotRequest {
            snapshotter: SNAPSHOTTER.into(),
            key: key.into(),
        };
        let _ = self.snapshots.remove(req).await;
    }

    /// Points `named.name` at its target, creating the image or moving an existing name.
    pub async fn name(&mut self, named: &Named) -> Result<(), ImportError> {
        let mut labels = HashMap::new();
        // The label the CRI plugin puts on images it manages.
        labels.insert("io.cri-containerd.image".to_string(), "managed".to_string());
        let image = images::Image {
            name: named.name.clone(),
            labels,
            target: Some(descriptor(&named.target)),
            created_at: None,
            updated_at: None,
        };
        let create = images::CreateImageRequest {
            image: Some(image.clone()),
            source_date_epoch: None,
        };
        match self.images.create(create).await {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::AlreadyExists => {
                let update = images::UpdateImageRequest {
                    image: Some(image),
                    update_mask: None,
                    source_date_epoch: None,
                };
                self.images
                    .update(update)
                    .await
                    .map_err(|s| runtime_error("image update", s))?;
                Ok(())
            }
            Err(s) => Err(runtime_error("image create", s)),
        }
    }
}

fn descriptor(d: &Descriptor) -> types::Descriptor {
    types::Descriptor {
        media_type: d.media_type.clone(),
        digest: d.digest.clone(),
        size: d.size as i64,
        annotations: d.annotations.clone().into_iter().collect(),
    }
}

fn nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
}

/// `t` as RFC 3339 in UTC (containerd's `gc.expire` label format).
fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_709_210_096);
        assert_eq!(rfc3339(t), "2024-02-29T12:34:56Z");
    }
}
