//! Parsing of `--datastore etcd://HOST:PORT[,HOST:PORT...]`.

use thiserror::Error;

/// A `--datastore` value that is not a usable etcd URL.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid datastore URL {url:?}: {reason}; expected etcd://HOST:PORT[,HOST:PORT...]")]
pub struct DatastoreUrlError {
    pub url: String,
    pub reason: String,
}

/// The `HOST:PORT` endpoints of an `etcd://` datastore URL, in the order given (the order the
/// backend tries them in).
pub fn parse_datastore_url(url: &str) -> Result<Vec<String>, DatastoreUrlError> {
    let fail = |reason: String| DatastoreUrlError {
        url: url.to_string(),
        reason,
    };
    let rest = url
        .strip_prefix("etcd://")
        .ok_or_else(|| fail("the scheme must be etcd://".into()))?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() {
        return Err(fail("no endpoint given".into()));
    }
    rest.split(',')
        .map(|ep| check_endpoint(ep.trim()).map_err(&fail))
        .collect()
}

fn check_endpoint(ep: &str) -> Result<String, String> {
    let (host, port) = ep
        .rsplit_once(':')
        .ok_or_else(|| format!("endpoint {ep:?} has no port"))?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.is_empty() || bare.contains(['/', '@', '?', '#', ' ']) {
        return Err(format!("endpoint {ep:?} has no valid host"));
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err(format!(
            "IPv6 endpoint {ep:?} needs brackets, as in [::1]:2379"
        ));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(ep.to_string()),
        _ => Err(format!("endpoint {ep:?} has an invalid port")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_endpoint_lists() {
        assert_eq!(
            parse_datastore_url("etcd://10.0.0.1:2379,etcd-2:2379,[::1]:2379").unwrap(),
            vec!["10.0.0.1:2379", "etcd-2:2379", "[::1]:2379"]
        );
    }

    #[test]
    fn rejects_bad_urls() {
        for bad in [
            "http://a:1",
            "etcd://",
            "etcd://a",
            "etcd://a:x",
            "etcd://a:0",
            "etcd://a:1,",
            "etcd://::1:2379",
            "etcd://a:70000",
        ] {
            assert!(parse_datastore_url(bad).is_err(), "{bad} accepted");
        }
    }
}
