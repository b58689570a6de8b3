//! Test harnesses (etcd, netns, real BGP peers) and cross-crate integration tests
