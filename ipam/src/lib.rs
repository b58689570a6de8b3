//! Calico-style block-affinity IPAM on the margay datastore
