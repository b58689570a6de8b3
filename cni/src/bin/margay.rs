//! `margay`: the CNI main plugin (invoked by container runtimes).

fn main() {
    std::process::exit(margay_cni::run::main_entry(
        margay_cni::run::Role::Main,
    ));
}
