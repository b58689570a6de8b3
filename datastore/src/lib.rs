//! Typed datastore over etcd v3, Kubernetes CRDs and read-only YAML files
