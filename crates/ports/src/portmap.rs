//! A profile's table after the user's overrides, validated as a whole.

use std::collections::BTreeMap;
use std::str::FromStr;

use serde::Serialize;
use thiserror::Error;

use crate::profile::{DatastoreKind, Profile};
use crate::service::{Bind, Port, Protocol, Service};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PortMapError {
    #[error("unknown service {key:?} in --port {key}={value}: use one of {known}")]
    UnknownService {
        key: String,
        value: String,
        known: String,
    },
    #[error("--port {key}={value} is not a valid port: use a number from 1 to 65535 (or \"off\")")]
    OutOfRange { key: String, value: String },
    #[error("--port {0} needs the form KEY=PORT, for example --port apiserver=26443")]
    Malformed(String),
    #[error("{0} takes a port range (LOW-HIGH with LOW <= HIGH), for example --port nodeport=30000-32767")]
    NeedsRange(String),
    #[error("{0} is a unix socket under the data directory and has no port to set")]
    NotAPort(String),
    #[error("{first} and {second} would both use {protocol} port {port}: give one of them another port with --port")]
    Duplicate {
        first: Service,
        second: Service,
        protocol: Protocol,
        port: u16,
    },
}

/// One `--port KEY=PORT` argument, parsed but not yet applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    pub service: Service,
    pub port: Port,
}

impl FromStr for Override {
    type Err = PortMapError;

    fn from_str(arg: &str) -> Result<Self, Self::Err> {
        let (key, value) = arg
            .split_once('=')
            .ok_or_else(|| PortMapError::Malformed(arg.to_string()))?;
        let service = Service::from_key(key).ok_or_else(|| PortMapError::UnknownService {
            key: key.to_string(),
            value: value.to_string(),
            known: Service::ALL.map(Service::key).join(", "),
        })?;
        let port = parse_port(service, value)?;
        Ok(Override { service, port })
    }
}

impl std::fmt::Display for Override {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.service.key(), self.port)
    }
}

fn parse_port(service: Service, value: &str) -> Result<Port, PortMapError> {
    let out_of_range = || PortMapError::OutOfRange {
        key: service.key().to_string(),
        value: value.to_string(),
    };
    let number = |s: &str| match s.trim().parse::<u32>() {
        Ok(n @ 1..=65535) => Ok(n as u16),
        _ => Err(out_of_range()),
    };
    if value == "off" {
        return Ok(Port::Off);
    }
    match service {
        Service::Containerd => Err(PortMapError::NotAPort(service.key().to_string())),
        Service::Nodeport => {
            let (lo, hi) = value
                .split_once('-')
                .ok_or_else(|| PortMapError::NeedsRange(service.key().to_string()))?;
            let (lo, hi) = (number(lo)?, number(hi)?);
            if lo > hi {
                return Err(PortMapError::NeedsRange(service.key().to_string()));
            }
            Ok(Port::Range(lo, hi))
        }
        _ => Ok(Port::One(number(value)?)),
    }
}

/// One row of the services-and-ports table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub service: Service,
    /// The port the service uses when it runs (its conventional one when it is off).
    pub port: Port,
    pub bind: Bind,
    pub enabled: bool,
}

impl Row {
    pub fn protocol(&self) -> Protocol {
        self.service.protocol()
    }

    /// The single port a listener binds, when the service runs.
    pub fn listen_port(&self) -> Option<u16> {
        match (self.enabled, self.port) {
            (true, Port::One(p)) => Some(p),
            _ => None,
        }
    }
}

/// The effective services-and-ports table of one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMap {
    profile: Profile,
    rows: BTreeMap<Service, Row>,
}

impl PortMap {
    /// The profile's table as its seed documents it.
    pub fn preset(profile: Profile, datastore: DatastoreKind) -> PortMap {
        let rows = Service::ALL
            .into_iter()
            .map(|service| {
                let (port, bind, enabled) = profile.preset(service, datastore);
                let row = Row {
                    service,
                    port,
                    bind,
                    enabled,
                };
                (service, row)
            })
            .collect();
        PortMap { profile, rows }
    }

    /// The preset with `overrides` applied in order. Setting a port turns a service on (that is
    /// how the legacy insecure API port is asked for); `off` turns it off.
    pub fn new(
        profile: Profile,
        datastore: DatastoreKind,
        overrides: &[Override],
    ) -> Result<PortMap, PortMapError> {
        let mut map = PortMap::preset(profile, datastore);
        for o in overrides {
            let row = map
                .rows
                .get_mut(&o.service)
                .expect("every service has a row");
            match o.port {
                Port::Off => row.enabled = false,
                port => {
                    row.port = port;
                    row.enabled = true;
                }
            }
        }
        map.check_collisions()?;
        Ok(map)
    }

    fn check_collisions(&self) -> Result<(), PortMapError> {
        let enabled: Vec<&Row> = self.rows.values().filter(|r| r.enabled).collect();
        for (i, a) in enabled.iter().enumerate() {
            for b in &enabled[i + 1..] {
                if a.protocol() != b.protocol() {
                    continue;
                }
                let (Some((alo, ahi)), Some((blo, bhi))) = (a.port.span(), b.port.span()) else {
                    continue;
                };
                if alo <= bhi && blo <= ahi {
                    return Err(PortMapError::Duplicate {
                        first: a.service,
                        second: b.service,
                        protocol: a.protocol(),
                        port: alo.max(blo),
                    });
                }
            }
        }
        Ok(())
    }

    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// Rows in table order.
    pub fn rows(&self) -> impl Iterator<Item = &Row> {
        self.rows.values()
    }

