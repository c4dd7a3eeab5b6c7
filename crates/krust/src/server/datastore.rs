//! Opens the cluster's datastore: the embedded engine under the data dir, or an existing etcd
//! cluster given with `--datastore etcd://...`.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use store::Store;

use crate::cli::ServerArgs;

pub async fn open(args: &ServerArgs, data_dir: &Path) -> Result<Arc<dyn Store>> {
    if args.datastore == "embedded" {
        let dir = data_dir.join("datastore");
        let engine = store::engine::Engine::open(&dir, Default::default())
            .await
            .with_context(|| format!("cannot open the datastore in {}", dir.display()))?;
        tracing::info!(dir = %dir.display(), "embedded datastore open");
        return Ok(engine);
    }
    if !args.datastore.starts_with("etcd://") {
        bail!(
            "--datastore {} is not understood: use `embedded` or etcd://HOST:PORT[,HOST:PORT...]",
            args.datastore
        );
    }
    let endpoints = store::etcd::parse_datastore_url(&args.datastore)?;
    let backend = store::etcd::EtcdBackend::new(endpoints, etcd_tls(args)?)?;
    tracing::info!(datastore = %args.datastore, "using an existing etcd cluster");
    Ok(Arc::new(backend))
}

/// TLS towards etcd when any of the --datastore-* files is given, plain HTTP/2 otherwise.
fn etcd_tls(args: &ServerArgs) -> Result<Option<store::etcd::EtcdTls>> {
    let read = |p: &Option<std::path::PathBuf>| -> Result<Option<Vec<u8>>> {
        p.as_ref()
            .map(|p| std::fs::read(p).with_context(|| format!("cannot read {}", p.display())))
            .transpose()
    };
    let tls = store::etcd::EtcdTls {
        ca: read(&args.datastore_cafile)?,
        cert: read(&args.datastore_certfile)?,
        key: read(&args.datastore_keyfile)?,
    };
    let any = tls.ca.is_some() || tls.cert.is_some() || tls.key.is_some();
    Ok(any.then_some(tls))
}
