//! table-diff: which rows differ between nodes.
//!
//! 1. **Preflight**: on every node, as the caller's role, the table exists
//!    with the same columns, types and primary key (differences are
//!    reported, not guessed around).
//! 2. **Groups and chunks**: the planner's row estimate (never a count)
//!    sizes the work. Rows are grouped by a 64-bit hash of their key, so a
//!    row lands in the same group on every node, about `block_size / 16`
//!    rows a group. When `concurrency_factor` gives more than one scan per
//!    node, the key space is cut into contiguous chunks from sampled keys
//!    (`TABLESAMPLE SYSTEM`, a page per boundary); the first and last chunks
//!    are open, so rows beyond the sampled keys are still covered.
//! 3. **Hashing**, inside PostgreSQL, one scan per node and chunk, all nodes
//!    at once: per group, the row count and the 64-bit XOR aggregate of
//!    `hashtextextended(row text, 0)` over the comparable text of each row
//!    (`t::text` when exact, else `ROW(...)::text` with normalised values,
//!    see [`crate::table::Column::comparable_sql`]). A difference hides
//!    here only if two 64-bit XORs collide (about 1 in 2^64 per group).
//! 4. **Narrowing**: for the groups whose counts or hashes differ between
//!    any two nodes, each node's keys and row hashes (two independent 64-bit
//!    hashes, 128 bits per row) are fetched, many groups per statement and
//!    at most 200,000 rows per batch, and compared key by key in Rust.
//!    Memory is bounded by that batch size and `max_diff_rows`, never by
//!    the table size.
//! 5. **Rows**: the differing rows are fetched (every column as PostgreSQL's
//!    text) and reported per node pair, in key order.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use ace_session::{ClusterSession, NodeSession, Scope};
use futures::future::try_join_all;
use sqlx::Row;

use crate::error::{EngineError, Result};
use crate::filter::Filter;
use crate::report::{DiffReport, DiffSummary, PairRows, RowValues};
use crate::sql::{Key, KeyRange, TableSql};
use crate::table::{TableInfo, check_agreement};

/// A group (the unit of the first pass) holds about `block_size / 16`
/// rows, so scattered differences narrow to few rows in one pass.
const GROUP_DIVISOR: u64 = 16;
/// At most this many groups per chunk, which bounds the first pass's
/// memory (about 40 bytes a group per node).
const MAX_GROUPS: u64 = 1 << 18;
/// Most rows fetched (as key and hashes) per node in one statement of
/// pass 2.
const GROUP_BATCH_ROWS: i64 = 200_000;

/// What to compare and how; field names follow upstream ACE.
#[derive(Debug, Clone)]
pub struct TableDiffOptions {
    /// Schema of the table.
    pub schema: String,
    /// Table name.
    pub table: String,
    /// Rows per hashed bucket.
    pub block_size: u64,
    /// Parallel scans per node, as a multiple of the CPU count (0 < f <= 4).
    pub concurrency_factor: f64,
    /// Largest bucket compared row by row; bigger mismatched buckets are
    /// split first.
    pub compare_unit_size: u64,
    /// Most differing rows reported per node pair (0 = no limit).
    pub max_diff_rows: u64,
    /// A filter over the table's columns (see [`crate::filter`]).
    pub table_filter: Option<String>,
    /// The role the work runs as (an API caller's CN); `None` is ACE's user.
    pub role: Option<String>,
}

impl TableDiffOptions {
    /// Options for `schema.table` with upstream's defaults.
    pub fn new(schema: &str, table: &str) -> Self {
        TableDiffOptions {
            schema: schema.to_owned(),
            table: table.to_owned(),
            block_size: 1000,
            concurrency_factor: 1.0,
            compare_unit_size: 10_000,
            max_diff_rows: 1_000_000,
            table_filter: None,
            role: None,
        }
    }

