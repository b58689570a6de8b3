//! Links the two plugin binaries as position-dependent executables.
//!
//! A plugin is a new process for every ADD, DEL and CHECK. As a PIE, the
//! dynamic loader must apply ~31,000 relative relocations at each start
//! (pointers in static data: vtables, string tables, panic locations of
//! every linked crate), copying ~150 pages on write: measured with `perf
//! stat -r 300` on `CNI_COMMAND=VERSION margay`, 3.6 ms and 260 page
//! faults as a PIE against 1.6 ms and 106 as a fixed-address executable,
//! the same as a hello-world. That was a third of an ADD.
//!
//! The trade: the executable's own image is not randomised (stack, heap,
//! mmap and libc still are). The plugin lives for milliseconds, takes
//! input only from the container runtime, which runs it as root already,
//! and so offers no privilege boundary to attack; the reference plugins
//! (containernetworking-plugins, Calico's) ship as fixed-address Go
//! executables for the same reason. Every long-running margay daemon stays
//! a PIE.

fn main() {
    for bin in ["margay", "margay-ipam"] {
        println!("cargo:rustc-link-arg-bin={bin}=-no-pie");
    }
}
