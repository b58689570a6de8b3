//! Malformed UPDATEs: each RFC 7606 verdict (attribute-discard,
//! treat-as-withdraw, session reset) and the RFC 4271 6.3 checks.

use bgp_wire::*;

/// An UPDATE message from raw withdrawn, attribute and NLRI fields.
fn update(withdrawn: &[u8], attrs: &[u8], nlri: &[u8]) -> Vec<u8> {
    let mut b = vec![0xff; 16];
    let len = 19 + 2 + withdrawn.len() + 2 + attrs.len() + nlri.len();
    b.extend_from_slice(&(len as u16).to_be_bytes());
    b.push(2);
    b.extend_from_slice(&(withdrawn.len() as u16).to_be_bytes());
    b.extend_from_slice(withdrawn);
    b.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    b.extend_from_slice(attrs);
    b.extend_from_slice(nlri);
    b
}

const ORIGIN: &[u8] = &[0x40, 1, 1, 0];
/// AS_PATH, 4-octet: AS_SEQUENCE [65001].
const AS_PATH: &[u8] = &[0x40, 2, 6, 2, 1, 0, 0, 0xfd, 0xe9];
const NEXT_HOP: &[u8] = &[0x40, 3, 4, 192, 0, 2, 1];
/// 10.1.0.0/24.
const NLRI: &[u8] = &[24, 10, 1, 0];

/// Mandatory attributes followed by `extra`.
fn attrs_with(extra: &[&[u8]]) -> Vec<u8> {
    let mut v = [ORIGIN, AS_PATH, NEXT_HOP].concat();
    for e in extra {
        v.extend_from_slice(e);
    }
    v
}

fn decode(bytes: &[u8]) -> Result<UpdateMsg, DecodeError> {
    decode_cxt(bytes, &DecodeCxt::four_octet())
}

fn decode_cxt(bytes: &[u8], cxt: &DecodeCxt) -> Result<UpdateMsg, DecodeError> {
    match Message::decode(bytes, cxt)? {
        Message::Update(u) => Ok(u),
        m => panic!("not an UPDATE: {m:?}"),
    }
}

/// Decodes and expects exactly one error of `kind` on `code` with `verdict`.
fn expect(
    bytes: &[u8],
    code: u8,
    kind: AttrErrorKind,
    verdict: Verdict,
) -> UpdateMsg {
    let u = decode(bytes).expect("no session reset");
    assert_eq!(u.verdict(), verdict, "{:?}", u.errors);
    assert_eq!(u.errors.len(), 1, "{:?}", u.errors);
    assert_eq!((u.errors[0].type_code, u.errors[0].kind), (code, kind));
    u
}

#[test]
fn well_formed_update_is_accepted() {
    let u = decode(&update(&[], &attrs_with(&[]), NLRI)).unwrap();
    assert_eq!(u.verdict(), Verdict::Accept);
    assert_eq!(u.withdrawn_all().count(), 0);
}

#[test]
fn bad_origin_value_is_treat_as_withdraw() {
    // RFC 7606 7.1.
    let a = [&[0x40, 1, 1, 7][..], AS_PATH, NEXT_HOP].concat();
    let u = expect(
        &update(&[], &a, NLRI),
        1,
        AttrErrorKind::InvalidOrigin,
        Verdict::TreatAsWithdraw,
    );
    let w: Vec<_> = u.withdrawn_all().map(|n| n.prefix.to_string()).collect();
    assert_eq!(w, vec!["10.1.0.0/24"]);
    assert_eq!(u.errors[0].subcode(), UpdateSubcode::InvalidOrigin);
    // Offset of the ORIGIN attribute: header 19 + withdrawn len 2 + attr len 2.
    assert_eq!(u.errors[0].offset, 23);
}

#[test]
fn bad_origin_length_is_treat_as_withdraw() {
    let a = [&[0x40, 1, 2, 0, 0][..], AS_PATH, NEXT_HOP].concat();
    expect(
        &update(&[], &a, NLRI),
        1,
        AttrErrorKind::Length,
        Verdict::TreatAsWithdraw,
    );
}

