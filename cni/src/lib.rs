//! CNI 1.1 plugin (margay) and IPAM plugin (margay-ipam)
