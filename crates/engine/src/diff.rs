//! table-diff: which rows differ between nodes.
//!
//! 1. **Preflight**: on every node, as the caller's role, the table exists
//!    with the same columns, types and primary key (differences are
//!    reported, not guessed around).
//! 2. **Ranges**: the node with the largest planner estimate samples keys
//!    (`TABLESAMPLE SYSTEM`, a few percent of pages at most, never a full
//!    count) and picks boundaries about `4 × block_size` rows apart. The
//!    first and last ranges are open, so rows beyond the sampled keys, or
//!    that exist on one node only, are still covered. Each range is
//!    fingerprinted in 64 sub-blocks by a hash of the key, so a group holds
//!    about `block_size / 16` rows and scattered differences narrow fast.
//! 3. **Hashing**, inside PostgreSQL, one scan per node (per chunk of the
//!    key space when `concurrency_factor` allows more), all nodes at once:
//!    per bucket, the row count and the 64-bit XOR aggregate of
//!    `hashtextextended(ROW(...)::text, 0)` over the comparable text of each
//!    row (see [`crate::table::Column::comparable_sql`]). A difference hides
//!    here only if two 64-bit XORs collide (about 1 in 2^64 per bucket).
//! 4. **Narrowing**: for groups whose counts or hashes differ between any
//!    two nodes, each node's keys and row hashes (two independent 64-bit
//!    hashes, 128 bits per row) are fetched, many groups per statement, and
//!    compared in Rust. A group larger than `compare_unit_size` (a node with
//!    many extra rows, say) is instead split by keys taken at offsets until
//!    its parts are small. Memory stays bounded by
//!    `compare_unit_size` and `max_diff_rows`, never by the table size.
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

/// Key ranges hold about this many blocks (`block_size` rows each).
const RANGE_BLOCKS: u64 = 4;
/// Each range is fingerprinted in this many sub-blocks, by key hash, so a
/// group holds about `block_size / 16` rows and scattered differences
/// narrow to few rows in one pass.
const SUB_BLOCKS: u32 = 64;
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

    pub(crate) fn check_pub(&self) -> Result<()> {
        self.check()
    }

    fn check(&self) -> Result<()> {
        if self.cancelled.load(Ordering::Relaxed) {
            Err(EngineError::Cancelled)
        } else {
            Ok(())
        }
    }
}