#[test]
fn malformed_as_path_is_treat_as_withdraw() {
    // RFC 7606 7.2: zero-length segment, unknown type, overrun, one octet left.
    for bad in [
        &[0x40, 2, 2, 2, 0][..],
        &[0x40, 2, 6, 9, 1, 0, 0, 0xfd, 0xe9],
        &[0x40, 2, 6, 2, 2, 0, 0, 0xfd, 0xe9],
        &[0x40, 2, 7, 2, 1, 0, 0, 0xfd, 0xe9, 2],
    ] {
        let a = [ORIGIN, bad, NEXT_HOP].concat();
        expect(
            &update(&[], &a, NLRI),
            2,
            AttrErrorKind::MalformedAsPath,
            Verdict::TreatAsWithdraw,
        );
    }
}

#[test]
fn as_zero_in_as_path_is_treat_as_withdraw() {
    // RFC 7607 2: AS 0 in AS_PATH makes the UPDATE malformed; RFC 7606
    // treat-as-withdraw. 4-octet [65001, 0] and 2-octet [65001, 0].
    let four: &[u8] = &[0x40, 2, 10, 2, 2, 0, 0, 0xfd, 0xe9, 0, 0, 0, 0];
    let u = expect(
        &update(&[], &[ORIGIN, four, NEXT_HOP].concat(), NLRI),
        2,
        AttrErrorKind::AsZero,
        Verdict::TreatAsWithdraw,
    );
    let w: Vec<_> = u.withdrawn_all().map(|n| n.prefix.to_string()).collect();
    assert_eq!(w, vec!["10.1.0.0/24"]);
    assert_eq!(u.errors[0].subcode(), UpdateSubcode::MalformedAsPath);
    let two: &[u8] = &[0x40, 2, 6, 2, 2, 0xfd, 0xe9, 0, 0];
    let u = decode_cxt(
        &update(&[], &[ORIGIN, two, NEXT_HOP].concat(), NLRI),
        &DecodeCxt::default(),
    )
    .unwrap();
    assert_eq!(u.verdict(), Verdict::TreatAsWithdraw, "{:?}", u.errors);
    assert_eq!(u.errors[0].kind, AttrErrorKind::AsZero);
}

#[test]
fn as_zero_in_as4_path_is_treat_as_withdraw() {
    // A 2-octet session: AS_PATH [65001, AS_TRANS, AS_TRANS] with
    // AS4_PATH [4200000009, 0]. RFC 7607 2 forbids AS 0 there too; the
    // route must not be merged and used.
    let as_path: &[u8] =
        &[0x40, 2, 8, 2, 3, 0xfd, 0xe9, 0x5b, 0xa0, 0x5b, 0xa0];
    let as4: &[u8] = &[0xc0, 17, 10, 2, 2, 0xfa, 0x56, 0xea, 0x09, 0, 0, 0, 0];
    let a = [ORIGIN, as_path, NEXT_HOP, as4].concat();
    let u = decode_cxt(&update(&[], &a, NLRI), &DecodeCxt::default()).unwrap();
    assert_eq!(u.verdict(), Verdict::TreatAsWithdraw, "{:?}", u.errors);
    assert_eq!(
        (u.errors[0].type_code, u.errors[0].kind),
        (17, AttrErrorKind::AsZero)
    );
    assert_eq!(u.attrs.rare.as4_path, None);
    assert_eq!(u.withdrawn_all().count(), 1);
}

#[test]
fn as_zero_in_aggregator_is_discarded() {
    // RFC 7607 2 + RFC 7606 7.7: AGGREGATOR with AS 0 -> attribute discard.
    let agg: &[u8] = &[0xc0, 7, 8, 0, 0, 0, 0, 192, 0, 2, 1];
    let m = expect(
        &update(&[], &attrs_with(&[agg]), NLRI),
        7,
        AttrErrorKind::AsZero,
        Verdict::AttributeDiscard,
    );
    assert_eq!(m.attrs.rare.aggregator, None);
    assert_eq!(m.announced().count(), 1);
}

#[test]
fn bad_next_hop_is_treat_as_withdraw() {
    let a = [ORIGIN, AS_PATH, &[0x40, 3, 5, 1, 2, 3, 4, 5]].concat();
    expect(
        &update(&[], &a, NLRI),
        3,
        AttrErrorKind::Length,
        Verdict::TreatAsWithdraw,
    );
    let a = [ORIGIN, AS_PATH, &[0x40, 3, 4, 0, 0, 0, 0]].concat();
    expect(
        &update(&[], &a, NLRI),
        3,
        AttrErrorKind::InvalidNextHop,
        Verdict::TreatAsWithdraw,
    );
}