    fn validate(&self) -> Result<()> {
        if self.block_size == 0 {
            return Err(EngineError::Options {
                field: "block_size",
                reason: "must be at least 1".into(),
            });
        }
        if !(self.concurrency_factor > 0.0 && self.concurrency_factor <= 4.0) {
            return Err(EngineError::Options {
                field: "concurrency_factor",
                reason: format!("{} is outside (0, 4]", self.concurrency_factor),
            });
        }
        if self.compare_unit_size == 0 {
            return Err(EngineError::Options {
                field: "compare_unit_size",
                reason: "must be at least 1".into(),
            });
        }
        Ok(())
    }
}

/// Progress and cancellation, shared with whoever runs the diff.
#[derive(Debug, Default)]
pub struct Progress {
    done: AtomicU64,
    total: AtomicU64,
    cancelled: AtomicBool,
}

impl Progress {
    /// A fresh progress counter.
    pub fn new() -> Arc<Self> {
        Arc::new(Progress::default())
    }

    /// Units done and units known so far.
    pub fn get(&self) -> (u64, u64) {
        (
            self.done.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
        )
    }

    /// Asks the operation to stop at its next step.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }

    fn add_total(&self, n: u64) {
        self.total.fetch_add(n, Ordering::Relaxed);
    }

    fn add_done(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }

    /// [`EngineError::Cancelled`] once [`Progress::cancel`] was called.
    pub(crate) fn check(&self) -> Result<()> {
        if self.cancelled.load(Ordering::Relaxed) {
            Err(EngineError::Cancelled)
        } else {
            Ok(())
        }
    }
}

/// A group's fingerprint on one node: its row count and the XOR of its
/// rows' 64-bit hashes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Fingerprint {
    count: i64,
    hash: i64,
}

