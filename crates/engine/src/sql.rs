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

    /// One pass over `range`: per group (the bucket by `width_bucket` over
    /// the boundary keys, and the sub-block `key hash & sub_mask`), the row
    /// count and the 64-bit XOR aggregate of the rows' hashes. (One hash
    /// keeps this pass as cheap as a plain scan; rows are compared with two
    /// hashes, 128 bits, later.) Returns the statement and the number of
    /// boundary array binds, which come first, then the range's binds.
    pub fn bucket_hashes(
        &self,
        boundaries: usize,
        range: &KeyRange,
        sub_mask: u32,
    ) -> (String, usize) {
        let array_binds = if boundaries == 0 { 0 } else { self.keys.len() };
        let (conditions, _) = self.conditions(range, array_binds + 1);
        let sql = format!(
            "SELECT {bucket} AS b, ({key_hash} & {sub_mask})::int4 AS s, count(*), \
             bit_xor(hashtextextended({row}, 0)) FROM {table} AS t{conditions} GROUP BY 1, 2",
            bucket = self.bucket_expr(boundaries),
            key_hash = self.key_hash(),
            row = self.row_text(),
            table = self.table,
        );
        (sql, array_binds)
    }

    /// The bucket of a row: `width_bucket` of its key over the boundary
    /// keys, bound as text arrays `$1..$k` (one per key column).
    fn bucket_expr(&self, boundaries: usize) -> String {
        if boundaries == 0 {
            "0".to_owned()
        } else if self.keys.len() == 1 {
            format!(
                "width_bucket({}, $1::text[]::{}[])",
                self.key_list(),
                self.keys[0].type_sql
            )
        } else {
            let unnest_args: Vec<String> = (1..=self.keys.len())
                .map(|i| format!("${i}::text[]"))
                .collect();
            let aliases: Vec<String> = (1..=self.keys.len()).map(|i| format!("k{i}")).collect();
            let casts: Vec<String> = self
                .keys
                .iter()
                .enumerate()
                .map(|(i, k)| format!("u.k{}::text::{}", i + 1, k.type_sql))
                .collect();
            format!(
                "width_bucket(ROW({}), ARRAY(SELECT ROW({}) FROM unnest({}) WITH ORDINALITY \
                 AS u({}, o) ORDER BY u.o))",
                self.key_list(),
                casts.join(", "),
                unnest_args.join(", "),
                aliases.join(", ")
            )
        }
    }

    /// A 64-bit hash of the row's key (its comparable text), which places
    /// the row in the same sub-block on every node.
    fn key_hash(&self) -> String {
        if self.keys.len() == 1 {
            format!(
                "hashtextextended(({})::text, 0)",
                self.keys[0].comparable_sql("t")
            )
        } else {
            let parts: Vec<String> = self.keys.iter().map(|k| k.comparable_sql("t")).collect();
            format!("hashtextextended(ROW({})::text, 0)", parts.join(", "))
        }
    }

    /// Each row's key and two hashes, for the rows of the given (bucket,
    /// sub-block) groups, in one scan. Binds: the boundary arrays (as for
    /// [`TableSql::bucket_hashes`]), then the groups' bucket numbers and
    /// sub-block numbers as two `int4[]`.
    pub fn group_row_hashes(&self, boundaries: usize, sub_mask: u32) -> String {
        let array_binds = if boundaries == 0 { 0 } else { self.keys.len() };
        let n = self.keys.len();
        let key_aliases: Vec<String> = self
            .keys
            .iter()
            .enumerate()
            .map(|(i, k)| format!("({})::text AS k{}", k.comparable_sql("t"), i + 1))
            .collect();
        let outputs: Vec<String> = (1..=n).map(|i| format!("s.k{i}")).collect();
        let filter = match &self.filter {
            Some(filter) => format!(" AND {filter}"),
            None => String::new(),
        };
        format!(
            "SELECT {outputs}, hashtextextended(s.r, 0), hashtextextended(s.r, 1) \
             FROM (SELECT {keys}, {row} AS r FROM {table} AS t \
                   WHERE ({bucket}, ({key_hash} & {sub_mask})::int4) IN \
                         (SELECT * FROM unnest(${g1}::int4[], ${g2}::int4[])){filter} \
                   OFFSET 0) s",
            outputs = outputs.join(", "),
            keys = key_aliases.join(", "),
            row = self.row_text(),
            table = self.table,
            bucket = self.bucket_expr(boundaries),
            key_hash = self.key_hash(),
            g1 = array_binds + 1,
            g2 = array_binds + 2,
        )
    }

    /// The binds of a range, in the order [`TableSql::bucket_hashes`] and
    /// the other range statements expect them.
    pub fn range_binds(&self, range: &KeyRange) -> Vec<String> {
        self.conditions(range, 1).1
    }

    /// Count and hash aggregate of one range (as in the bucket pass).
    pub fn range_hash(&self, range: &KeyRange) -> String {
        let (conditions, _) = self.conditions(range, 1);
        format!(
            "SELECT count(*), bit_xor(hashtextextended({row}, 0)), 0::int8 \
             FROM {table} AS t{conditions}",
            row = self.row_text(),
            table = self.table,
        )
    }

    /// Each row's key and two hashes in a range.
    pub fn row_hashes(&self, range: &KeyRange) -> String {
        let (conditions, _) = self.conditions(range, 1);
        let outputs: Vec<String> = (1..=self.keys.len()).map(|i| format!("s.k{i}")).collect();
        let key_aliases: Vec<String> = self
            .keys
            .iter()
            .enumerate()
            .map(|(i, k)| format!("({})::text AS k{}", k.comparable_sql("t"), i + 1))
            .collect();
        format!(
            "SELECT {outputs}, hashtextextended(s.r, 0), hashtextextended(s.r, 1) \
             FROM (SELECT {keys}, {row} AS r FROM {table} AS t{conditions} OFFSET 0) s",
            outputs = outputs.join(", "),
            keys = key_aliases.join(", "),
            row = self.row_text(),
            table = self.table,
        )
    }

    /// Each row's key and two hashes for many bounded ranges at once. The
    /// ranges are bound as text arrays: the lower bounds (one array per key
    /// column), then the upper bounds. Rows come back as (range number,
    /// 1-based, key texts..., h0, h1).
    pub fn row_hashes_for_ranges(&self) -> String {
        let n = self.keys.len();
        let lo: Vec<String> = (1..=n).map(|i| format!("lo{i}")).collect();
        let hi: Vec<String> = (1..=n).map(|i| format!("hi{i}")).collect();
        let arrays: Vec<String> = (1..=2 * n).map(|i| format!("${i}::text[]")).collect();
        let bound = |names: &[String]| -> Vec<String> {
            self.keys
                .iter()
                .zip(names)
                .map(|(k, name)| format!("b.{name}::{}", k.type_sql))
                .collect()
        };
        let (lo_values, hi_values) = (bound(&lo), bound(&hi));
        let join = if n == 1 {
            format!(
                "{keys} >= {lo} AND {keys} < {hi}",
                keys = self.key_list(),
                lo = lo_values[0],
                hi = hi_values[0]
            )
        } else {
            format!(
                "ROW({keys}) >= ROW({lo}) AND ROW({keys}) < ROW({hi})",
                keys = self.key_list(),
                lo = lo_values.join(", "),
                hi = hi_values.join(", ")
            )
        };
        let key_aliases: Vec<String> = self
            .keys
            .iter()
            .enumerate()
            .map(|(i, k)| format!("({})::text AS k{}", k.comparable_sql("t"), i + 1))
            .collect();
        let outputs: Vec<String> = (1..=n).map(|i| format!("s.k{i}")).collect();
        let filter = match &self.filter {
            Some(filter) => format!(" WHERE {filter}"),
            None => String::new(),
        };
        format!(
            "SELECT s.i::int8, {outputs}, hashtextextended(s.r, 0), hashtextextended(s.r, 1) \
             FROM (SELECT b.i, {keys}, {row} AS r \
                   FROM unnest({arrays}) WITH ORDINALITY AS b({names}, i) \
                   JOIN {table} AS t ON {join}{filter} OFFSET 0) s",
            outputs = outputs.join(", "),
            keys = key_aliases.join(", "),
            row = self.row_text(),
            arrays = arrays.join(", "),
            names = lo.iter().chain(&hi).cloned().collect::<Vec<_>>().join(", "),
            table = self.table,
        )
    }

    /// The key at `OFFSET $n` of a range (used to split it); the range's
    /// binds come first, then the offset.
    pub fn key_at_offset(&self, range: &KeyRange) -> (String, usize) {
        let (conditions, binds) = self.conditions(range, 1);
        let offset_bind = binds.len() + 1;
        (
            format!(
                "SELECT {} FROM {} AS t{conditions}{} OFFSET ${offset_bind}::int8 LIMIT 1",
                self.key_texts(),
                self.table,
                self.order_by()
            ),
            offset_bind,
        )
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