#[test]
fn bad_med_local_pref_originator_lengths_are_treat_as_withdraw() {
    // RFC 7606 7.4, 7.5, 7.9.
    for (bad, code) in [
        (&[0x80, 4, 3, 0, 0, 1][..], 4),
        (&[0x40, 5, 2, 0, 1], 5),
        (&[0x80, 9, 3, 1, 2, 3], 9),
    ] {
        let u = update(&[], &attrs_with(&[bad]), NLRI);
        expect(&u, code, AttrErrorKind::Length, Verdict::TreatAsWithdraw);
    }
}

#[test]
fn bad_community_lists_are_treat_as_withdraw() {
    // RFC 7606 7.8, 7.10; RFC 8092 6.
    for (bad, code) in [
        (&[0xc0, 8, 3, 0, 0, 1][..], 8),
        (&[0xc0, 8, 0], 8),
        (&[0x80, 10, 0], 10),
        (&[0x80, 10, 5, 1, 2, 3, 4, 5], 10),
        (&[0xc0, 32, 4, 0, 0, 0, 1], 32),
    ] {
        let u = update(&[], &attrs_with(&[bad]), NLRI);
        expect(&u, code, AttrErrorKind::Length, Verdict::TreatAsWithdraw);
    }
}

#[test]
fn bad_atomic_aggregate_and_aggregator_are_discarded() {
    // RFC 7606 7.6, 7.7: attribute discard, the rest is kept.
    let u = update(
        &[],
        &attrs_with(&[&[0x40, 6, 1, 0], &[0x80, 4, 4, 0, 0, 0, 5]]),
        NLRI,
    );
    let m = expect(&u, 6, AttrErrorKind::Length, Verdict::AttributeDiscard);
    assert!(!m.attrs.atomic_aggregate);
    assert_eq!(m.attrs.med, Some(5));
    assert_eq!(m.withdrawn_all().count(), 0);
    assert_eq!(m.announced().count(), 1);
    // 2-octet length on a 4-octet session.
    let u = update(
        &[],
        &attrs_with(&[&[0xc0, 7, 6, 0xfd, 0xe9, 192, 0, 2, 1]]),
        NLRI,
    );
    let m = expect(&u, 7, AttrErrorKind::Length, Verdict::AttributeDiscard);
    assert_eq!(m.attrs.rare.aggregator, None);
}

#[test]
fn flag_conflicts_follow_the_attribute_rule() {
    // RFC 7606 3(c): ORIGIN marked optional -> withdraw.
    let a = [&[0xc0, 1, 1, 0][..], AS_PATH, NEXT_HOP].concat();
    let u = expect(
        &update(&[], &a, NLRI),
        1,
        AttrErrorKind::Flags,
        Verdict::TreatAsWithdraw,
    );
    assert_eq!(u.errors[0].subcode(), UpdateSubcode::AttributeFlags);
    // Data is the whole attribute (RFC 4271 6.3).
    assert_eq!(u.errors[0].data, vec![0xc0, 1, 1, 0]);
    // AGGREGATOR marked well-known -> discard, as for its other errors.
    let u = update(
        &[],
        &attrs_with(&[&[0x40, 7, 8, 0, 0, 0xfd, 0xe9, 192, 0, 2, 1]]),
        NLRI,
    );
    expect(&u, 7, AttrErrorKind::Flags, Verdict::AttributeDiscard);
}

#[test]
fn missing_mandatory_attributes_are_treat_as_withdraw() {
    // RFC 7606 3(d).
    let a = [AS_PATH, NEXT_HOP].concat();
    expect(
        &update(&[], &a, NLRI),
        1,
        AttrErrorKind::Missing,
        Verdict::TreatAsWithdraw,
    );
    let a = [ORIGIN, AS_PATH].concat();
    let u = expect(
        &update(&[], &a, NLRI),
        3,
        AttrErrorKind::Missing,
        Verdict::TreatAsWithdraw,
    );
    assert_eq!(u.errors[0].data, vec![3]);
    assert_eq!(u.errors[0].subcode(), UpdateSubcode::MissingWellKnown);
    // Withdrawals alone need no attributes.
    let u = decode(&update(NLRI, &[], &[])).unwrap();
    assert_eq!(u.verdict(), Verdict::Accept);
    // MP_REACH-only messages need no NEXT_HOP (RFC 4760 3).
    let mp = [
        0x80, 14, 26, 0, 2, 1, 16, 0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 1, 0, 32, 0x20, 1, 0x0d, 0xb8,
    ];
    let a = [ORIGIN, AS_PATH, &mp[..]].concat();
    assert_eq!(
        decode(&update(&[], &a, &[])).unwrap().verdict(),
        Verdict::Accept
    );
}

