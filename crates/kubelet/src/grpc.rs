//! gRPC channels over unix sockets (containerd's socket speaks both CRI and its own API).

use std::path::Path;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

/// A channel to the gRPC server on `socket`. It connects on first use and reconnects after the
/// server restarts, so one channel outlives a containerd restart.
pub(crate) fn channel(socket: &Path) -> Result<Channel, tonic::transport::Error> {
    let endpoint = Endpoint::from_shared(format!("unix://{}", socket.display()))?
        .connect_timeout(Duration::from_secs(5))
        // Image blobs go in 1 MiB messages; the defaults would also do, this states it.
        .initial_stream_window_size(Some(4 << 20))
        .http2_keep_alive_interval(Duration::from_secs(30));
    Ok(endpoint.connect_lazy())
}

/// A socket given as `unix:///path`, `unix:/path` or a plain path, as kubelet's
/// `--container-runtime-endpoint` accepts it.
pub fn socket_path(endpoint: &str) -> &Path {
    let path = endpoint
        .strip_prefix("unix://")
        .or_else(|| endpoint.strip_prefix("unix:"))
        .unwrap_or(endpoint);
    Path::new(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(socket_path("unix:///run/c.sock"), Path::new("/run/c.sock"));
        assert_eq!(socket_path("unix:/run/c.sock"), Path::new("/run/c.sock"));
        assert_eq!(socket_path("/run/c.sock"), Path::new("/run/c.sock"));
    }
}
