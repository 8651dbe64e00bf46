//! SQL text the engine builds from catalog facts (never from user input).
//!
//! Identifiers come from the catalog and are quoted; types come from
//! `format_type`; values are always bound. The only caller-written part is
//! the table filter, which arrives here already re-rendered by
//! [`crate::filter`].

use ace_session::quote_ident;

use crate::filter::Filter;
use crate::table::{Column, TableInfo};

/// A key value as text (one string per key column).
pub type Key = Vec<String>;

/// A half-open key range `[lo, hi)`; `None` is unbounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRange {
    /// Inclusive lower bound.
    pub lo: Option<Key>,
    /// Exclusive upper bound.
    pub hi: Option<Key>,
}

/// Builds the statements for one table.
#[derive(Debug, Clone)]
pub struct TableSql {
    table: String,
    keys: Vec<Column>,
    columns: Vec<Column>,
    filter: Option<String>,
    whole_row: bool,
}

impl TableSql {
    /// Statements for `table`, restricted by `filter` when given.
    pub fn new(table: &TableInfo, filter: Option<&Filter>) -> Self {
        TableSql {
            table: table.qualified(),
            keys: table.key_columns().into_iter().cloned().collect(),
            columns: table.columns.clone(),
            filter: filter.map(|f| f.sql().to_owned()),
            whole_row: false,
        }
    }

    /// Hash the whole-row text `t::text` (cheaper than building a new
    /// record) instead of `ROW(col, ...)::text`. Only valid when every node
    /// has the columns in the same order and no column needs normalising
    /// (see [`Column::comparable_sql`]).
    pub fn with_whole_row(mut self, whole_row: bool) -> Self {
        self.whole_row = whole_row;
        self
    }

    /// Number of key columns.
    pub fn key_len(&self) -> usize {
        self.keys.len()
    }