#[test]
fn duplicate_attribute_keeps_the_first() {
    // RFC 7606 3(g).
    let u = update(
        &[],
        &attrs_with(&[&[0x80, 4, 4, 0, 0, 0, 1], &[0x80, 4, 4, 0, 0, 0, 2]]),
        NLRI,
    );
    let m = expect(&u, 4, AttrErrorKind::Duplicate, Verdict::AttributeDiscard);
    assert_eq!(m.attrs.med, Some(1));
}

#[test]
fn duplicate_mp_reach_resets_the_session() {
    let mp: &[u8] = &[0x80, 15, 3, 0, 2, 1];
    let e = decode(&update(&[], &[mp, mp].concat(), &[])).unwrap_err();
    assert!(matches!(e, DecodeError::MalformedAttrList { .. }), "{e}");
    let n = e.to_notification();
    assert_eq!((n.code, n.subcode), (3, 1));
}

#[test]
fn attribute_overrun_is_treat_as_withdraw() {
    // RFC 7606 4: the last attribute claims more than is left.
    let a = attrs_with(&[&[0x80, 4, 9, 0, 0, 0, 1]]);
    let u = expect(
        &update(&[], &a, NLRI),
        4,
        AttrErrorKind::Overrun,
        Verdict::TreatAsWithdraw,
    );
    assert_eq!(u.nlri.len(), 1, "NLRI still located and withdrawn");
    // Fewer octets than an attribute header.
    let a = attrs_with(&[&[0x80, 4]]);
    expect(
        &update(&[], &a, NLRI),
        4,
        AttrErrorKind::Overrun,
        Verdict::TreatAsWithdraw,
    );
}

#[test]
fn mp_reach_overrun_resets_the_session() {
    // RFC 7606 3(j): its NLRI cannot be known.
    let a = attrs_with(&[&[0x80, 14, 40, 0, 2, 1]]);
    assert!(decode(&update(&[], &a, &[])).is_err());
}

#[test]
fn unparseable_lengths_reset_the_session() {
    // Withdrawn Routes Length beyond the message (RFC 7606 4).
    let mut b = update(&[], &[], &[]);
    b[19..21].copy_from_slice(&[0, 9]);
    let e = decode(&b).unwrap_err();
    assert_eq!(
        (e.to_notification().code, e.to_notification().subcode),
        (3, 1)
    );
    // Total Path Attribute Length beyond the message.
    let mut b = update(&[], &[], &[]);
    b[21..23].copy_from_slice(&[0, 1]);
    assert!(matches!(
        decode(&b),
        Err(DecodeError::MalformedAttrList { .. })
    ));
}

#[test]
fn bad_nlri_resets_the_session() {
    // RFC 7606 4 / 3(i): prefix length 33, and a truncated prefix.
    for (w, n) in [
        (&[][..], &[33u8, 10, 0, 0, 0, 0][..]),
        (&[24, 10, 1][..], &[][..]),
    ] {
        let e = decode(&update(w, &attrs_with(&[]), n)).unwrap_err();
        assert!(matches!(e, DecodeError::InvalidNetworkField { .. }), "{e}");
        let nt = e.to_notification();
        assert_eq!((nt.code, nt.subcode), (3, 10));
    }
}

#[test]
fn mp_reach_bad_next_hop_length_resets_the_session() {
    // RFC 7606 7.11: IPv6 with a 5-octet next hop.
    let mp = [0x80, 14, 11, 0, 2, 1, 5, 1, 2, 3, 4, 5, 0, 0];
    let a = [ORIGIN, AS_PATH, &mp[..]].concat();
    let e = decode(&update(&[], &a, &[])).unwrap_err();
    let DecodeError::Attr(ae) = &e else {
        panic!("{e}")
    };
    assert_eq!(ae.action, ErrorAction::SessionReset);
    assert_eq!(e.to_notification().data, mp.to_vec());
}