    pub fn row(&self, service: Service) -> &Row {
        &self.rows[&service]
    }

    /// The port `service` listens on, or `None` when it does not run.
    pub fn port(&self, service: Service) -> Option<u16> {
        self.row(service).listen_port()
    }

    /// The socket address `service` listens on, or `None` when it does not run.
    pub fn addr(&self, service: Service) -> Option<std::net::SocketAddr> {
        let row = self.row(service);
        row.listen_port().map(|p| (row.bind.ip(), p).into())
    }

    /// The `--port` arguments that reproduce this map from its profile's preset, so that a
    /// server started in the background can be told exactly the same layout.
    pub fn overrides_from_preset(&self, datastore: DatastoreKind) -> Vec<String> {
        let preset = PortMap::preset(self.profile, datastore);
        self.rows()
            .filter(|r| preset.row(r.service) != *r)
            .map(|r| match r.enabled {
                true => format!("{}={}", r.service.key(), r.port),
                false => format!("{}=off", r.service.key()),
            })
            .collect()
    }
}

/// The JSON form of a row, for `krust ports -o json`.
#[derive(Debug, Serialize)]
pub struct RowJson {
    pub key: Service,
    pub service: &'static str,
    pub port: Option<u16>,
    pub port_range: Option<[u16; 2]>,
    pub protocol: Protocol,
    pub bind: Bind,
    pub access: &'static str,
    pub enabled: bool,
    pub legacy: bool,
    pub unauthenticated: bool,
}

impl From<&Row> for RowJson {
    fn from(r: &Row) -> Self {
        let (port, port_range) = match r.port {
            Port::One(p) => (Some(p), None),
            Port::Range(lo, hi) => (None, Some([lo, hi])),
            Port::Off | Port::Socket => (None, None),
        };
        RowJson {
            key: r.service,
            service: r.service.description(),
            port,
            port_range,
            protocol: r.protocol(),
            bind: r.bind,
            access: r.service.access(),
            enabled: r.enabled,
            legacy: r.service.is_legacy(),
            unauthenticated: r.service.is_unauthenticated(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(profile: Profile, args: &[&str]) -> Result<PortMap, PortMapError> {
        let overrides: Vec<Override> = args.iter().map(|a| a.parse()).collect::<Result<_, _>>()?;
        PortMap::new(profile, DatastoreKind::Embedded, &overrides)
    }

    #[test]
    fn every_preset_is_collision_free() {
        for profile in Profile::ALL {
            for ds in [DatastoreKind::Embedded, DatastoreKind::Etcd] {
                PortMap::new(profile, ds, &[]).unwrap();
            }
        }
    }

    #[test]
    fn override_moves_a_port_and_turns_a_legacy_service_on() {
        let m = map(
            Profile::Upstream,
            &["apiserver=26443", "apiserver-insecure=18080"],
        )
        .unwrap();
        assert_eq!(m.port(Service::Apiserver), Some(26443));
        assert_eq!(m.port(Service::ApiserverInsecure), Some(18080));
        assert_eq!(m.row(Service::ApiserverInsecure).bind, Bind::Localhost);
    }

    #[test]
    fn off_turns_a_service_off() {
        let m = map(Profile::Microk8s, &["kubelet-readonly=off"]).unwrap();
        assert_eq!(m.port(Service::KubeletReadonly), None);
    }

    #[test]
    fn rejects_bad_overrides_with_what_to_do() {
        let err = map(Profile::Upstream, &["apiserver=70000"]).unwrap_err();
        assert!(matches!(err, PortMapError::OutOfRange { .. }), "{err}");
        assert!(err.to_string().contains("1 to 65535"));
        assert!(matches!(
            map(Profile::Upstream, &["apiserver=0"]).unwrap_err(),
            PortMapError::OutOfRange { .. }
        ));
        assert!(matches!(
            map(Profile::Upstream, &["nope=1"]).unwrap_err(),
            PortMapError::UnknownService { .. }
        ));
        assert!(matches!(
            map(Profile::Upstream, &["apiserver"]).unwrap_err(),
            PortMapError::Malformed(_)
        ));
        assert!(matches!(
            map(Profile::Upstream, &["containerd=5"]).unwrap_err(),
            PortMapError::NotAPort(_)
        ));
        assert!(matches!(
            map(Profile::Upstream, &["nodeport=3-2"]).unwrap_err(),
            PortMapError::NeedsRange(_)
        ));
    }

    #[test]
    fn two_services_on_one_port_are_refused() {
        let err = map(Profile::Upstream, &["scheduler=6443"]).unwrap_err();
        assert_eq!(
            err,
            PortMapError::Duplicate {
                first: Service::Apiserver,
                second: Service::Scheduler,
                protocol: Protocol::Tcp,
                port: 6443
            }
        );
        // A port inside the NodePort range collides with it too.
        assert!(map(Profile::Upstream, &["apiserver=31000"]).is_err());
        // The same number on another protocol does not.
        assert!(map(Profile::Upstream, &["apiserver=4789"]).is_ok());
    }

    #[test]
    fn overrides_round_trip_through_preset_difference() {
        let m = map(Profile::Canonical, &["apiserver=26443", "vxlan=off"]).unwrap();
        let args: Vec<String> = m.overrides_from_preset(DatastoreKind::Embedded);
        let again = map(
            Profile::Canonical,
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
        )
        .unwrap();
        assert_eq!(m, again);
    }
}
