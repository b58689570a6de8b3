//! Route programmer: keeps the kernel FIB equal to bgpd's best routes
