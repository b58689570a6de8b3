//! The candidate paths of one prefix.
//!
//! Nearly every prefix of a large table has exactly one path (one peer
//! sends it), so one path lives inline and only several go to the heap.
//! The three states fit in the 16 octets of one [`Path`]: the variant is
//! kept in the spare values of `Path::stale` (a `SmallVec<[Path; 1]>`
//! needs 24), which keeps a table entry within 56 octets.

use std::ops::{Deref, DerefMut};

use super::Path;

#[derive(Debug, Default)]
pub(crate) enum Paths {
    #[default]
    None,
    One(Path),
    // Boxed on purpose: a bare Vec (24 octets) would make every entry
    // pay for it; the box is 8 and fits beside the niche.
    #[allow(clippy::box_collection)]
    Many(Box<Vec<Path>>),
}

impl Paths {
    pub fn push(&mut self, p: Path) {
        *self = match std::mem::take(self) {
            Paths::None => Paths::One(p),
            Paths::One(a) => Paths::Many(Box::new(vec![a, p])),
            Paths::Many(mut v) => {
                v.push(p);
                Paths::Many(v)
            }
        };
    }

    /// Removes and returns the path at `i` (which must exist).
    pub fn remove(&mut self, i: usize) -> Path {
        match std::mem::take(self) {
            Paths::One(p) if i == 0 => p,
            Paths::Many(mut v) => {
                let p = v.remove(i);
                *self = Paths::from(*v);
                p
            }
            other => panic!("path {i} of {} removed", other.len()),
        }
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&Path) -> bool) {
        *self = match std::mem::take(self) {
            Paths::One(p) if !keep(&p) => Paths::None,
            Paths::Many(mut v) => {
                v.retain(|p| keep(p));
                Paths::from(*v)
            }
            other => other,
        };
    }
}

impl From<Vec<Path>> for Paths {
    fn from(mut v: Vec<Path>) -> Paths {
        match v.len() {
            0 => Paths::None,
            1 => Paths::One(v.pop().expect("one")),
            _ => Paths::Many(Box::new(v)),
        }
    }
}

impl Deref for Paths {
    type Target = [Path];

    fn deref(&self) -> &[Path] {
        match self {
            Paths::None => &[],
            Paths::One(p) => std::slice::from_ref(p),
            Paths::Many(v) => v,
        }
    }
}

impl DerefMut for Paths {
    fn deref_mut(&mut self) -> &mut [Path] {
        match self {
            Paths::None => &mut [],
            Paths::One(p) => std::slice::from_mut(p),
            Paths::Many(v) => v,
        }
    }
}
