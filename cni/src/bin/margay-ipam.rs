//! `margay-ipam`: margay's IPAM as a delegated CNI IPAM plugin.

fn main() {
    std::process::exit(margay_cni::run::main_entry(
        margay_cni::run::Role::Ipam,
    ));
}
