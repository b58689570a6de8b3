//! margayctl: node status, resources, IPAM and the local lab
