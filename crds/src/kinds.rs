//! The one list of margay's resource kinds.
//!
//! Everything that enumerates the kinds is generated from
//! [`for_each_kind!`](crate::for_each_kind): [`AnyResource`](crate::AnyResource)
//! and its accessors, [`KINDS`](crate::KINDS), the YAML parser's dispatch,
//! [`all_crds`](crate::crd::all_crds) (with each CRD's shortName),
//! validation of an `AnyResource`, and margayctl's `Kind` with its
//! command-line names. Adding a kind is one line here, plus its type
//! module and the per-kind behaviour the compiler then asks for (a
//! `Validate` impl, margayctl's `Columns` impl).

/// Calls the macro `$callback` with every kind, in the order `margayctl`
/// lists them, as
/// `($($arg)*) Type { names: ["singular", "plural", ...], short: "s" }, ...`:
/// the command-line names (singular first, then plural and other forms)
/// and the CRD's shortName (one of the names) for kubectl.
#[macro_export]
macro_rules! for_each_kind {
    ($($callback:ident)::+ ! $($arg:tt)*) => {
        $($callback)::+! {
            ($($arg)*)
            IPPool {
                names: ["ippool", "ippools", "pool", "pools", "ipp"],
                short: "ipp",
            },
            BGPPeer {
                names: ["bgppeer", "bgppeers", "peer", "peers", "bgpp"],
                short: "bgpp",
            },
            BGPConfiguration {
                names: [
                    "bgpconfig",
                    "bgpconfigs",
                    "bgpconfiguration",
                    "bgpconfigurations",
                ],
                short: "bgpconfig",
            },
            BGPFilter {
                names: ["bgpfilter", "bgpfilters", "bgpf"],
                short: "bgpf",
            },
            // `no` is core Node's shortName, so kubectl gets `mgnode`.
            Node {
                names: ["node", "nodes", "no", "mgnode"],
                short: "mgnode",
            },
            IPAMBlock {
                names: ["ipamblock", "ipamblocks", "block", "blocks", "ipamb"],
                short: "ipamb",
            },
            BlockAffinity {
                names: [
                    "blockaffinity",
                    "blockaffinities",
                    "affinity",
                    "affinities",
                    "blockaff",
                ],
                short: "blockaff",
            },
            IPAMHandle {
                names: ["ipamhandle", "ipamhandles", "handle", "handles", "ipamh"],
                short: "ipamh",
            },
            IPAMConfig {
                names: [
                    "ipamconfig",
                    "ipamconfigs",
                    "ipamconfiguration",
                    "ipamconfigurations",
                    "ipamc",
                ],
                short: "ipamc",
            },
            IPReservation {
                names: ["ipreservation", "ipreservations", "ipr"],
                short: "ipr",
            },
        }
    };
}

/// Evaluates `$body` with `$r` bound to the typed resource inside `$any`
/// (an [`AnyResource`](crate::AnyResource), or a reference to one), e.g.
/// `with_any_resource!(res, r => r.validate())`.
#[macro_export]
macro_rules! with_any_resource {
    ($any:expr, $r:ident => $body:expr) => {
        $crate::for_each_kind!($crate::__with_any_resource!($any)($r)($body))
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __with_any_resource {
    (
        (($any:expr) ($r:ident) ($body:expr))
        $($T:ident { names: [$($n:literal),* $(,)?], short: $s:literal, },)*
    ) => {
        match $any {
            $($crate::AnyResource::$T($r) => $body,)*
        }
    };
}

#[cfg(test)]
mod tests {
    /// Each kind's shortName is one of its command-line names, so kubectl
    /// and margayctl take the same short forms.
    #[test]
    fn short_name_is_one_of_the_names() {
        macro_rules! check {
            (
                ()
                $($T:ident { names: [$($n:literal),* $(,)?], short: $s:literal, },)*
            ) => {
                $(assert!([$($n),*].contains(&$s), "{}: {}", stringify!($T), $s);)*
                assert_eq!(crate::KINDS, [$(stringify!($T)),*]);
            };
        }
        crate::for_each_kind!(check!);
    }
}