/// Runs table-diff on every node of `sessions`.
///
/// # Errors
///
/// Session errors (a node down names the node), preflight failures
/// ([`EngineError::TableMissing`], [`EngineError::NoPrimaryKey`],
/// [`EngineError::SchemaMismatch`]), a refused filter, bad options, or
/// [`EngineError::Cancelled`].
pub async fn table_diff(
    sessions: &ClusterSession,
    options: &TableDiffOptions,
    progress: &Progress,
) -> Result<DiffReport> {
    options.validate()?;
    let started_at = time::OffsetDateTime::now_utc();
    let started = Instant::now();
    let nodes = sessions.nodes();
    if nodes.len() < 2 {
        return Err(EngineError::Options {
            field: "nodes",
            reason: format!("table-diff compares 2 or more nodes, got {}", nodes.len()),
        });
    }

    let infos = preflight_all(
        sessions,
        &options.schema,
        &options.table,
        options.role.as_deref(),
    )
    .await?;
    let table = infos[0].1.clone();
    let filter = options
        .table_filter
        .as_deref()
        .filter(|f| !f.trim().is_empty())
        .map(|f| Filter::parse(f, &table.column_names()))
        .transpose()?;
    // `t::text` is the cheapest row text, and exact when every node has the
    // columns in the same order and no value needs normalising.
    let whole_row = infos
        .iter()
        .all(|(_, info)| info.column_names() == table.column_names())
        && table.columns.iter().all(|c| !c.needs_normalising());
    let sql = TableSql::new(&table, filter.as_ref()).with_whole_row(whole_row);
    let scope = Scope::read_only(options.role.as_deref());
    let ctx = Ctx {
        sql: &sql,
        scope: &scope,
        progress,
    };

    // How big the table is, from the node with the largest estimate
    // (never analysed: a guess from the size on disk).
    let (sample_node, estimate, pages) = infos
        .iter()
        .enumerate()
        .map(|(index, (_, info))| {
            let estimate = if info.estimated_rows >= 0.0 {
                info.estimated_rows
            } else {
                info.pages as f64 * 100.0
            };
            (index, estimate, info.pages)
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or((0, 0.0, 0));

    // Chunks: contiguous key ranges scanned in parallel on each node when
    // the machine has the cores for it; the first and last are open, so
    // rows beyond the sampled keys are covered.
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get()) as f64;
    let chunks = ((options.concurrency_factor * cpus) / nodes.len() as f64)
        .floor()
        .max(1.0) as usize;
    let boundaries = if chunks > 1 {
        let per_chunk = (estimate / chunks as f64).ceil().max(1.0) as u64;
        ctx.boundaries(&nodes[sample_node], estimate, pages, per_chunk)
            .await?
    } else {
        Vec::new()
    };
    let ranges: Vec<KeyRange> = (0..=boundaries.len())
        .map(|i| KeyRange {
            lo: (i > 0).then(|| boundaries[i - 1].clone()),
            hi: boundaries.get(i).cloned(),
        })
        .collect();
    let group_rows = (options.block_size / GROUP_DIVISOR).max(1);
    let groups_wanted = (estimate / ranges.len() as f64 / group_rows as f64).ceil() as u64;
    let mask = groups_wanted.clamp(1, MAX_GROUPS).next_power_of_two() - 1;
    progress.check()?;
    tracing::debug!(
        elapsed = ?started.elapsed(),
        chunks = ranges.len(),
        groups = mask + 1,
        whole_row,
        "planned"
    );

    // Pass 1: group fingerprints on every node, every chunk at once.
    progress.add_total(ranges.len() as u64);
    let per_node = try_join_all(
        nodes
            .iter()
            .map(|node| ctx.group_fingerprints(node, &ranges, mask)),
    )
    .await?;
    progress.add_done(ranges.len() as u64);

    // Which groups differ between any two nodes, and their largest count.
    let all_groups: BTreeSet<(usize, i64)> = per_node
        .iter()
        .flat_map(|fps| fps.keys().copied())
        .collect();
    let mut mismatched: Vec<((usize, i64), i64)> = Vec::new();
    for group in all_groups {
        let fps: Vec<Fingerprint> = per_node
            .iter()
            .map(|fps| fps.get(&group).copied().unwrap_or_default())
            .collect();
        if fps.iter().any(|fp| *fp != fps[0]) {
            let largest = fps.iter().map(|fp| fp.count).max().unwrap_or(0);
            mismatched.push((group, largest));
        }
    }
    drop(per_node);
    let mismatched_groups = mismatched.len();
    tracing::debug!(elapsed = ?started.elapsed(), groups = mismatched.len(), "groups hashed");

    // Pass 2: the rows of mismatched groups, in batches of at most
    // GROUP_BATCH_ROWS rows per node (one scan per chunk and batch),
    // compared key by key in Rust.
    let pairs: Vec<(usize, usize)> = (0..nodes.len())
        .flat_map(|a| ((a + 1)..nodes.len()).map(move |b| (a, b)))
        .collect();
    let mut collector = Collector::new(&pairs, options.max_diff_rows);
    let batch_rows = (options.compare_unit_size as i64).max(GROUP_BATCH_ROWS);
    let mut batches: Vec<(usize, Vec<i64>)> = Vec::new();
    let mut rows_in_batch = 0;
    for ((chunk, group), largest) in mismatched {
        match batches.last_mut() {
            Some((last_chunk, groups))
                if *last_chunk == chunk && rows_in_batch + largest <= batch_rows =>
            {
                groups.push(group);
                rows_in_batch += largest;
            }
            _ => {
                batches.push((chunk, vec![group]));
                rows_in_batch = largest;
            }
        }
    }
    progress.add_total(batches.len() as u64);
    for (chunk, groups) in batches {
        progress.check()?;
        if collector.full() {
            break;
        }
        let range = &ranges[chunk];
        let hashes = try_join_all(
            nodes
                .iter()
                .map(|node| ctx.group_row_hashes(node, range, mask, &groups)),
        )
        .await?;
        collector.compare(&hashes);
        progress.add_done(1);
    }

    tracing::debug!(elapsed = ?started.elapsed(), "rows compared");
    // Rows for every differing key, per node.
    let wanted = collector.keys_per_node(nodes.len());
    let rows = try_join_all(
        nodes
            .iter()
            .zip(&wanted)
            .map(|(node, keys)| ctx.rows(node, keys)),
    )
    .await?;

    let names: Vec<String> = nodes.iter().map(|n| n.name().to_owned()).collect();
    let mut diffs = BTreeMap::new();
    let mut counts = BTreeMap::new();
    let mut limit_reached = false;
    for (index, &(a, b)) in pairs.iter().enumerate() {
        let pair = &collector.pairs[index];
        limit_reached |= pair.limit_reached;
        if pair.keys.is_empty() {
            continue;
        }
        let pick = |node: usize| -> Vec<RowValues> {
            rows[node]
                .iter()
                .filter(|(key, _)| pair.keys.contains(key))
                .map(|(_, row)| row.clone())
                .collect()
        };
        let (name_a, name_b) = (&names[a], &names[b]);
        let key = crate::report::pair_key(name_a, name_b);
        counts.insert(key.clone(), pair.keys.len() as u64);
        let mut by_node = BTreeMap::new();
        by_node.insert(name_a.clone(), pick(a));
        by_node.insert(name_b.clone(), pick(b));
        diffs.insert(key, PairRows { rows: by_node });
    }

    tracing::debug!(elapsed = ?started.elapsed(), "rows fetched");
    let finished_at = time::OffsetDateTime::now_utc();
    Ok(DiffReport {
        diffs,
        summary: DiffSummary {
            schema: table.schema.clone(),
            table: table.name.clone(),
            table_filter: options
                .table_filter
                .clone()
                .filter(|f| !f.trim().is_empty()),
            effective_filter: filter.as_ref().map(|f| f.sql().to_owned()),
            nodes: names,
            block_size: options.block_size,
            compare_unit_size: options.compare_unit_size,
            concurrency_factor: options.concurrency_factor,
            max_diff_rows: options.max_diff_rows,
            start_time: crate::report::rfc3339(started_at),
            end_time: crate::report::rfc3339(finished_at),
            time_taken: crate::report::go_duration(started.elapsed()),
            diff_rows_count: counts,
            diff_row_limit_reached: limit_reached,
            total_rows_checked: estimate.max(0.0) as i64,
            initial_ranges_count: ranges.len() as u64,
            mismatched_ranges_count: mismatched_groups as u64,
            primary_key: table.primary_key.clone(),
            columns: table
                .columns
                .iter()
                .map(|c| crate::report::ColumnInfo {
                    name: c.name.clone(),
                    data_type: c.type_sql.clone(),
                })
                .collect(),
        },
        columns: table.columns.clone(),
    })
}

/// Loads the table on every node as the caller's role and checks they agree.
///
/// # Errors
///
/// Role, privilege, missing table and structure errors.
pub async fn preflight(
    sessions: &ClusterSession,
    schema: &str,
    table: &str,
    role: Option<&str>,
) -> Result<TableInfo> {
    let infos = preflight_all(sessions, schema, table, role).await?;
    Ok(infos
        .into_iter()
        .next()
        .map(|(_, info)| info)
        .expect("a session has nodes"))
}

/// [`preflight`], returning every node's view of the table.
async fn preflight_all(
    sessions: &ClusterSession,
    schema: &str,
    table: &str,
    role: Option<&str>,
) -> Result<Vec<(String, TableInfo)>> {
    if let Some(role) = role {
        sessions.check_role(role).await?;
    }
    let scope = Scope::read_only(role);
    let infos = try_join_all(sessions.nodes().iter().map(|node| {
        let scope = scope.clone();
        async move {
            let mut tx = node.begin(&scope).await?;
            let info = TableInfo::load(&mut tx, schema, table).await?;
            tx.commit().await?;
            Ok::<_, EngineError>((node.name().to_owned(), info))
        }
    }))
    .await?;
    check_agreement(&infos)?;
    sessions
        .check_table_privileges(role, schema, table, &["SELECT"])
        .await?;
    Ok(infos)
}

pub(crate) struct Ctx<'a> {
    pub(crate) sql: &'a TableSql,
    pub(crate) scope: &'a Scope,
    pub(crate) progress: &'a Progress,
}

