//! table-rerun: re-check exactly the rows of a diff file.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use ace_session::{ClusterSession, Scope};
use futures::future::try_join_all;
use sqlx::Row;

use crate::diff::{Progress, key_of, preflight};
use crate::error::{EngineError, Result};
use crate::report::{DiffFile, DiffReport, DiffSummary, PairRows, RowValues, pair_key, value_text};
use crate::sql::{Key, TableSql};

/// A fetched row: its two hashes and its values.
type Fetched = ((i64, i64), RowValues);

/// Re-reads, on every node of the diff file, the rows whose primary keys
/// the file lists, and reports those that still differ, in the same shape
/// (`summary.nodes` and pairs as in the file). An empty report means every
/// difference is resolved.
///
/// # Errors
///
/// [`EngineError::DiffFile`] when the file names a node the session does
/// not have or a table that differs from the file (other columns or key);
/// session and preflight errors as for table-diff.
pub async fn table_rerun(
    sessions: &ClusterSession,
    file: &DiffFile,
    role: Option<&str>,
    progress: &Progress,
) -> Result<DiffReport> {
    let started_at = time::OffsetDateTime::now_utc();
    let started = Instant::now();
    let summary = &file.summary;
    let bad = |reason: String| EngineError::DiffFile {
        path: file.path.clone(),
        reason,
    };
    let mut nodes = summary.nodes.clone();
    if nodes.is_empty() {
        nodes = file.nodes();
    }
    for node in &nodes {
        if sessions.node(node).is_none() {
            return Err(bad(format!(
                "node {node} of the diff file is not in the cluster selection"
            )));
        }
    }
    let table = preflight(sessions, &summary.schema, &summary.table, role).await?;
    if table.primary_key != summary.primary_key {
        return Err(bad(format!(
            "primary key ({}) differs from the table's ({})",
            summary.primary_key.join(", "),
            table.primary_key.join(", ")
        )));
    }
    for column in &summary.columns {
        match table.column(&column.name) {
            Some(found) if found.type_sql == column.data_type => {}
            _ => {
                return Err(bad(format!(
                    "column {} {} is not in the table as recorded",
                    column.name, column.data_type
                )));
            }
        }
    }

    // Every key the file mentions, as text PostgreSQL parses back.
    let mut keys: BTreeSet<Key> = BTreeSet::new();
    for by_node in file.pairs.values() {
        for rows in by_node.values() {
            for row in rows {
                let key: Option<Key> = summary
                    .primary_key
                    .iter()
                    .map(|column| row.get(column).and_then(value_text))
                    .collect();
                keys.extend(key);
            }
        }
    }
    progress.check()?;

    let sql = TableSql::new(&table, None);
    let scope = Scope::read_only(role);
    let fetched = try_join_all(nodes.iter().map(|name| {
        let sql = &sql;
        let scope = &scope;
        let keys = &keys;
        async move {
            let node = sessions.node(name).expect("checked above");
            fetch(node, sql, scope, keys).await
        }
    }))
    .await?;

    let mut diffs = BTreeMap::new();
    let mut counts = BTreeMap::new();
    for a in 0..nodes.len() {
        for b in (a + 1)..nodes.len() {
            let pair = pair_key(&nodes[a], &nodes[b]);
            if !file.pairs.is_empty() && !file.pairs.contains_key(&pair) {
                continue;
            }
            let (rows_a, rows_b) = (&fetched[a], &fetched[b]);
            let mut differing: Vec<&Key> = rows_a
                .iter()
                .filter(|(key, (hash, _))| rows_b.get(*key).map(|(h, _)| h) != Some(hash))
                .map(|(key, _)| key)
                .chain(rows_b.keys().filter(|key| !rows_a.contains_key(*key)))
                .collect();
            differing.sort_by(|x, y| crate::sql::key_order(x, y));
            if differing.is_empty() {
                continue;
            }
            let pick = |rows: &HashMap<Key, Fetched>| -> Vec<RowValues> {
                differing
                    .iter()
                    .filter_map(|key| rows.get(*key).map(|(_, row)| row.clone()))
                    .collect()
            };
            counts.insert(pair.clone(), differing.len() as u64);
            let mut by_node = BTreeMap::new();
            by_node.insert(nodes[a].clone(), pick(rows_a));
            by_node.insert(nodes[b].clone(), pick(rows_b));
            diffs.insert(pair, PairRows { rows: by_node });
        }
    }
    let finished_at = time::OffsetDateTime::now_utc();
    Ok(DiffReport {
        diffs,
        summary: DiffSummary {
            nodes,
            start_time: crate::report::rfc3339(started_at),
            end_time: crate::report::rfc3339(finished_at),
            time_taken: crate::report::go_duration(started.elapsed()),
            diff_rows_count: counts,
            diff_row_limit_reached: false,
            total_rows_checked: keys.len() as i64,
            ..summary.clone()
        },
        columns: table.columns.clone(),
    })
}

async fn fetch(
    node: &ace_session::NodeSession,
    sql: &TableSql,
    scope: &Scope,
    keys: &BTreeSet<Key>,
) -> Result<HashMap<Key, Fetched>> {
    let mut out = HashMap::new();
    if keys.is_empty() {
        return Ok(out);
    }
    let statement = sql.rows_for_keys();
    let key_len = sql.key_len();
    let keys: Vec<&Key> = keys.iter().collect();
    let mut tx = node.begin(scope).await?;
    for batch in keys.chunks(5000) {
        let mut query = sqlx::query(&statement);
        for column in 0..key_len {
            let values: Vec<String> = batch.iter().map(|key| key[column].clone()).collect();
            query = query.bind(values);
        }
        let rows = query
            .fetch_all(tx.conn())
            .await
            .map_err(|e| EngineError::query(node.name(), e))?;
        for row in rows {
            let read = || -> Result<(Key, Fetched), sqlx::Error> {
                let key = key_of(&row, 0, key_len)?;
                let hashes = (row.try_get(key_len)?, row.try_get(key_len + 1)?);
                let values = (key_len + 2..row.len())
                    .map(|i| row.try_get::<Option<String>, _>(i))
                    .collect::<Result<_, _>>()?;
                Ok((key, (hashes, values)))
            };
            let (key, value) = read().map_err(|e| EngineError::query(node.name(), e))?;
            out.insert(key, value);
        }
    }
    tx.commit().await?;
    Ok(out)
}