#[test]
fn rfc8950_next_hop_needs_the_capability() {
    let mp = [
        0x80, 14, 24, 0, 1, 1, 16, 0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 1, 0, 16, 10, 5,
    ];
    let a = [ORIGIN, AS_PATH, &mp[..]].concat();
    let b = update(&[], &a, &[]);
    assert!(decode(&b).is_err());
    let cxt = DecodeCxt {
        extended_nh: FamilySet::of(&[Family::IPV4_UNICAST]),
        ..DecodeCxt::four_octet()
    };
    let u = decode_cxt(&b, &cxt).unwrap();
    assert_eq!(u.verdict(), Verdict::Accept);
    assert_eq!(
        u.mp_reach.unwrap().nlri[0].prefix.to_string(),
        "10.5.0.0/16"
    );
}

#[test]
fn as4_attributes() {
    let two = DecodeCxt::default();
    // AS_PATH [65001, AS_TRANS] (2-octet) + AS4_PATH [4200000001].
    let as_path: &[u8] = &[0x40, 2, 6, 2, 2, 0xfd, 0xe9, 0x5b, 0xa0];
    let as4: &[u8] = &[0xc0, 17, 6, 2, 1, 0xfa, 0x56, 0xea, 0x01];
    let a = [ORIGIN, as_path, NEXT_HOP, as4].concat();
    let mut u = decode_cxt(&update(&[], &a, NLRI), &two).unwrap();
    assert_eq!(u.verdict(), Verdict::Accept);
    u.attrs.merge_as4();
    assert_eq!(
        u.attrs.as_path,
        Some(AsPath::from_sequence(&[65001, 4_200_000_001]))
    );
    // Malformed AS4_PATH on a 2-octet session: discarded (RFC 6793 6).
    let bad4: &[u8] = &[0xc0, 17, 2, 2, 0];
    let a = [ORIGIN, as_path, NEXT_HOP, bad4].concat();
    let u = decode_cxt(&update(&[], &a, NLRI), &two).unwrap();
    assert_eq!(u.verdict(), Verdict::AttributeDiscard);
    assert_eq!(u.attrs.rare.as4_path, None);
    // AS4_PATH between 4-octet speakers is silently discarded (RFC 6793 4.1).
    let a = attrs_with(&[as4]);
    let u = decode(&update(&[], &a, NLRI)).unwrap();
    assert_eq!(
        (u.verdict(), u.attrs.rare.as4_path.clone()),
        (Verdict::Accept, None)
    );
}

#[test]
fn unknown_attributes() {
    // Unknown well-known: cannot be honoured -> withdraw.
    let u = update(&[], &attrs_with(&[&[0x40, 99, 1, 0]]), NLRI);
    expect(
        &u,
        99,
        AttrErrorKind::UnrecognizedWellKnown,
        Verdict::TreatAsWithdraw,
    );
    // Unknown optional transitive: kept, Partial set when passed on.
    let u = update(
        &[],
        &attrs_with(&[&[0xc0, 99, 2, 7, 7], &[0x80, 98, 1, 1]]),
        NLRI,
    );
    let mut m = decode(&u).unwrap();
    assert_eq!(m.verdict(), Verdict::Accept);
    assert_eq!(m.attrs.rare.unknown.len(), 2);
    m.attrs.pass_on_unknown();
    assert_eq!(
        m.attrs.rare.unknown,
        vec![RawAttr {
            flags: 0xe0,
            type_code: 99,
            value: vec![7, 7]
        }]
    );
}

#[test]
fn strongest_action_wins() {
    // RFC 7606 3(h): a discard and a withdraw -> withdraw.
    let u = update(
        &[],
        &attrs_with(&[&[0x40, 6, 1, 0], &[0xc0, 8, 3, 0, 0, 1]]),
        NLRI,
    );
    let m = decode(&u).unwrap();
    assert_eq!(m.errors.len(), 2);
    assert_eq!(m.verdict(), Verdict::TreatAsWithdraw);
}

#[test]
fn extended_length_flag_is_accepted_on_short_attributes() {
    let a = [&[0x50, 1, 0, 1, 2][..], AS_PATH, NEXT_HOP].concat();
    let u = decode(&update(&[], &a, NLRI)).unwrap();
    assert_eq!(u.attrs.origin, Some(Origin::Incomplete));
}
