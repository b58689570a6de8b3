//! Output formats shared by every command: aligned tables (kubectl's plain
//! style and calicoctl's boxed style), YAML and JSON.

use std::fmt::Write as _;

use serde::Serialize;

/// What `-o` selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// The default table.
    #[default]
    #[value(skip)]
    Table,
    /// The table with extra columns.
    Wide,
    /// YAML documents (one per object, `---`-separated), re-appliable.
    Yaml,
    /// JSON (one object, or an array for several).
    Json,
}

/// Errors turning values into YAML or JSON text.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("cannot render YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("cannot render JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// A table of text cells: headers and rows of the same width.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new<S: Into<String>>(headers: impl IntoIterator<Item = S>) -> Self {
        Table {
            headers: headers.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row; missing cells are blank and extra ones are dropped,
    /// so a short row never shifts later columns.
    pub fn push<S: Into<String>>(
        &mut self,
        cells: impl IntoIterator<Item = S>,
    ) {
        let mut row: Vec<String> = cells.into_iter().map(Into::into).collect();
        row.resize(self.headers.len(), String::new());
        self.rows.push(row);
    }

    /// Whether the table has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Column widths in characters (not bytes: node names may be UTF-8).
    fn widths(&self) -> Vec<usize> {
        let mut w: Vec<usize> =
            self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                w[i] = w[i].max(cell.chars().count());
            }
        }
        w
    }

    /// kubectl's style: left-aligned columns separated by three spaces, no
    /// trailing blanks.
    pub fn render_plain(&self) -> String {
        let widths = self.widths();
        let mut out = String::new();
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    let _ = write!(line, "{cell:<w$}   ", w = widths[i]);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    /// calicoctl's style: `+---+` borders, centred headers, left-aligned
    /// cells.
    pub fn render_boxed(&self) -> String {
        let widths = self.widths();
        let border: String = widths.iter().fold("+".into(), |mut s, w| {
            s.push_str(&"-".repeat(w + 2));
            s.push('+');
            s
        });
        let mut out = String::new();
        out.push_str(&border);
        out.push('\n');
        out.push('|');
        for (h, w) in self.headers.iter().zip(&widths) {
            let _ = write!(out, " {h:^w$} |");
        }
        out.push('\n');
        out.push_str(&border);
        out.push('\n');
        for row in &self.rows {
            out.push('|');
            for (c, w) in row.iter().zip(&widths) {
                let _ = write!(out, " {c:<w$} |");
            }
            out.push('\n');
        }
        out.push_str(&border);
        out.push('\n');
        out
    }
}

/// Serializes `items` as `---`-separated YAML documents (what `apply -f`
/// reads back).
pub fn to_yaml_documents<T: Serialize>(
    items: &[T],
) -> Result<String, OutputError> {
    let mut out = String::new();
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&serde_yaml::to_string(item)?);
    }
    Ok(out)
}

/// Serializes one item as pretty JSON, or several as a JSON array.
pub fn to_json<T: Serialize>(items: &[T]) -> Result<String, OutputError> {
    let mut s = match items {
        [one] => serde_json::to_string_pretty(one)?,
        many => serde_json::to_string_pretty(many)?,
    };
    s.push('\n');
    Ok(s)
}

/// A duration in kubectl's AGE style: `45s`, `12m`, `3h`, `5d`.
pub fn age(seconds: u64) -> String {
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Table {
        let mut t = Table::new(["NAME", "CIDR", "DISABLED"]);
        t.push(["default-ipv4", "10.244.0.0/16", "false"]);
        t.push(["v6", "fd00:10:244::/56"]);
        t
    }

    #[test]
    fn plain_table_aligns_columns_and_pads_short_rows() {
        assert_eq!(
            sample().render_plain(),
            "NAME           CIDR               DISABLED\n\
             default-ipv4   10.244.0.0/16      false\n\
             v6             fd00:10:244::/56\n"
        );
    }

    #[test]
    fn boxed_table_matches_calicoctl_layout() {
        let mut t = Table::new(["PEER ADDRESS", "STATE"]);
        t.push(["192.0.2.10", "up"]);
        t.push(["192.0.2.11", "start", "ignored extra cell"]);
        assert_eq!(
            t.render_boxed(),
            "+--------------+-------+\n\
             | PEER ADDRESS | STATE |\n\
             +--------------+-------+\n\
             | 192.0.2.10   | up    |\n\
             | 192.0.2.11   | start |\n\
             +--------------+-------+\n"
        );
    }

    #[test]
    fn widths_count_characters_not_bytes() {
        let mut t = Table::new(["N", "X"]);
        t.push(["nœud", "1"]);
        assert_eq!(t.render_plain(), "N      X\nnœud   1\n");
    }

    #[test]
    fn yaml_documents_and_json_forms() {
        #[derive(Serialize)]
        struct A {
            a: u32,
        }
        assert_eq!(
            to_yaml_documents(&[A { a: 1 }, A { a: 2 }]).unwrap(),
            "a: 1\n---\na: 2\n"
        );
        assert_eq!(to_json(&[A { a: 1 }]).unwrap(), "{\n  \"a\": 1\n}\n");
        assert_eq!(
            to_json(&[A { a: 1 }, A { a: 2 }]).unwrap(),
            "[\n  {\n    \"a\": 1\n  },\n  {\n    \"a\": 2\n  }\n]\n"
        );
    }

    #[test]
    fn age_uses_kubectl_units() {
        assert_eq!(age(5), "5s");
        assert_eq!(age(119), "119s");
        assert_eq!(age(600), "10m");
        assert_eq!(age(3 * 3600), "3h");
        assert_eq!(age(3 * 86400), "3d");
    }
}
