//! SQL text the engine builds from catalog facts (never from user input).
//!
//! Identifiers come from the catalog and are quoted; types come from
//! `format_type`; values are always bound. The only caller-written part is
//! the table filter, which arrives here already re-rendered by
//! [`crate::filter`].

use ace_session::quote_ident;

use crate::filter::Filter;
use crate::table::{Column, TableInfo};

/// What a NULL value contributes to a row hash: a fixed 64-bit mark.
const NULL_MARK: i64 = -7_046_029_254_386_353_131;

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
}

impl TableSql {
    /// Statements for `table`, restricted by `filter` when given.
    pub fn new(table: &TableInfo, filter: Option<&Filter>) -> Self {
        TableSql {
            table: table.qualified(),
            keys: table.key_columns().into_iter().cloned().collect(),
            columns: table.columns.clone(),
            filter: filter.map(|f| f.sql().to_owned()),
        }
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

    /// A 64-bit hash of the whole row, `chain` picking one of independent
    /// hashes (0 and 1).
    ///
    /// Each column's value hash ([`Column::hash_sql`], seeded by its
    /// position and the chain) is folded into the hash of the columns
    /// before it through a mixing step, `hashint4extended(0, h)`, which
    /// stirs all 64 bits of `h` as a seed; a last mix ends the row. So
    /// values cannot move between columns or rows unseen, NULL (a fixed
    /// mark) differs from every value including `''`, and no separator is
    /// involved. It hashes columns by name, whatever their order on disk.
    fn row_hash(&self, chain: i64) -> String {
        let mut hash = String::new();
        for (position, column) in self.columns.iter().enumerate() {
            let value = format!(
                "coalesce({}, {NULL_MARK})",
                column.hash_sql("t", (chain << 32) | position as i64)
            );
            hash = if hash.is_empty() {
                value
            } else {
                format!("{value} # hashint4extended(0, {hash})")
            };
        }
        format!("hashint4extended(0, {hash})")
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

    /// A 64-bit hash of the row's key, which places the row in the same
    /// group on every node: each key column's value hash
    /// ([`Column::hash_sql`], seeded by its position), XORed.
    fn key_hash(&self) -> String {
        let parts: Vec<String> = self
            .keys
            .iter()
            .enumerate()
            .map(|(seed, k)| k.hash_sql("t", seed as i64))
            .collect();
        format!("({})", parts.join(" # "))
    }

    /// The number of bits of the key when it is one integer column
    /// (`int2`, `int4`, `int8`, or a domain over one): rows can then be
    /// grouped by key range with arithmetic, and ranges read through the
    /// primary key's index.
    pub fn integer_key_bits(&self) -> Option<u32> {
        match self.keys.as_slice() {
            [key] => match key.base_type.as_str() {
                "int2" => Some(16),
                "int4" => Some(32),
                "int8" => Some(64),
                _ => None,
            },
            _ => None,
        }
    }

    /// The smallest and largest key (an integer key), read from the ends of
    /// the primary key's index; NULLs for an empty table.
    pub fn key_bounds(&self) -> String {
        format!(
            "SELECT min({key})::int8, max({key})::int8 FROM {table} AS t",
            key = self.key_list(),
            table = self.table,
        )
    }

    /// Per group, the row count and the 64-bit XOR aggregate of the rows'
    /// hashes, as three arrays in one row (groups, counts, hashes): tens of
    /// thousands of rows would cost more to send and decode. One hash keeps
    /// this pass as cheap as a plain scan; rows are compared with two
    /// hashes (128 bits) later.
    fn fingerprints(&self, group: &str, conditions: &str) -> String {
        format!(
            "SELECT array_agg(f.g), array_agg(f.n), array_agg(f.h) \
             FROM (SELECT ({group})::int8 AS g, count(*) AS n, bit_xor({row}) AS h \
                   FROM {table} AS t{conditions} GROUP BY 1) f",
            row = self.row_hash(0),
            table = self.table,
        )
    }

    /// Pass 1 by key hash: one scan of `range`, fingerprints per group
    /// `key hash & mask`. Binds: the range's.
    pub fn hash_group_fingerprints(&self, range: &KeyRange, mask: u64) -> String {
        let (conditions, _) = self.conditions(range, 1);
        self.fingerprints(&format!("{} & {mask}", self.key_hash()), &conditions)
    }

    /// Pass 1 by key range (an integer key): fingerprints per group
    /// `key >> shift`, i.e. runs of `2^shift` consecutive keys. When
    /// `bounded`, only keys between `$1` and `$2` (`int8`, inclusive) are
    /// read.
    pub fn range_group_fingerprints(&self, shift: u32, bounded: bool) -> String {
        let key = self.key_list();
        let mut conditions = Vec::new();
        if bounded {
            conditions.push(format!("{key} BETWEEN $1::int8 AND $2::int8"));
        }
        conditions.extend(self.filter.clone());
        let conditions = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        self.fingerprints(&format!("{key} >> {shift}"), &conditions)
    }

    /// Each row's key texts and two row hashes, for the rows a subquery
    /// with the given `FROM ... WHERE` tail reads; one array per key column
    /// and per hash, in one row (cheaper to send and decode than a row per
    /// row).
    fn row_hashes(&self, from: &str, tail: &str) -> String {
        let key_aliases: Vec<String> = self
            .keys
            .iter()
            .enumerate()
            .map(|(i, k)| format!("({})::text AS k{}", k.comparable_sql("t"), i + 1))
            .collect();
        let outputs: Vec<String> = (1..=self.keys.len())
            .map(|i| format!("array_agg(s.k{i})"))
            .collect();
        format!(
            "SELECT {outputs}, array_agg(s.h0), array_agg(s.h1) \
             FROM {from}(SELECT {keys}, {h0} AS h0, {h1} AS h1 \
                         FROM {table} AS t{tail} OFFSET 0) s",
            outputs = outputs.join(", "),
            keys = key_aliases.join(", "),
            h0 = self.row_hash(0),
            h1 = self.row_hash(1),
            table = self.table,
        )
    }

    /// Pass 2 by key hash: each row's key and two hashes, for the rows of
    /// `range` in the given groups, in one scan. Binds: the range's, then
    /// the groups as `int8[]`.
    pub fn hash_group_row_hashes(&self, range: &KeyRange, mask: u64) -> String {
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
        self.row_hashes("", &conditions)
    }

    /// Pass 2 by key range (an integer key): each row's key and two hashes,
    /// for the keys in any of the ranges `[$1[i], $2[i]]` (`int8[]`), each
    /// range read through the primary key's index.
    pub fn range_row_hashes(&self) -> String {
        let mut tail = format!(" WHERE {} BETWEEN b.lo AND b.hi", self.key_list());
        if let Some(filter) = &self.filter {
            tail.push_str(" AND ");
            tail.push_str(filter);
        }
        self.row_hashes(
            "unnest($1::int8[], $2::int8[]) AS b(lo, hi) CROSS JOIN LATERAL ",
            &tail,
        )
    }

    /// The binds of a range, in the order the range statements expect them.
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
            "{}, {}, {}, {}",
            self.key_texts(),
            self.row_hash(0),
            self.row_hash(1),
            columns.join(", "),
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

/// Key order for a report: integers by value (as the table orders them),
/// anything else by its text.
pub(crate) fn key_order(a: &Key, b: &Key) -> std::cmp::Ordering {
    a.iter()
        .zip(b)
        .map(|(x, y)| match (x.parse::<i128>(), y.parse::<i128>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            _ => x.cmp(y),
        })
        .find(|order| order.is_ne())
        .unwrap_or_else(|| a.len().cmp(&b.len()))
}
