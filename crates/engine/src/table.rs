//! What a table looks like on each node, and whether the nodes agree.

use ace_session::{RoleTx, quote_ident, quote_qualified};
use sqlx::Row;

use crate::error::{EngineError, Result};

/// One column of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// The name, as stored (case kept).
    pub name: String,
    /// The type as PostgreSQL prints it (`format_type`), e.g. `numeric(10,2)`.
    pub type_sql: String,
    /// The base type's name (domains resolved), e.g. `int8`, `numeric`.
    pub base_type: String,
    /// The base type's category (`pg_type.typcategory`).
    pub category: char,
    /// A generated column (never written by repairs).
    pub generated: bool,
    /// An identity column (`a` always, `d` by default, or none).
    pub identity: Option<char>,
    /// `NOT NULL`.
    pub not_null: bool,
}

impl Column {
    /// The expression that stands for this column in a row's comparable
    /// text. Values PostgreSQL holds equal must print equally:
    /// `numeric` drops trailing zeros (`1.50` = `1.5`), floats add zero so
    /// `-0` prints as `0`. Everything else prints as it is.
    pub fn comparable_sql(&self, alias: &str) -> String {
        let column = format!("{alias}.{}", quote_ident(&self.name));
        match self.base_type.as_str() {
            "numeric" => format!("trim_scale({column}::numeric)"),
            "float4" => format!("({column}::float4 + 0::float4)"),
            "float8" => format!("({column}::float8 + 0::float8)"),
            _ => column,
        }
    }

    /// A seeded 64-bit hash of this column's value (NULL for NULL), equal
    /// for values PostgreSQL holds equal and the same on every node.
    ///
    /// Common scalar types use their own hash function, which is several
    /// times cheaper than printing the value; every other type hashes its
    /// comparable text ([`Column::comparable_sql`]). A type's own hash is
    /// used only where unequal values never hash alike by construction:
    /// not `numeric` (its hash ignores the sign), `jsonb` or arrays (they
    /// ignore nesting and bounds), nor enums and `reg*` types (they hash
    /// node-local OIDs). `int8`'s hash folds 64 bits into 32, so both
    /// halves are hashed in turn. Text is hashed under the `C` collation,
    /// byte for byte.
    pub fn hash_sql(&self, alias: &str, seed: i64) -> String {
        let column = format!("{alias}.{}", quote_ident(&self.name));
        match self.base_type.as_str() {
            "int2" => format!("hashint2extended({column}, {seed})"),
            "int4" => format!("hashint4extended({column}, {seed})"),
            "int8" => format!(
                "hashint8extended({column} >> 32, hashint8extended({column} & 4294967295, {seed}))"
            ),
            "bool" => format!("hashint4extended({column}::int4, {seed})"),
            "float4" => format!("hashfloat4extended({column}, {seed})"),
            "float8" => format!("hashfloat8extended({column}, {seed})"),
            "text" | "varchar" => format!("hashtextextended({column}::text COLLATE \"C\", {seed})"),
            "bpchar" => format!("hashbpcharextended({column}::bpchar COLLATE \"C\", {seed})"),
            "uuid" => format!("uuid_hash_extended({column}, {seed})"),
            _ => format!(
                "hashtextextended(({})::text COLLATE \"C\", {seed})",
                self.comparable_sql(alias)
            ),
        }
    }

    /// How values of this column are typed in a JSON report.
    pub fn json_kind(&self) -> JsonKind {
        match (self.base_type.as_str(), self.category) {
            ("int2" | "int4" | "int8" | "oid", _) => JsonKind::Integer,
            ("float4" | "float8", _) => JsonKind::Float,
            ("bool", _) => JsonKind::Bool,
            ("json" | "jsonb", _) => JsonKind::Json,
            _ => JsonKind::Text,
        }
    }
}

/// JSON typing of a column's values in reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonKind {
    /// A JSON integer (exact for the whole bigint range).
    Integer,
    /// A JSON number when finite, else the string `NaN`, `Infinity`, ...
    Float,
    /// A JSON boolean.
    Bool,
    /// The JSON document itself.
    Json,
    /// PostgreSQL's text form as a JSON string (numeric, dates, uuid, bytea
    /// hex, arrays, ...).
    Text,
}

/// A table as one node has it.
#[derive(Debug, Clone, PartialEq)]
pub struct TableInfo {
    /// Schema name.
    pub schema: String,
    /// Table name.
    pub name: String,
    /// Columns in `attnum` order.
    pub columns: Vec<Column>,
    /// Primary key column names, in key order.
    pub primary_key: Vec<String>,
    /// Rows, estimated as the planner would: each leaf's `reltuples`
    /// scaled from its `relpages` to its size now, summed over the
    /// partitions of a partitioned table; a leaf never analysed (or
    /// analysed empty and filled since) counts 100 rows a page.
    pub estimated_rows: f64,
    /// Pages on disk now (`pg_relation_size / 8192`), summed over the
    /// partitions.
    pub pages: i64,
}

