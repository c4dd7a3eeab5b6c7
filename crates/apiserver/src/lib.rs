//! krust's Kubernetes API server.
//!
//! `kinds` holds what differs per built-in kind (defaults, validation, printer columns, selectable
//! fields); everything else is one generic mechanism driven by the resource table.

pub mod kinds;
