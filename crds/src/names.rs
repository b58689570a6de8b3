//! Object names of IPAM objects, encoded the way Calico does so that
//! names are predictable (and one name exists per block / affinity,
//! which is what makes create-if-absent a safe claim).

use ipnetwork::IpNetwork;
use sha2::{Digest, Sha256};

/// Longest Kubernetes object name (a DNS subdomain, RFC 1123).
pub const MAX_NAME_LEN: usize = 253;
/// Hex digits of the SHA-256 suffix added to over-long affinity names.
const HASH_LEN: usize = 11;

/// Name of a CIDR's object: `.`, `:` and `/` become `-`, so
/// `10.42.117.0/26` -> `10-42-117-0-26` and `fd00::/122` ->
/// `fd00---122`. The network is printed in canonical form first.
pub fn cidr_to_name(cidr: &IpNetwork) -> String {
    format!("{}/{}", cidr.network(), cidr.prefix())
        .replace(['.', ':', '/'], "-")
}

/// Name of the IPAMBlock object for `cidr`.
pub fn block_name(cidr: &IpNetwork) -> String {
    cidr_to_name(cidr)
}

/// Name of the BlockAffinity object of `node` for `cidr`:
/// `<node>-<cidr-name>`. Names of 253 or more characters keep a prefix
/// of the node name and get an 11-hex-digit SHA-256 suffix of
/// `<node>+<cidr-name>`, ending up at 252 characters (Calico's rule).
pub fn affinity_name(node: &str, cidr: &IpNetwork) -> String {
    let cidr_name = cidr_to_name(cidr);
    let name = format!("{node}-{cidr_name}");
    if name.len() < MAX_NAME_LEN {
        return name;
    }
    // Room for the node prefix: 252 minus the CIDR part, the hash and
    // the two '-' separators.
    let keep =
        (MAX_NAME_LEN - 1).saturating_sub(cidr_name.len() + HASH_LEN + 2);
    let mut cut = keep.min(node.len());
    while !node.is_char_boundary(cut) {
        cut -= 1;
    }
    let digest = Sha256::digest(format!("{node}+{cidr_name}").as_bytes());
    let hash = hex::encode(digest);
    format!("{}-{}-{}", &node[..cut], cidr_name, &hash[..HASH_LEN])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNetwork {
        s.parse().unwrap()
    }

    #[test]
    fn block_names_match_calico() {
        assert_eq!(block_name(&net("10.42.117.0/26")), "10-42-117-0-26");
        assert_eq!(block_name(&net("fd00:10:244::/122")), "fd00-10-244---122");
        // Host bits are dropped: the name is the network's.
        assert_eq!(block_name(&net("10.42.117.5/26")), "10-42-117-0-26");
    }

    #[test]
    fn short_affinity_names() {
        assert_eq!(
            affinity_name("node-1", &net("10.42.117.0/26")),
            "node-1-10-42-117-0-26"
        );
    }

    #[test]
    fn long_affinity_names_are_hashed() {
        let node = "n".repeat(260);
        let name = affinity_name(&node, &net("10.42.117.0/26"));
        assert_eq!(name.len(), 252);
        let cidr = "10-42-117-0-26";
        let digest = hex::encode(Sha256::digest(format!("{node}+{cidr}")));
        assert!(name.ends_with(&format!("-{cidr}-{}", &digest[..11])));
        assert!(name.starts_with(&"n".repeat(252 - cidr.len() - 13)));
        // A 238-character node gives a 253-character plain name: hashed.
        let node = "a".repeat(238);
        assert_eq!(affinity_name(&node, &net("10.42.117.0/26")).len(), 252);
        let node = "a".repeat(237);
        assert_eq!(
            affinity_name(&node, &net("10.42.117.0/26")),
            format!("{node}-{cidr}")
        );
    }
}