/// Rows a page when the statistics say nothing about the table's density.
const GUESSED_ROWS_PER_PAGE: f64 = 100.0;

/// One table's (or leaf partition's) rows, estimated the planner's way:
/// the density `reltuples / relpages` of the last ANALYZE or VACUUM times
/// the pages it has now, so a table loaded or emptied since is sized by
/// what is on disk.
fn leaf_estimate(reltuples: f64, relpages: i64, pages: i64) -> f64 {
    if reltuples >= 0.0 && relpages > 0 {
        reltuples / relpages as f64 * pages as f64
    } else {
        pages as f64 * GUESSED_ROWS_PER_PAGE
    }
}

impl TableInfo {
    /// Reads the table's definition on the transaction's node.
    ///
    /// # Errors
    ///
    /// [`EngineError::TableMissing`] when there is no such relation,
    /// [`EngineError::NotATable`] when it is a view, sequence, ...
    pub async fn load(tx: &mut RoleTx, schema: &str, table: &str) -> Result<Self> {
        let node = tx.node().to_owned();
        let query = |e| EngineError::query(&node, e);
        let row = sqlx::query(
            "SELECT c.oid::int8 AS oid, c.relkind::text AS kind
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relname = $2",
        )
        .bind(schema)
        .bind(table)
        .fetch_optional(tx.conn())
        .await
        .map_err(query)?;
        let Some(row) = row else {
            return Err(EngineError::TableMissing {
                node,
                table: quote_qualified(schema, table),
            });
        };
        let kind: String = row.try_get("kind").map_err(query)?;
        let kind = match kind.as_str() {
            "r" | "p" => None,
            "v" => Some("view"),
            "m" => Some("materialized view"),
            "f" => Some("foreign table"),
            "S" => Some("sequence"),
            "i" | "I" => Some("index"),
            "c" => Some("composite type"),
            _ => Some("relation other than a table"),
        };
        if let Some(kind) = kind {
            return Err(EngineError::NotATable {
                node,
                table: quote_qualified(schema, table),
                kind,
            });
        }
        let oid: i64 = row.try_get("oid").map_err(query)?;

        // The size of the table, or of every leaf partition
        // (pg_partition_tree lists nothing for a table that is not
        // partitioned, hence the table itself beside it).
        let leaves: Vec<(f64, i64, i64)> = sqlx::query_as(
            "SELECT c.reltuples::float8, c.relpages::int8,
                    (pg_relation_size(c.oid) / 8192)::int8
             FROM pg_class c
             WHERE c.relkind = 'r'
               AND (c.oid = $1::int8::oid
                    OR c.oid IN (SELECT relid FROM pg_partition_tree($1::int8::oid::regclass)
                                 WHERE isleaf))",
        )
        .bind(oid)
        .fetch_all(tx.conn())
        .await
        .map_err(query)?;
        let estimated_rows = leaves
            .iter()
            .map(|&(reltuples, relpages, pages)| leaf_estimate(reltuples, relpages, pages))
            .sum();
        let pages = leaves.iter().map(|&(_, _, pages)| pages).sum();

        let rows = sqlx::query(
            "SELECT a.attname::text AS name,
                    format_type(a.atttypid, a.atttypmod) AS type_sql,
                    b.typname::text AS base_type,
                    b.typcategory::text AS category,
                    a.attgenerated <> '' AS generated,
                    NULLIF(a.attidentity, '')::text AS identity,
                    a.attnotnull AS not_null
             FROM pg_attribute a
             JOIN pg_type t ON t.oid = a.atttypid
             JOIN pg_type b ON b.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
             WHERE a.attrelid = $1::int8::oid AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY a.attnum",
        )
        .bind(oid)
        .fetch_all(tx.conn())
        .await
        .map_err(query)?;
        let mut columns = Vec::with_capacity(rows.len());
        for row in rows {
            let category: String = row.try_get("category").map_err(query)?;
            let identity: Option<String> = row.try_get("identity").map_err(query)?;
            columns.push(Column {
                name: row.try_get("name").map_err(query)?,
                type_sql: row.try_get("type_sql").map_err(query)?,
                base_type: row.try_get("base_type").map_err(query)?,
                category: category.chars().next().unwrap_or('X'),
                generated: row.try_get("generated").map_err(query)?,
                identity: identity.and_then(|s| s.chars().next()),
                not_null: row.try_get("not_null").map_err(query)?,
            });
        }

        let primary_key: Vec<String> = sqlx::query_scalar(
            "SELECT a.attname::text
             FROM pg_index i
             CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
             WHERE i.indrelid = $1::int8::oid AND i.indisprimary
             ORDER BY k.ord",
        )
        .bind(oid)
        .fetch_all(tx.conn())
        .await
        .map_err(query)?;

        Ok(TableInfo {
            schema: schema.to_owned(),
            name: table.to_owned(),
            columns,
            primary_key,
            estimated_rows,
            pages,
        })
    }

    /// `"schema"."table"`.
    pub fn qualified(&self) -> String {
        quote_qualified(&self.schema, &self.name)
    }