impl Ctx<'_> {
    /// Sorted boundary keys about `block_size` rows apart.
    async fn boundaries(
        &self,
        node: &NodeSession,
        estimate: f64,
        pages: i64,
        block_size: u64,
    ) -> Result<Vec<Key>> {
        let wanted = (estimate / block_size as f64).ceil() as usize;
        if wanted <= 1 {
            return Ok(Vec::new());
        }
        // TABLESAMPLE SYSTEM takes whole pages, whose keys are often
        // neighbours; sample a page per boundary (and four rows) so
        // the boundaries spread evenly over the table (one page each).
        let by_rows = 400.0 * wanted as f64 / estimate;
        let by_pages = if pages > 0 {
            100.0 * wanted as f64 / pages as f64
        } else {
            0.0
        };
        let percent = by_rows.max(by_pages).clamp(0.01, 100.0);
        let mut tx = node.begin(self.scope).await?;
        let rows = sqlx::query(&self.sql.sample_keys())
            .bind(percent as f32)
            .fetch_all(tx.conn())
            .await
            .map_err(|e| EngineError::query(node.name(), e))?;
        tx.commit().await?;
        let keys: Vec<Key> = rows
            .iter()
            .map(|row| key_of(row, 0, self.sql.key_len()))
            .collect::<Result<_, _>>()
            .map_err(|e| EngineError::query(node.name(), e))?;
        let step = (keys.len() as f64 / wanted as f64).max(1.0);
        let mut boundaries: Vec<Key> = Vec::with_capacity(wanted);
        let mut at = step;
        while (at as usize) < keys.len() {
            let key = &keys[at as usize];
            if boundaries.last() != Some(key) {
                boundaries.push(key.clone());
            }
            at += step;
        }
        tracing::debug!(node = %node.name(), sampled = keys.len(), boundaries = boundaries.len(), "boundaries");
        Ok(boundaries)
    }

    /// Pass 1 on one node: fingerprints per (chunk, group).
    async fn group_fingerprints(
        &self,
        node: &NodeSession,
        ranges: &[KeyRange],
        mask: u64,
    ) -> Result<HashMap<(usize, i64), Fingerprint>> {
        let parts = try_join_all(ranges.iter().enumerate().map(|(chunk, range)| async move {
            let sql = self.sql.group_hashes(range, mask);
            let mut query = sqlx::query(&sql);
            for value in self.sql.range_binds(range) {
                query = query.bind(value);
            }
            let mut tx = node.begin(self.scope).await?;
            // The planner cannot know how few groups there are: it would
            // sort every row to disk, or run a parallel partial aggregate
            // whose workers each build the whole table of groups (three
            // times the CPU for one scan). Hash them in memory, in one
            // process per scan; nodes and chunks give the parallelism.
            for setting in [
                "SET LOCAL enable_sort = off",
                "SET LOCAL work_mem = '64MB'",
                "SET LOCAL max_parallel_workers_per_gather = 0",
            ] {
                sqlx::query(setting)
                    .execute(tx.conn())
                    .await
                    .map_err(|e| EngineError::query(node.name(), e))?;
            }
            let rows = query
                .fetch_all(tx.conn())
                .await
                .map_err(|e| EngineError::query(node.name(), e))?;
            tx.commit().await?;
            let mut out = HashMap::with_capacity(rows.len());
            for row in rows {
                let read = || -> Result<(i64, Fingerprint), sqlx::Error> {
                    Ok((
                        row.try_get(0)?,
                        Fingerprint {
                            count: row.try_get(1)?,
                            hash: row.try_get::<Option<i64>, _>(2)?.unwrap_or(0),
                        },
                    ))
                };
                let (group, fp) = read().map_err(|e| EngineError::query(node.name(), e))?;
                out.insert((chunk, group), fp);
            }
            Ok::<_, EngineError>(out)
        }))
        .await?;
        Ok(parts.into_iter().flatten().collect())
    }

    /// Pass 2 on one node: keys and row hashes of the rows of `groups` in
    /// `range`, in one scan.
    async fn group_row_hashes(
        &self,
        node: &NodeSession,
        range: &KeyRange,
        mask: u64,
        groups: &[i64],
    ) -> Result<HashMap<Key, (i64, i64)>> {
        self.progress.check()?;
        let sql = self.sql.group_row_hashes(range, mask);
        let mut query = sqlx::query(&sql);
        for value in self.sql.range_binds(range) {
            query = query.bind(value);
        }
        query = query.bind(groups.to_vec());
        let mut tx = node.begin(self.scope).await?;
        let rows = query
            .fetch_all(tx.conn())
            .await
            .map_err(|e| EngineError::query(node.name(), e))?;
        tx.commit().await?;
        let n = self.sql.key_len();
        let mut out = HashMap::with_capacity(rows.len());
        for row in rows {
            let read = || -> Result<(Key, (i64, i64)), sqlx::Error> {
                Ok((key_of(&row, 0, n)?, (row.try_get(n)?, row.try_get(n + 1)?)))
            };
            let (key, hashes) = read().map_err(|e| EngineError::query(node.name(), e))?;
            out.insert(key, hashes);
        }
        Ok(out)
    }

    /// Every column as text for `keys`, in key order.
    pub(crate) async fn rows(
        &self,
        node: &NodeSession,
        keys: &BTreeSet<Key>,
    ) -> Result<Vec<(Key, RowValues)>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let sql = self.sql.rows_for_keys();
        let key_len = self.sql.key_len();
        let mut out = Vec::with_capacity(keys.len());
        let keys: Vec<&Key> = keys.iter().collect();
        let mut tx = node.begin(self.scope).await?;
        for batch in keys.chunks(5000) {
            let mut query = sqlx::query(&sql);
            for column in 0..key_len {
                let values: Vec<String> = batch.iter().map(|key| key[column].clone()).collect();
                query = query.bind(values);
            }
            let rows = query
                .fetch_all(tx.conn())
                .await
                .map_err(|e| EngineError::query(node.name(), e))?;
            for row in rows {
                let read = || -> Result<(Key, RowValues), sqlx::Error> {
                    let key = key_of(&row, 0, key_len)?;
                    let values = (key_len + 2..row.len())
                        .map(|i| row.try_get::<Option<String>, _>(i))
                        .collect::<Result<_, _>>()?;
                    Ok((key, values))
                };
                out.push(read().map_err(|e| EngineError::query(node.name(), e))?);
            }
        }
        tx.commit().await?;
        Ok(out)
    }
}