/// A bucket's fingerprint on one node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Fingerprint {
    count: i64,
    h0: i64,
    h1: i64,
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

    // Boundaries, from the node with the largest estimate (never analysed:
    // a guess from the size on disk).
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
    let boundaries = ctx
        .boundaries(
            &nodes[sample_node],
            estimate,
            pages,
            options.block_size.saturating_mul(RANGE_BLOCKS),
        )
        .await?;
    progress.check()?;
    tracing::debug!(elapsed = ?started.elapsed(), boundaries = boundaries.len(), whole_row, "ranges planned");

    // Pass 1: group fingerprints on every node.
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get()) as f64;
    let chunks = ((options.concurrency_factor * cpus) / nodes.len() as f64)
        .floor()
        .max(1.0) as usize;
    let buckets = boundaries.len() + 1;
    progress.add_total(buckets as u64);
    let per_node = try_join_all(
        nodes
            .iter()
            .map(|node| ctx.bucket_fingerprints(node, &boundaries, chunks)),
    )
    .await?;
    progress.add_done(buckets as u64);

    // Which groups differ between any two nodes, and their largest count.
    let all_groups: BTreeSet<(i32, i32)> = per_node
        .iter()
        .flat_map(|fps| fps.keys().copied())
        .collect();
    let mut mismatched: Vec<((i32, i32), i64)> = Vec::new();
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
    let mismatched_buckets: BTreeSet<i32> = mismatched.iter().map(|((b, _), _)| *b).collect();
    tracing::debug!(
        elapsed = ?started.elapsed(),
        groups = mismatched.len(),
        buckets = mismatched_buckets.len(),
        "groups hashed"
    );

    // Pass 2: compare the rows of mismatched groups. Small groups go in
    // batches (one scan per node per batch, returning only their rows);
    // a group too big for memory is narrowed by key range instead.
    let pairs: Vec<(usize, usize)> = (0..nodes.len())
        .flat_map(|a| ((a + 1)..nodes.len()).map(move |b| (a, b)))
        .collect();
    let mut collector = Collector::new(&pairs, options.max_diff_rows);
    let unit = options.compare_unit_size as i64;
    let bucket_range = |bucket: i32| -> KeyRange {
        let i = bucket as usize;
        KeyRange {
            lo: (i > 0).then(|| boundaries[i - 1].clone()),
            hi: boundaries.get(i).cloned(),
        }
    };
    let mut big_buckets: BTreeMap<i32, i64> = BTreeMap::new();
    let mut group_batches: Vec<Vec<(i32, i32)>> = Vec::new();
    let mut batch: Vec<(i32, i32)> = Vec::new();
    let mut rows_in_batch = 0;
    let batch_rows = unit.max(GROUP_BATCH_ROWS);
    for &(group, largest) in &mismatched {
        if largest > unit {
            *big_buckets.entry(group.0).or_default() += largest;
            continue;
        }
        if !batch.is_empty() && rows_in_batch + largest > batch_rows {
            group_batches.push(std::mem::take(&mut batch));
            rows_in_batch = 0;
        }
        rows_in_batch += largest;
        batch.push(group);
    }
    if !batch.is_empty() {
        group_batches.push(batch);
    }
    progress.add_total((group_batches.len() + big_buckets.len()) as u64);
    let group_batches = group_batches;
    for batch in group_batches {
        progress.check()?;
        if collector.full() {
            break;
        }
        let hashes = try_join_all(
            nodes
                .iter()
                .map(|node| ctx.group_row_hashes(node, &boundaries, &batch)),
        )
        .await?;
        collector.compare(&hashes);
        progress.add_done(1);
    }

    // Big groups: split their buckets by key until small, then compare.
    let mut queue: Vec<(KeyRange, i64)> = big_buckets
        .into_iter()
        .map(|(bucket, rows)| (bucket_range(bucket), rows))
        .collect();
    let mut small: Vec<(KeyRange, i64)> = Vec::new();
    while let Some((range, largest)) = queue.pop() {
        progress.check()?;
        if largest > unit {
            let parts = ctx
                .split(nodes, &range, largest, options.compare_unit_size)
                .await?;
            progress.add_total(parts.len() as u64);
            queue.extend(parts);
            progress.add_done(1);
        } else {
            small.push((range, largest));
        }
    }
    // Bounded ranges go in batches, one statement per node per batch;
    // the open-ended first and last ranges go alone.
    small.sort_by(|a, b| a.0.lo.cmp(&b.0.lo));
    let mut batch: Vec<KeyRange> = Vec::new();
    let mut rows_in_batch = 0;
    let mut batches: Vec<Vec<KeyRange>> = Vec::new();
    for (range, largest) in small {
        if range.lo.is_none() || range.hi.is_none() {
            batches.push(vec![range]);
            continue;
        }
        if !batch.is_empty() && rows_in_batch + largest > unit.max(20_000) {
            batches.push(std::mem::take(&mut batch));
            rows_in_batch = 0;
        }
        rows_in_batch += largest;
        batch.push(range);
    }
    if !batch.is_empty() {
        batches.push(batch);
    }
    for batch in batches {
        progress.check()?;
        if collector.full() {
            break;
        }
        let hashes =
            try_join_all(nodes.iter().map(|node| ctx.batch_row_hashes(node, &batch))).await?;
        collector.compare(&hashes);
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
            initial_ranges_count: buckets as u64,
            mismatched_ranges_count: mismatched_buckets.len() as u64,
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

    async fn bucket_fingerprints(
        &self,
        node: &NodeSession,
        boundaries: &[Key],
        chunks: usize,
    ) -> Result<HashMap<(i32, i32), Fingerprint>> {
        // Contiguous chunks of the bucket space, scanned in parallel.
        let chunks = chunks.min(boundaries.len() + 1).max(1);
        let per_chunk = (boundaries.len() + 1).div_ceil(chunks);
        let ranges: Vec<KeyRange> = (0..chunks)
            .map(|c| {
                let first = c * per_chunk;
                let last = ((c + 1) * per_chunk).min(boundaries.len() + 1);
                KeyRange {
                    lo: (first > 0).then(|| boundaries[first - 1].clone()),
                    hi: (last <= boundaries.len() && c + 1 < chunks)
                        .then(|| boundaries[last - 1].clone()),
                }
            })
            .collect();
        let parts = try_join_all(ranges.iter().map(|range| async move {
            let (sql, array_binds) =
                self.sql
                    .bucket_hashes(boundaries.len(), range, SUB_BLOCKS - 1);
            let mut query = sqlx::query(&sql);
            if array_binds > 0 {
                for column in 0..self.sql.key_len() {
                    let values: Vec<String> =
                        boundaries.iter().map(|key| key[column].clone()).collect();
                    query = query.bind(values);
                }
            }
            for value in self.sql.range_binds(range) {
                query = query.bind(value);
            }
            let mut tx = node.begin(self.scope).await?;
            // The planner cannot know how few groups there are and would
            // sort a million rows to disk; hash them in memory instead.
            for setting in ["SET LOCAL enable_sort = off", "SET LOCAL work_mem = '64MB'"] {
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
                let read = || -> Result<((i32, i32), Fingerprint), sqlx::Error> {
                    Ok((
                        (row.try_get(0)?, row.try_get(1)?),
                        Fingerprint {
                            count: row.try_get(2)?,
                            h0: row.try_get::<Option<i64>, _>(3)?.unwrap_or(0),
                            h1: 0,
                        },
                    ))
                };
                let (bucket, fp) = read().map_err(|e| EngineError::query(node.name(), e))?;
                out.insert(bucket, fp);
            }
            Ok::<_, EngineError>(out)
        }))
        .await?;
        Ok(parts.into_iter().flatten().collect())
    }

    /// Keys and row hashes of the rows in `groups` (bucket, sub-block), in
    /// one scan of the node's table.
    async fn group_row_hashes(
        &self,
        node: &NodeSession,
        boundaries: &[Key],
        groups: &[(i32, i32)],
    ) -> Result<HashMap<Key, (i64, i64)>> {
        self.progress.check()?;
        let sql = self.sql.group_row_hashes(boundaries.len(), SUB_BLOCKS - 1);
        let mut query = sqlx::query(&sql);
        if !boundaries.is_empty() {
            for column in 0..self.sql.key_len() {
                let values: Vec<String> =
                    boundaries.iter().map(|key| key[column].clone()).collect();
                query = query.bind(values);
            }
        }
        let buckets: Vec<i32> = groups.iter().map(|g| g.0).collect();
        let subs: Vec<i32> = groups.iter().map(|g| g.1).collect();
        query = query.bind(buckets).bind(subs);
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

    /// Splits a mismatched range into parts of about `unit` rows, by keys
    /// at offsets on the node that has the most rows there; each part is
    /// returned with its largest count across nodes.
    async fn split(
        &self,
        nodes: &[NodeSession],
        range: &KeyRange,
        largest: i64,
        unit: u64,
    ) -> Result<Vec<(KeyRange, i64)>> {
        let counts = try_join_all(nodes.iter().map(|node| self.range_count(node, range))).await?;
        let (biggest, &count) = counts
            .iter()
            .enumerate()
            .max_by_key(|(_, c)| **c)
            .unwrap_or((0, &largest));
        let parts = (count as u64).div_ceil(unit).clamp(2, 64);
        let (sql, offset_bind) = self.sql.key_at_offset(range);
        let node = &nodes[biggest];
        let mut tx = node.begin(self.scope).await?;
        let mut cuts: Vec<Key> = Vec::new();
        for i in 1..parts {
            let offset = (count as u64 * i / parts) as i64;
            let mut query = sqlx::query(&sql);
            for value in self.sql.range_binds(range) {
                query = query.bind(value);
            }
            debug_assert_eq!(offset_bind, self.sql.range_binds(range).len() + 1);
            query = query.bind(offset);
            if let Some(row) = query
                .fetch_optional(tx.conn())
                .await
                .map_err(|e| EngineError::query(node.name(), e))?
            {
                let key = key_of(&row, 0, self.sql.key_len())
                    .map_err(|e| EngineError::query(node.name(), e))?;
                if cuts.last() != Some(&key) && range.lo.as_ref() != Some(&key) {
                    cuts.push(key);
                }
            }
        }
        tx.commit().await?;
        if cuts.is_empty() {
            // Cannot split further (one key); compare it as it is.
            return Ok(vec![(range.clone(), 0)]);
        }
        let mut bounds: Vec<Option<Key>> = vec![range.lo.clone()];
        bounds.extend(cuts.into_iter().map(Some));
        bounds.push(range.hi.clone());
        let parts: Vec<KeyRange> = bounds
            .windows(2)
            .map(|w| KeyRange {
                lo: w[0].clone(),
                hi: w[1].clone(),
            })
            .collect();
        // Re-fingerprint the parts; keep only those that differ.
        let mut out = Vec::new();
        for part in parts {
            let fps =
                try_join_all(nodes.iter().map(|node| self.range_fingerprint(node, &part))).await?;
            if fps.iter().any(|fp| *fp != fps[0]) {
                let largest = fps.iter().map(|fp| fp.count).max().unwrap_or(0);
                out.push((part, largest));
            }
        }
        Ok(out)
    }

    async fn range_count(&self, node: &NodeSession, range: &KeyRange) -> Result<i64> {
        Ok(self.range_fingerprint(node, range).await?.count)
    }

    async fn range_fingerprint(&self, node: &NodeSession, range: &KeyRange) -> Result<Fingerprint> {
        let sql = self.sql.range_hash(range);
        let mut query = sqlx::query(&sql);
        for value in self.sql.range_binds(range) {
            query = query.bind(value);
        }
        let mut tx = node.begin(self.scope).await?;
        let row = query
            .fetch_one(tx.conn())
            .await
            .map_err(|e| EngineError::query(node.name(), e))?;
        tx.commit().await?;
        let read = || -> Result<Fingerprint, sqlx::Error> {
            Ok(Fingerprint {
                count: row.try_get(0)?,
                h0: row.try_get::<Option<i64>, _>(1)?.unwrap_or(0),
                h1: row.try_get::<Option<i64>, _>(2)?.unwrap_or(0),
            })
        };
        read().map_err(|e| EngineError::query(node.name(), e))
    }

    /// Row hashes of every range of `batch` (bounded ranges in one
    /// statement; a single open-ended range on its own).
    async fn batch_row_hashes(
        &self,
        node: &NodeSession,
        batch: &[KeyRange],
    ) -> Result<HashMap<Key, (i64, i64)>> {
        if let [range] = batch
            && (range.lo.is_none() || range.hi.is_none())
        {
            return self.row_hashes(node, range).await;
        }
        let sql = self.sql.row_hashes_for_ranges();
        let n = self.sql.key_len();
        let mut query = sqlx::query(&sql);
        for side in 0..2 {
            for column in 0..n {
                let values: Vec<String> = batch
                    .iter()
                    .map(|range| {
                        let bound = if side == 0 { &range.lo } else { &range.hi };
                        bound
                            .as_ref()
                            .map(|key| key[column].clone())
                            .unwrap_or_default()
                    })
                    .collect();
                query = query.bind(values);
            }
        }
        let mut tx = node.begin(self.scope).await?;
        let rows = query
            .fetch_all(tx.conn())
            .await
            .map_err(|e| EngineError::query(node.name(), e))?;
        tx.commit().await?;
        let mut out = HashMap::with_capacity(rows.len());
        for row in rows {
            let read = || -> Result<(Key, (i64, i64)), sqlx::Error> {
                Ok((
                    key_of(&row, 1, n)?,
                    (row.try_get(n + 1)?, row.try_get(n + 2)?),
                ))
            };
            let (key, hashes) = read().map_err(|e| EngineError::query(node.name(), e))?;
            out.insert(key, hashes);
        }
        Ok(out)
    }

    async fn row_hashes(
        &self,
        node: &NodeSession,
        range: &KeyRange,
    ) -> Result<HashMap<Key, (i64, i64)>> {
        self.progress.check()?;
        let sql = self.sql.row_hashes(range);
        let mut query = sqlx::query(&sql);
        for value in self.sql.range_binds(range) {
            query = query.bind(value);
        }
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
