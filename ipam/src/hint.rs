//! The blocks this node last allocated from (one per family),
//! remembered across processes.
//!
//! A CNI ADD is a fresh process, so without memory it learns which block
//! to allocate from only by reading its affinities, and then reads that
//! block: two round trips before the commit. With the CIDR of the last
//! block remembered in a small file next to the host lock, the block is
//! read in the same batch as the rest of the context (one round trip).
//!
//! The hint is never trusted: the block it names is used only when this
//! node's affinities (read in that same batch) say the block is ours, and
//! the allocation is a compare-and-swap on the revision read, so a stale
//! hint costs at most a re-read, never a duplicate address.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use ipnetwork::IpNetwork;

use crate::addr::Family;

/// The hint file that goes with the host lock file `lock` (same
/// directory, same stem): as node-scoped as the lock itself.
pub(crate) fn path_for_lock(lock: &Path) -> PathBuf {
    lock.with_extension("block-hint")
}

/// The last block allocated from, per family.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct BlockHints {
    pub v4: Option<IpNetwork>,
    pub v6: Option<IpNetwork>,
}

impl BlockHints {
    /// Both hints, IPv4 first.
    pub fn iter(&self) -> impl Iterator<Item = IpNetwork> {
        self.v4.into_iter().chain(self.v6)
    }

    /// Makes `cidr` the hint of its family; false if it already was.
    pub fn set(&mut self, cidr: IpNetwork) -> bool {
        let slot = match Family::of_net(&cidr) {
            Family::V4 => &mut self.v4,
            Family::V6 => &mut self.v6,
        };
        let changed = *slot != Some(cidr);
        *slot = Some(cidr);
        changed
    }

    /// The hints recorded for `node` in `path`; none when the file is
    /// missing, unreadable or for another node, and garbled lines are
    /// skipped.
    pub fn read(path: &Path, node: &str) -> BlockHints {
        std::fs::read_to_string(path)
            .map(|text| BlockHints::parse(&text, node))
            .unwrap_or_default()
    }

    /// Records the hints of `node` in `path`. Written to a temporary file
    /// and renamed over the old one, so a reader sees the old or the new
    /// hints, never half of them.
    pub fn write(&self, path: &Path, node: &str) -> io::Result<()> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".{}.tmp", std::process::id()));
        let tmp = PathBuf::from(tmp);
        let res = std::fs::File::create(&tmp)
            .and_then(|mut f| f.write_all(self.format(node).as_bytes()))
            .and_then(|()| std::fs::rename(&tmp, path));
        if res.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        res
    }

    /// One `<node> <cidr>` line per hint.
    fn format(&self, node: &str) -> String {
        self.iter().map(|c| format!("{node} {c}\n")).collect()
    }

    fn parse(text: &str, node: &str) -> BlockHints {
        let mut hints = BlockHints::default();
        for line in text.lines() {
            let Some((n, cidr)) = line.split_once(' ') else {
                continue;
            };
            if n == node
                && let Ok(cidr) = cidr.parse()
            {
                hints.set(cidr);
            }
        }
        hints
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_for_its_node_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_for_lock(&dir.path().join("n1.lock"));
        assert_eq!(path, dir.path().join("n1.block-hint"));
        assert_eq!(BlockHints::read(&path, "n1"), BlockHints::default());
        let v4: IpNetwork = "10.1.2.64/26".parse().unwrap();
        let v6: IpNetwork = "fd00::40/122".parse().unwrap();
        let mut hints = BlockHints::default();
        assert!(hints.set(v4));
        assert!(!hints.set(v4));
        assert!(hints.set(v6));
        hints.write(&path, "n1").unwrap();
        let back = BlockHints::read(&path, "n1");
        assert_eq!(back, hints);
        assert_eq!(back.iter().collect::<Vec<_>>(), vec![v4, v6]);
        assert_eq!(BlockHints::read(&path, "n2"), BlockHints::default());
        // The temporary file is gone: only the hint is left.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn another_block_replaces_its_family_only() {
        let mut hints = BlockHints::default();
        hints.set("10.0.0.0/26".parse().unwrap());
        hints.set("fd00::/122".parse().unwrap());
        assert!(hints.set("10.0.0.64/26".parse().unwrap()));
        assert_eq!(hints.v4, Some("10.0.0.64/26".parse().unwrap()));
        assert_eq!(hints.v6, Some("fd00::/122".parse().unwrap()));
    }

    #[test]
    fn garbage_is_skipped() {
        let text = "\nn1\nn1 not-a-cidr\nn10 10.0.0.0/26\nn1 10.9.0.0/26\n";
        let hints = BlockHints::parse(text, "n1");
        assert_eq!(hints.v4, Some("10.9.0.0/26".parse().unwrap()));
        assert_eq!(hints.v6, None);
    }
}