pub(crate) fn key_of(
    row: &sqlx::postgres::PgRow,
    first: usize,
    len: usize,
) -> Result<Key, sqlx::Error> {
    (first..first + len)
        .map(|i| row.try_get::<String, _>(i))
        .collect()
}

/// Differing keys per node pair, up to `max_diff_rows` each.
struct Collector {
    pairs: Vec<PairState>,
    max: u64,
}

struct PairState {
    a: usize,
    b: usize,
    keys: BTreeSet<Key>,
    limit_reached: bool,
}

impl Collector {
    fn new(pairs: &[(usize, usize)], max: u64) -> Self {
        Collector {
            pairs: pairs
                .iter()
                .map(|&(a, b)| PairState {
                    a,
                    b,
                    keys: BTreeSet::new(),
                    limit_reached: false,
                })
                .collect(),
            max,
        }
    }

    fn full(&self) -> bool {
        self.max > 0 && self.pairs.iter().all(|p| p.limit_reached)
    }

    fn compare(&mut self, hashes: &[HashMap<Key, (i64, i64)>]) {
        for pair in &mut self.pairs {
            let (a, b) = (&hashes[pair.a], &hashes[pair.b]);
            let mut differing: Vec<&Key> = a
                .iter()
                .filter(|(key, hash)| b.get(*key) != Some(*hash))
                .map(|(key, _)| key)
                .chain(b.keys().filter(|key| !a.contains_key(*key)))
                .collect();
            differing.sort();
            for key in differing {
                if self.max > 0 && pair.keys.len() as u64 >= self.max {
                    pair.limit_reached = true;
                    break;
                }
                pair.keys.insert(key.clone());
            }
        }
    }

    fn keys_per_node(&self, nodes: usize) -> Vec<BTreeSet<Key>> {
        let mut out = vec![BTreeSet::new(); nodes];
        for pair in &self.pairs {
            for key in &pair.keys {
                out[pair.a].insert(key.clone());
                out[pair.b].insert(key.clone());
            }
        }
        out
    }
}
