//! The kubelet API (owner: kubelet-server work in progress): 10250 over TLS with x509 client
//! certificates and SubjectAccessReview authorization, 10255 read-only where the profile has it,
//! 10248 healthz on localhost. Containers are found over CRI by their [`labels`](crate::labels);
//! logs read from the paths [`Layout`](crate::layout::Layout) gives.
