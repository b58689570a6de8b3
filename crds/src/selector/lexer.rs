//! Tokens of the Calico selector language, with their byte offsets.

use super::SelectorError;

/// One token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Tok {
    LParen,
    RParen,
    LBrace,
    RBrace,
    Comma,
    Bang,
    AndAnd,
    OrOr,
    EqEq,
    NotEq,
    /// A quoted string (quotes removed; there are no escapes).
    Str(String),
    /// A label key or keyword.
    Ident(String),
    End,
}

impl Tok {
    /// How the token is shown in "found ..." error text.
    pub(super) fn describe(&self) -> String {
        match self {
            Tok::LParen => "\"(\"".into(),
            Tok::RParen => "\")\"".into(),
            Tok::LBrace => "\"{\"".into(),
            Tok::RBrace => "\"}\"".into(),
            Tok::Comma => "\",\"".into(),
            Tok::Bang => "\"!\"".into(),
            Tok::AndAnd => "\"&&\"".into(),
            Tok::OrOr => "\"||\"".into(),
            Tok::EqEq => "\"==\"".into(),
            Tok::NotEq => "\"!=\"".into(),
            Tok::Str(s) => format!("string {s:?}"),
            Tok::Ident(s) => format!("{s:?}"),
            Tok::End => "end of input".into(),
        }
    }
}

/// Characters allowed in label keys (Kubernetes label keys: DNS-style
/// prefix, `/`, name of alphanumerics, `-`, `_`, `.`).
pub(super) fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-')
}

/// Splits `input` into tokens, ending with [`Tok::End`].
pub(super) fn lex(input: &str) -> Result<Vec<(usize, Tok)>, SelectorError> {
    let mut toks = Vec::new();
    let bytes = input.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = input[i..].chars().next().expect("in bounds");
        if c.is_whitespace() {
            i += c.len_utf8();
            continue;
        }
        let start = i;
        let two = input.get(i..i + 2).unwrap_or("");
        let tok = match (c, two) {
            (_, "&&") => Tok::AndAnd,
            (_, "||") => Tok::OrOr,
            (_, "==") => Tok::EqEq,
            (_, "!=") => Tok::NotEq,
            ('(', _) => Tok::LParen,
            (')', _) => Tok::RParen,
            ('{', _) => Tok::LBrace,
            ('}', _) => Tok::RBrace,
            (',', _) => Tok::Comma,
            ('!', _) => Tok::Bang,
            ('\'' | '"', _) => {
                let body = &input[i + 1..];
                let Some(end) = body.find(c) else {
                    return Err(SelectorError::new(
                        input,
                        start,
                        format!("a closing {c} for the string"),
                        "end of input",
                    ));
                };
                toks.push((start, Tok::Str(body[..end].to_string())));
                i += end + 2;
                continue;
            }
            (c, _) if is_key_char(c) => {
                let len = input[i..]
                    .find(|ch: char| !is_key_char(ch))
                    .unwrap_or(input.len() - i);
                toks.push((start, Tok::Ident(input[i..i + len].to_string())));
                i += len;
                continue;
            }
            (c, _) => {
                return Err(SelectorError::new(
                    input,
                    start,
                    "a label key, a quoted string, an operator or a \
                     parenthesis",
                    format!("{c:?}"),
                ));
            }
        };
        i += match tok {
            Tok::AndAnd | Tok::OrOr | Tok::EqEq | Tok::NotEq => 2,
            _ => 1,
        };
        toks.push((start, tok));
    }
    toks.push((input.len(), Tok::End));
    Ok(toks)
}