    /// `schema.table` for messages and reports, quoted where a name
    /// needs it (`public."Order Items"`).
    pub fn display_name(&self) -> String {
        ace_session::display_qualified(&self.schema, &self.name)
    }

    /// The column called `name`.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|column| column.name == name)
    }

    /// The primary key columns.
    pub fn key_columns(&self) -> Vec<&Column> {
        self.primary_key
            .iter()
            .filter_map(|name| self.column(name))
            .collect()
    }

    /// Column names, in order.
    pub fn column_names(&self) -> Vec<String> {
        self.columns.iter().map(|c| c.name.clone()).collect()
    }
}

/// Checks that every node has the same columns (names and types, in the
/// same order), the same primary key, and a primary key at all.
///
/// # Errors
///
/// [`EngineError::NoPrimaryKey`] or [`EngineError::SchemaMismatch`] listing
/// every difference.
pub fn check_agreement(tables: &[(String, TableInfo)]) -> Result<()> {
    let Some((first_node, first)) = tables.first() else {
        return Ok(());
    };
    for (node, table) in tables {
        if table.primary_key.is_empty() {
            return Err(EngineError::NoPrimaryKey {
                node: node.clone(),
                table: table.display_name(),
            });
        }
    }
    let mut differences = Vec::new();
    for (node, table) in &tables[1..] {
        for column in &first.columns {
            match table.column(&column.name) {
                None => differences.push(format!(
                    "column {} is on {first_node} but not on {node}",
                    column.name
                )),
                Some(other) if other.type_sql != column.type_sql => differences.push(format!(
                    "column {} is {} on {first_node} but {} on {node}",
                    column.name, column.type_sql, other.type_sql
                )),
                Some(_) => {}
            }
        }
        for column in &table.columns {
            if first.column(&column.name).is_none() {
                differences.push(format!(
                    "column {} is on {node} but not on {first_node}",
                    column.name
                ));
            }
        }
        if table.primary_key != first.primary_key {
            differences.push(format!(
                "primary key is ({}) on {first_node} but ({}) on {node}",
                first.primary_key.join(", "),
                table.primary_key.join(", ")
            ));
        }
    }
    if differences.is_empty() {
        Ok(())
    } else {
        Err(EngineError::SchemaMismatch {
            table: first.display_name(),
            differences,
        })
    }
}

/// Parses `schema.table` as PostgreSQL would: unquoted names fold to lower
/// case, `"Quoted"` names keep theirs; a bare `table` is in `public`.
///
/// # Errors
///
/// [`EngineError::Options`] (field `table`) for anything but one or two
/// names.
pub fn parse_qualified_name(text: &str) -> Result<(String, String)> {
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::parser::Parser;
    let bad = |reason: String| EngineError::Options {
        field: "table",
        reason,
    };
    let dialect = PostgreSqlDialect {};
    let mut parser = Parser::new(&dialect)
        .try_with_sql(text)
        .map_err(|e| bad(format!("{text:?}: {e}")))?;
    let name = parser
        .parse_object_name(false)
        .map_err(|e| bad(format!("{text:?}: {e}")))?;
    if parser.peek_token().token != sqlparser::tokenizer::Token::EOF {
        return Err(bad(format!("{text:?} is not schema.table")));
    }
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|part| {
            let ident = part
                .as_ident()
                .ok_or_else(|| bad(format!("{text:?} is not schema.table")))?;
            Ok(match ident.quote_style {
                Some('"') => ident.value.clone(),
                _ => ident.value.to_lowercase(),
            })
        })
        .collect::<Result<_>>()?;
    match parts.as_slice() {
        [table] => Ok(("public".to_owned(), table.clone())),
        [schema, table] => Ok((schema.clone(), table.clone())),
        _ => Err(bad(format!("{text:?} is not schema.table"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualified_names() {
        assert_eq!(
            parse_qualified_name(r#""My Schema"."Order Items""#).unwrap(),
            ("My Schema".to_owned(), "Order Items".to_owned())
        );
        assert_eq!(
            parse_qualified_name("Public.Accounts").unwrap(),
            ("public".to_owned(), "accounts".to_owned())
        );
        assert_eq!(
            parse_qualified_name("accounts").unwrap(),
            ("public".to_owned(), "accounts".to_owned())
        );
        assert!(parse_qualified_name("a.b.c").is_err());
        assert!(parse_qualified_name("a; drop").is_err());
    }

    #[test]
    fn leaves_are_sized_by_their_pages_now() {
        // Analysed at 100 rows on 2 pages, now 10 pages: 500 rows.
        assert_eq!(leaf_estimate(100.0, 2, 10), 500.0);
        // Never analysed, or analysed empty and filled since: 100 a page.
        assert_eq!(leaf_estimate(-1.0, 0, 10), 1000.0);
        assert_eq!(leaf_estimate(0.0, 0, 10), 1000.0);
        // Emptied and truncated since the last ANALYZE.
        assert_eq!(leaf_estimate(5000.0, 50, 0), 0.0);
    }
}
