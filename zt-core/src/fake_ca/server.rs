//! Workload API server (being written).
