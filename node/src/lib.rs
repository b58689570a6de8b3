//! margay's node agent.
//!
//! One process per node that does what calico-node's init and runit do:
//! registers the Node resource (with an autodetected BGP address), installs
//! the CNI plugin when asked, and supervises bgpd and felix-lite as separate
//! processes. They stay separate so that a crash or upgrade of bgpd never
//! empties the FIB: felix-lite keeps the routes while bgpd restarts.

pub mod autodetect;
pub mod cni_install;
pub mod default_pool;
pub mod health;
pub mod kube_node;
pub mod metrics;
pub mod register;
pub mod supervise;

#[cfg(test)]
mod test_support {
    use margay_ctlproto::{PeerStatus, PeerType};

    /// A mesh peer of bgpd's peer table in `state`.
    pub fn peer(addr: &str, state: &str) -> PeerStatus {
        PeerStatus {
            name: format!("Mesh_{addr}"),
            peer_type: PeerType::Mesh,
            address: addr.parse().unwrap(),
            port: 179,
            local_as: 64512,
            remote_as: 64512,
            state: state.into(),
            since_unix: 0,
            prefixes_received: 0,
            prefixes_accepted: 0,
            prefixes_advertised: 0,
            last_error: None,
            bfd_state: None,
            held_idle: None,
        }
    }
}
