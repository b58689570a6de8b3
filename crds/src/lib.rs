//! margay.io/v1 API types (CRDs), the Calico selector language and validation
