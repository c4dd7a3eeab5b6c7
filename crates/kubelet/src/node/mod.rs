//! The Node object (owner: node work in progress): registration with capacity, allocatable,
//! labels, addresses and the kubelet's endpoint; conditions (Ready, MemoryPressure, DiskPressure,
//! PIDPressure) and status updates; heartbeats through a Lease in `kube-node-lease`.