    fn key_list(&self) -> String {
        self.keys
            .iter()
            .map(|k| format!("t.{}", quote_ident(&k.name)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The key columns as comparable text, one output column each.
    fn key_texts(&self) -> String {
        self.keys
            .iter()
            .map(|k| format!("({})::text", k.comparable_sql("t")))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The row's comparable text: NULL differs from '', separators inside
    /// values are quoted by the record output function.
    fn row_text(&self) -> String {
        if self.whole_row {
            return "t::text".to_owned();
        }
        let parts: Vec<String> = self.columns.iter().map(|c| c.comparable_sql("t")).collect();
        format!("ROW({})::text", parts.join(", "))
    }

    /// `WHERE` conditions for a range and the filter; binds start at
    /// `first_bind` and are returned in order.
    fn conditions(&self, range: &KeyRange, first_bind: usize) -> (String, Vec<String>) {
        let mut conditions = Vec::new();
        let mut binds = Vec::new();
        let mut next = first_bind;
        for (bound, op) in [(&range.lo, ">="), (&range.hi, "<")] {
            if let Some(key) = bound {
                let values: Vec<String> = self
                    .keys
                    .iter()
                    .zip(key)
                    .map(|(column, value)| {
                        binds.push(value.clone());
                        let text = format!("${next}::text::{}", column.type_sql);
                        next += 1;
                        text
                    })
                    .collect();
                if self.keys.len() == 1 {
                    conditions.push(format!("{} {op} {}", self.key_list(), values[0]));
                } else {
                    conditions.push(format!(
                        "ROW({}) {op} ROW({})",
                        self.key_list(),
                        values.join(", ")
                    ));
                }
            }
        }
        if let Some(filter) = &self.filter {
            conditions.push(filter.clone());
        }
        let clause = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        (clause, binds)
    }

    fn order_by(&self) -> String {
        format!(" ORDER BY {}", self.key_list())
    }

    /// Keys sampled with `TABLESAMPLE SYSTEM ($1 percent)`, in key order.
    pub fn sample_keys(&self) -> String {
        format!(
            "SELECT {} FROM {} AS t TABLESAMPLE SYSTEM ($1){}",
            self.key_texts(),
            self.table,
            self.order_by()
        )
    }

    /// A 64-bit hash of the row's key (its comparable text), which places
    /// the row in the same group on every node.
    ///
    /// Each key column is hashed with its type's extended hash function
    /// (consistent with the type's equality: `1.5` and `1.50` hash alike),
    /// seeded by its position, and the hashes are XORed; a type without one
    /// is hashed through its comparable text.
    fn key_hash(&self) -> String {
        let parts: Vec<String> = self
            .keys
            .iter()
            .enumerate()
            .map(|(seed, k)| match &k.hash_extended {
                Some(function) => format!("{function}(t.{}, {seed})", quote_ident(&k.name)),
                None => format!(
                    "hashtextextended(({})::text, {seed})",
                    k.comparable_sql("t")
                ),
            })
            .collect();
        format!("({})", parts.join(" # "))
    }

    /// One scan of `range`: per group (`key hash & mask`), the row count
    /// and the 64-bit XOR aggregate of the rows' hashes. One hash keeps this
    /// pass as cheap as a plain scan; rows are compared with two hashes
    /// (128 bits) later. Binds: the range's.
    pub fn group_hashes(&self, range: &KeyRange, mask: u64) -> String {
        let (conditions, _) = self.conditions(range, 1);
        format!(
            "SELECT ({key_hash} & {mask})::int8 AS g, count(*), \
             bit_xor(hashtextextended({row}, 0)) FROM {table} AS t{conditions} GROUP BY 1",
            key_hash = self.key_hash(),
            row = self.row_text(),
            table = self.table,
        )
    }

    /// Each row's key and two hashes, for the rows of `range` in the given
    /// groups, in one scan. Binds: the range's, then the groups as `int8[]`.
    pub fn group_row_hashes(&self, range: &KeyRange, mask: u64) -> String {
        let (conditions, binds) = self.conditions(range, 1);
        let groups = format!(
            "({} & {mask}) = ANY(${}::int8[])",
            self.key_hash(),
            binds.len() + 1
        );
        let conditions = if conditions.is_empty() {
            format!(" WHERE {groups}")
        } else {
            format!("{conditions} AND {groups}")
        };
        let n = self.keys.len();
        let key_aliases: Vec<String> = self
            .keys
            .iter()
            .enumerate()
            .map(|(i, k)| format!("({})::text AS k{}", k.comparable_sql("t"), i + 1))
            .collect();
        let outputs: Vec<String> = (1..=n).map(|i| format!("s.k{i}")).collect();
        format!(
            "SELECT {outputs}, hashtextextended(s.r, 0), hashtextextended(s.r, 1) \
             FROM (SELECT {keys}, {row} AS r FROM {table} AS t{conditions} OFFSET 0) s",
            outputs = outputs.join(", "),
            keys = key_aliases.join(", "),
            row = self.row_text(),
            table = self.table,
        )
    }

    /// The binds of a range, in the order [`TableSql::bucket_hashes`] and
    /// the other range statements expect them.
    pub fn range_binds(&self, range: &KeyRange) -> Vec<String> {
        self.conditions(range, 1).1
    }

    /// Full rows for the keys bound as text arrays (one array per key
    /// column), in key order: first the comparable key texts, then the two
    /// row hashes, then every column as text.
    pub fn rows_for_keys(&self) -> String {
        let columns: Vec<String> = self
            .columns
            .iter()
            .map(|c| format!("t.{}::text", quote_ident(&c.name)))
            .collect();
        let columns = format!(
            "{}, hashtextextended({row}, 0), hashtextextended({row}, 1), {}",
            self.key_texts(),
            columns.join(", "),
            row = self.row_text()
        );
        let casts: Vec<String> = self
            .keys
            .iter()
            .enumerate()
            .map(|(i, k)| format!("${}::text[]::{}[]", i + 1, k.type_sql))
            .collect();
        let aliases: Vec<String> = (1..=self.keys.len()).map(|i| format!("k{i}")).collect();
        let filter = match &self.filter {
            Some(filter) => format!(" AND {filter}"),
            None => String::new(),
        };
        format!(
            "SELECT {columns} FROM {table} AS t \
             WHERE ({keys}) IN (SELECT {aliases} FROM unnest({casts}) AS u({aliases})){filter}{order}",
            table = self.table,
            keys = self.key_list(),
            aliases = aliases.join(", "),
            casts = casts.join(", "),
            order = self.order_by(),
        )
    }
}
