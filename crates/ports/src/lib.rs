//! The services-and-ports table every krust listener is driven by.
//!
//! A [`Profile`] reproduces one seed system's layout (upstream Kubernetes, MicroK8s, Canonical
//! Kubernetes): which services run, on which port, bound to which interface, behind which access
//! restriction, plus the profile's other defaults (authorization mode, service range). A
//! [`PortMap`] is a profile's table after the user's `--port KEY=PORT` overrides; it is checked
//! as a whole so that no two services ever share a port.

mod listening;
mod portmap;
mod profile;
mod service;

pub use listening::{listening_sockets, Listening};
pub use portmap::{Override, PortMap, PortMapError, Row, RowJson};
pub use profile::{AuthorizationMode, DatastoreKind, Profile, ProfileDefaults};
pub use service::{Bind, Port, Protocol, Service};
