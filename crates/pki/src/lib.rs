//! krust PKI (being built).
