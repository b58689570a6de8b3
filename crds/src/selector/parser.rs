//! Recursive-descent parser for selector expressions.
//!
//! ```text
//! expr    := and ( "||" and )*
//! and     := unary ( "&&" unary )*
//! unary   := "!" unary | primary
//! primary := "(" expr ")" | "all" "(" ")" | "global" "(" ")"
//!          | "has" "(" key ")" | key op
//! op      := "==" str | "!=" str | "in" set | "not" "in" set
//!          | "contains" str | "starts" "with" str | "ends" "with" str
//! set     := "{" [ str ( "," str )* ] "}"
//! ```

use std::collections::BTreeSet;

use super::lexer::{Tok, lex};
use super::{Expr, SelectorError};

const OPERATORS: &str =
    "one of ==, !=, in, not in, contains, starts with, ends with";

/// Parses a whole (non-empty) expression.
pub(super) fn parse(input: &str) -> Result<Expr, SelectorError> {
    let toks = lex(input)?;
    let mut p = Parser {
        input,
        toks,
        pos: 0,
    };
    let e = p.or()?;
    match p.peek() {
        Tok::End => Ok(e),
        _ => Err(p.error("\"&&\", \"||\" or the end of the selector")),
    }
}

struct Parser<'a> {
    input: &'a str,
    toks: Vec<(usize, Tok)>,
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos].1
    }

    fn next(&mut self) -> Tok {
        let t = self.toks[self.pos].1.clone();
        if t != Tok::End {
            self.pos += 1;
        }
        t
    }

    /// An error at the current token.
    fn error(&self, expected: &str) -> SelectorError {
        let (at, tok) = &self.toks[self.pos];
        SelectorError::new(self.input, *at, expected, tok.describe())
    }

    fn expect(&mut self, want: Tok, what: &str) -> Result<(), SelectorError> {
        if *self.peek() == want {
            self.next();
            Ok(())
        } else {
            Err(self.error(what))
        }
    }

    fn or(&mut self) -> Result<Expr, SelectorError> {
        let mut terms = vec![self.and()?];
        while *self.peek() == Tok::OrOr {
            self.next();
            terms.push(self.and()?);
        }
        Ok(if terms.len() == 1 {
            terms.pop().expect("one term")
        } else {
            Expr::Or(terms)
        })
    }

    fn and(&mut self) -> Result<Expr, SelectorError> {
        let mut terms = vec![self.unary()?];
        while *self.peek() == Tok::AndAnd {
            self.next();
            terms.push(self.unary()?);
        }
        Ok(if terms.len() == 1 {
            terms.pop().expect("one term")
        } else {
            Expr::And(terms)
        })
    }

    fn unary(&mut self) -> Result<Expr, SelectorError> {
        if *self.peek() == Tok::Bang {
            self.next();
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, SelectorError> {
        const START: &str = "a label key, \"all()\", \"has(key)\", \"!\" or \
                             \"(\"";
        match self.peek().clone() {
            Tok::LParen => {
                self.next();
                let e = self.or()?;
                self.expect(Tok::RParen, "\")\"")?;
                Ok(e)
            }
            Tok::Ident(word) => {
                self.next();
                let call = *self.peek() == Tok::LParen;
                match word.as_str() {
                    "all" | "global" if call => {
                        self.next();
                        self.expect(Tok::RParen, "\")\"")?;
                        Ok(if word == "all" {
                            Expr::All
                        } else {
                            Expr::Global
                        })
                    }
                    "has" if call => {
                        self.next();
                        let key = self.key()?;
                        self.expect(Tok::RParen, "\")\"")?;
                        Ok(Expr::Has(key))
                    }
                    _ => self.comparison(word),
                }
            }
            _ => Err(self.error(START)),
        }
    }

    fn key(&mut self) -> Result<String, SelectorError> {
        match self.peek().clone() {
            Tok::Ident(k) => {
                self.next();
                Ok(k)
            }
            _ => Err(self.error("a label key")),
        }
    }

    fn comparison(&mut self, key: String) -> Result<Expr, SelectorError> {
        match self.peek().clone() {
            Tok::EqEq => {
                self.next();
                Ok(Expr::Eq(key, self.string()?))
            }
            Tok::NotEq => {
                self.next();
                Ok(Expr::Ne(key, self.string()?))
            }
            Tok::Ident(op) => {
                self.next();
                match op.as_str() {
                    "in" => Ok(Expr::In(key, self.set()?)),
                    "not" => {
                        self.expect(Tok::Ident("in".into()), "\"in\"")?;
                        Ok(Expr::NotIn(key, self.set()?))
                    }
                    "contains" => Ok(Expr::Contains(key, self.string()?)),
                    "starts" => {
                        self.expect(Tok::Ident("with".into()), "\"with\"")?;
                        Ok(Expr::StartsWith(key, self.string()?))
                    }
                    "ends" => {
                        self.expect(Tok::Ident("with".into()), "\"with\"")?;
                        Ok(Expr::EndsWith(key, self.string()?))
                    }
                    _ => {
                        self.pos -= 1;
                        Err(self.error(OPERATORS))
                    }
                }
            }
            _ => Err(self.error(OPERATORS)),
        }
    }

    fn string(&mut self) -> Result<String, SelectorError> {
        match self.peek().clone() {
            Tok::Str(s) => {
                self.next();
                Ok(s)
            }
            _ => Err(self.error("a quoted string such as 'value'")),
        }
    }

    fn set(&mut self) -> Result<BTreeSet<String>, SelectorError> {
        self.expect(Tok::LBrace, "\"{\"")?;
        let mut out = BTreeSet::new();
        if *self.peek() == Tok::RBrace {
            self.next();
            return Ok(out);
        }
        loop {
            out.insert(self.string()?);
            match self.peek() {
                Tok::Comma => {
                    self.next();
                }
                Tok::RBrace => {
                    self.next();
                    return Ok(out);
                }
                _ => return Err(self.error("\",\" or \"}\"")),
            }
        }
    }
}
