use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn sel(s: &str) -> Selector {
    Selector::parse(s).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn matches_each_operator() {
    let l = labels(&[("rack", "rack-1"), ("zone", "eu-west-1a")]);
    let cases = [
        ("", true),
        ("all()", true),
        ("global()", true),
        ("!all()", false),
        ("rack == 'rack-1'", true),
        ("rack == \"rack-2\"", false),
        ("rack != 'rack-2'", true),
        ("missing != 'x'", true),
        ("has(rack)", true),
        ("!has(rack)", false),
        ("!has(missing)", true),
        ("rack in {'rack-1', 'rack-2'}", true),
        ("rack in {}", false),
        ("missing in {'a'}", false),
        ("rack not in {'rack-2'}", true),
        ("missing not in {'a'}", true),
        ("zone contains 'west'", true),
        ("zone starts with 'eu-'", true),
        ("zone ends with '1a'", true),
        ("zone ends with '1b'", false),
        ("missing contains ''", false),
        ("has(rack) && zone == 'eu-west-1a'", true),
        ("has(rack) && zone == 'x'", false),
        ("rack == 'x' || zone == 'eu-west-1a'", true),
        ("!(rack == 'rack-1' && has(zone))", false),
        ("(rack == 'x' || has(zone)) && !has(missing)", true),
        ("rack=='rack-1'&&has(zone)", true),
    ];
    for (s, want) in cases {
        assert_eq!(sel(s).matches(&l), want, "selector {s:?}");
    }
}

#[test]
fn and_binds_tighter_than_or() {
    let e = sel("has(a) || has(b) && has(c)");
    assert_eq!(
        e.expr(),
        &Expr::Or(vec![
            Expr::Has("a".into()),
            Expr::And(vec![Expr::Has("b".into()), Expr::Has("c".into())]),
        ])
    );
    assert!(e.matches(&labels(&[("a", "")])));
    assert!(!e.matches(&labels(&[("b", "")])));
}

#[test]
fn display_is_canonical() {
    assert_eq!(
        sel("rack==\"r1\"&&(a in {'y','x'}||!has(b))").to_string(),
        "rack == 'r1' && (a in {'x', 'y'} || !has(b))"
    );
    assert_eq!(sel("!k == 'v'").to_string(), "!(k == 'v')");
    assert_eq!(sel("k == \"it's\"").to_string(), "k == \"it's\"");
    assert_eq!(sel("").to_string(), "all()");
}

#[test]
fn parse_errors_show_position_and_expectation() {
    let cases = [
        (
            "rack = 'a'",
            "invalid selector \"rack = 'a'\" at byte 5: expected a label \
             key, a quoted string, an operator or a parenthesis, found '='",
        ),
        (
            "rack == a",
            "invalid selector \"rack == a\" at byte 8: expected a quoted \
             string such as 'value', found \"a\"",
        ),
        (
            "rack is 'a'",
            "invalid selector \"rack is 'a'\" at byte 5: expected one of \
             ==, !=, in, not in, contains, starts with, ends with, found \
             \"is\"",
        ),
        (
            "has(a",
            "invalid selector \"has(a\" at byte 5: expected \")\", found \
             end of input",
        ),
        (
            "a == 'x",
            "invalid selector \"a == 'x\" at byte 5: expected a closing ' \
             for the string, found end of input",
        ),
        (
            "a in {'x' 'y'}",
            "invalid selector \"a in {'x' 'y'}\" at byte 10: expected \
             \",\" or \"}\", found string \"y\"",
        ),
        (
            "has(a) has(b)",
            "invalid selector \"has(a) has(b)\" at byte 7: expected \
             \"&&\", \"||\" or the end of the selector, found \"has\"",
        ),
        (
            "has(a) &&",
            "invalid selector \"has(a) &&\" at byte 9: expected a label \
             key, \"all()\", \"has(key)\", \"!\" or \"(\", found end of \
             input",
        ),
        (
            "a starts 'x'",
            "invalid selector \"a starts 'x'\" at byte 9: expected \
             \"with\", found string \"x\"",
        ),
    ];
    for (input, want) in cases {
        let err = Selector::parse(input).expect_err(input);
        assert_eq!(err.to_string(), want);
    }
}

// ===== property tests =====

fn key() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9._/-]{0,8}"
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9 ._-]{0,6}",
        "[a-z]{0,3}'[a-z]{0,3}",
        "[a-z]{0,3}\"[a-z]{0,3}",
    ]
}

fn leaf() -> impl Strategy<Value = Expr> {
    let set = || proptest::collection::btree_set(value(), 0..4);
    prop_oneof![
        Just(Expr::All),
        Just(Expr::Global),
        key().prop_map(Expr::Has),
        (key(), value()).prop_map(|(k, v)| Expr::Eq(k, v)),
        (key(), value()).prop_map(|(k, v)| Expr::Ne(k, v)),
        (key(), set()).prop_map(|(k, s)| Expr::In(k, s)),
        (key(), set()).prop_map(|(k, s)| Expr::NotIn(k, s)),
        (key(), value()).prop_map(|(k, v)| Expr::Contains(k, v)),
        (key(), value()).prop_map(|(k, v)| Expr::StartsWith(k, v)),
        (key(), value()).prop_map(|(k, v)| Expr::EndsWith(k, v)),
    ]
}

fn expr() -> impl Strategy<Value = Expr> {
    leaf().prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            inner.clone().prop_map(|e| Expr::Not(Box::new(e))),
            proptest::collection::vec(inner.clone(), 2..4).prop_map(Expr::And),
            proptest::collection::vec(inner, 2..4).prop_map(Expr::Or),
        ]
    })
}

proptest! {
    #[test]
    fn display_round_trips(e in expr()) {
        let text = e.to_string();
        let back = Selector::parse(&text)
            .unwrap_or_else(|err| panic!("{text:?}: {err}"));
        prop_assert_eq!(back.expr(), &e, "text {:?}", text);
    }

    #[test]
    fn parse_never_panics(s in "[ -~]{0,40}") {
        let _ = Selector::parse(&s);
    }
}
