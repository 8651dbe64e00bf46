//! table-diff: which rows differ between nodes.
//!
//! 1. **Preflight**: on every node, as the caller's role, the table exists
//!    with the same columns, types and primary key (differences are
//!    reported, not guessed around).
//! 2. **Row hashes**, inside PostgreSQL: each row's 64-bit hash chains its
//!    columns' value hashes through a mixing step (see
//!    [`crate::sql::TableSql`] and [`crate::table::Column::hash_sql`]):
//!    common scalar types are hashed by their own hash functions, several
//!    times cheaper than printing the row, the rest by their text. NULL
//!    differs from every value, and values cannot move between columns or
//!    rows unseen.
//! 3. **Groups**, sized from the planner's estimate (never a count), one
//!    scan per node and chunk, all nodes at once: per group, the row count
//!    and the XOR of the row hashes.
//!    - A single integer key groups by key range, `key >> shift`, about
//!      `block_size / 32` keys a group. The key's extent comes from the
//!      ends of the index; chunks are runs of groups, the first and last
//!      open. A table stored roughly in key order aggregates with its
//!      groups in cache, and a mismatched group is read back through the
//!      index. Mismatched groups above `compare_unit_size` rows are split
//!      into finer ranges, again through the index, until small.
//!    - Any other key groups by a 64-bit hash of the key, about
//!      `block_size / 16` rows a group, so a row lands in the same group on
//!      every node. Chunks are contiguous key ranges cut at sampled keys
//!      (`TABLESAMPLE SYSTEM`, a page per boundary), the first and last
//!      open, so rows beyond the sampled keys are covered.
//!
//!    A difference hides here only if two 64-bit XORs collide (about 1 in
//!    2^64 per group).
//! 4. **Narrowing**: for the groups whose counts or hashes differ between
//!    any two nodes, each node's keys and two independent row hashes (128
//!    bits per row) are fetched, many groups per statement and at most
//!    100,000 rows per batch (50,000 by key range), and compared key by
//!    key in Rust. Memory is bounded by that batch size and
//!    `max_diff_rows`, never by the table size.
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

/// A hash group (the unit of the first pass by key hash) holds about
/// `block_size / 16` rows, so scattered differences narrow to few rows in
/// one pass.
const HASH_GROUP_DIVISOR: u64 = 16;
/// A range group holds about `block_size / 32` rows: more, smaller groups
/// cost little when they follow the table's order, and a mismatched group
/// is read back through the index.
const RANGE_GROUP_DIVISOR: u64 = 32;
/// At most this many groups per chunk, which bounds the first pass's
/// memory (about 40 bytes a group per node).
const MAX_GROUPS: u64 = 1 << 18;
/// Most rows fetched (as key and hashes) per node in one statement of
/// pass 2 by key hash, where every statement is a scan of its chunk.
const GROUP_BATCH_ROWS: i64 = 100_000;
/// Most rows fetched per node in one statement of pass 2 by key range,
/// where statements read through the index, so smaller batches cost no
/// extra scan and keep memory lower.
const RANGE_BATCH_ROWS: i64 = 50_000;

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

/// How the work is sized, from the planner's estimate and the options.
struct Sizing {
    /// Rows per node (the largest estimate).
    estimate: f64,
    /// Pages of the table on `sample_node`.
    pages: i64,
    /// The node with the largest estimate, sampled for chunk boundaries.
    sample_node: usize,
    /// Scans per node in pass 1.
    chunks: usize,
    /// Rows per block (see the divisors).
    block_size: u64,
    /// Largest group compared row by row (range groups).
    compare_unit_size: i64,
}

impl Sizing {
    /// Most rows fetched per node and statement in pass 2.
    fn group_rows(&self, divisor: u64) -> u64 {
        (self.block_size / divisor).max(1)
    }

    fn batch_rows(&self, most: i64) -> i64 {
        self.compare_unit_size.max(most)
    }
}

/// What the group passes found, for the report's summary.
#[derive(Debug, Default)]
struct Counts {
    chunks: u64,
    groups: u64,
    mismatched: u64,
    /// Rows on the node with the most rows (counted in pass 1).
    rows: u64,
}

/// The row count of the node with the most rows, from pass 1's groups.
fn most_rows<G>(per_node: &[HashMap<G, Fingerprint>]) -> u64 {
    per_node
        .iter()
        .map(|fps| fps.values().map(|fp| fp.count.max(0) as u64).sum::<u64>())
        .max()
        .unwrap_or(0)
}

/// How pass 1 by key range is cut: groups `key >> shift`, how many there
/// are between the smallest and largest key, and the chunks scanned in
/// parallel (inclusive key bounds, the first and last open).
struct RangePlan {
    shift: u32,
    groups: u64,
    spans: Vec<(i64, i64)>,
}

/// A run of keys `[lo, hi]` (a range group `key >> shift`) and its largest
/// row count on any node.
#[derive(Debug, Clone, Copy)]
struct Span {
    lo: i64,
    hi: i64,
    shift: u32,
    largest: i64,
}

impl Span {
    fn of(group: i64, shift: u32, largest: i64) -> Self {
        let (lo, hi) = group_span(i128::from(group), shift);
        Span {
            lo,
            hi,
            shift,
            largest,
        }
    }
}

/// The keys `[lo, hi]` of range group `group` (`key >> shift == group`).
fn group_span(group: i128, shift: u32) -> (i64, i64) {
    let clamp = |v: i128| v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
    (clamp(group << shift), clamp(((group + 1) << shift) - 1))
}

/// The groups whose fingerprints differ between any two nodes, in group
/// order, with the largest row count any node has in them.
fn mismatched<G: Ord + Copy + std::hash::Hash>(
    per_node: &[HashMap<G, Fingerprint>],
) -> Vec<(G, i64)> {
    let all: BTreeSet<G> = per_node
        .iter()
        .flat_map(|fps| fps.keys().copied())
        .collect();
    all.into_iter()
        .filter_map(|group| {
            let fps: Vec<Fingerprint> = per_node
                .iter()
                .map(|fps| fps.get(&group).copied().unwrap_or_default())
                .collect();
            fps.iter().any(|fp| *fp != fps[0]).then(|| {
                let largest = fps.iter().map(|fp| fp.count).max().unwrap_or(0);
                (group, largest)
            })
        })
        .collect()
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
    let sql = TableSql::new(&table, filter.as_ref());
    let scope = Scope::read_only(options.role.as_deref());
    let ctx = Ctx {
        sql: &sql,
        scope: &scope,
        progress,
    };

    // How big the table is, from the node with the largest estimate.
    let (sample_node, estimate, pages) = infos
        .iter()
        .enumerate()
        .map(|(index, (_, info))| (index, info.estimated_rows, info.pages))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or((0, 0.0, 0));

    // Chunks: contiguous key ranges scanned in parallel on each node when
    // the machine has the cores for it.
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get()) as f64;
    let chunks = ((options.concurrency_factor * cpus) / nodes.len() as f64)
        .floor()
        .max(1.0) as usize;
    let sizing = Sizing {
        estimate,
        pages,
        sample_node,
        chunks,
        block_size: options.block_size,
        compare_unit_size: options.compare_unit_size as i64,
    };
    let pairs: Vec<(usize, usize)> = (0..nodes.len())
        .flat_map(|a| ((a + 1)..nodes.len()).map(move |b| (a, b)))
        .collect();
    let mut collector = Collector::new(&pairs, options.max_diff_rows);
    let found = match sql.integer_key_bits() {
        Some(bits) => ctx.range_diff(nodes, &sizing, bits, &mut collector).await?,
        None => ctx.hash_diff(nodes, &sizing, &mut collector).await?,
    };
    tracing::debug!(
        elapsed = ?started.elapsed(),
        chunks = found.chunks,
        groups = found.groups,
        mismatched = found.mismatched,
        "groups compared"
    );

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
            total_rows_checked: found.rows as i64,
            initial_ranges_count: found.groups,
            mismatched_ranges_count: found.mismatched,
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

    /// Groups by key hash (any key): chunks from sampled keys, pass 1 per
    /// `(chunk, key hash & mask)`, pass 2 by full scans of the chunks,
    /// picking the rows of mismatched groups.
    async fn hash_diff(
        &self,
        nodes: &[NodeSession],
        sizing: &Sizing,
        collector: &mut Collector,
    ) -> Result<Counts> {
        // The first and last chunks are open, so rows beyond the sampled
        // keys are covered.
        let boundaries = if sizing.chunks > 1 {
            let per_chunk = (sizing.estimate / sizing.chunks as f64).ceil().max(1.0) as u64;
            self.boundaries(
                &nodes[sizing.sample_node],
                sizing.estimate,
                sizing.pages,
                per_chunk,
            )
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
        let groups_wanted =
            (sizing.estimate / ranges.len() as f64 / sizing.group_rows(HASH_GROUP_DIVISOR) as f64)
                .ceil() as u64;
        let mask = groups_wanted.clamp(1, MAX_GROUPS).next_power_of_two() - 1;
        self.progress.check()?;

        // Pass 1: group fingerprints on every node, every chunk at once.
        self.progress.add_total(ranges.len() as u64);
        let per_node = try_join_all(nodes.iter().map(|node| {
            try_join_all(
                ranges
                    .iter()
                    .enumerate()
                    .map(move |(chunk, range)| async move {
                        let sql = self.sql.hash_group_fingerprints(range, mask);
                        let mut query = sqlx::query(&sql);
                        for value in self.sql.range_binds(range) {
                            query = query.bind(value);
                        }
                        let groups = self.fingerprints(node, query).await?;
                        Ok::<_, EngineError>(
                            groups.into_iter().map(move |(g, fp)| ((chunk, g), fp)),
                        )
                    }),
            )
        }))
        .await?;
        let per_node: Vec<HashMap<(usize, i64), Fingerprint>> = per_node
            .into_iter()
            .map(|parts| parts.into_iter().flatten().collect())
            .collect();
        self.progress.add_done(ranges.len() as u64);
        let mismatched = mismatched(&per_node);
        let counts = Counts {
            chunks: ranges.len() as u64,
            groups: ranges.len() as u64 * (mask + 1),
            mismatched: mismatched.len() as u64,
            rows: most_rows(&per_node),
        };
        drop(per_node);

        // Pass 2: the rows of mismatched groups, in batches of at most
        // GROUP_BATCH_ROWS rows per node (one scan per chunk and batch),
        // compared key by key in Rust.
        let mut batches: Vec<(usize, Vec<i64>)> = Vec::new();
        let mut rows_in_batch = 0;
        for ((chunk, group), largest) in mismatched {
            match batches.last_mut() {
                Some((last_chunk, groups))
                    if *last_chunk == chunk
                        && rows_in_batch + largest <= sizing.batch_rows(GROUP_BATCH_ROWS) =>
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
        self.progress.add_total(batches.len() as u64);
        for (chunk, groups) in batches {
            self.progress.check()?;
            if collector.full() {
                break;
            }
            let range = &ranges[chunk];
            let sql = self.sql.hash_group_row_hashes(range, mask);
            let hashes = try_join_all(nodes.iter().map(|node| {
                let mut query = sqlx::query(&sql);
                for value in self.sql.range_binds(range) {
                    query = query.bind(value);
                }
                self.row_hashes(node, query.bind(groups.clone()))
            }))
            .await?;
            collector.compare(&hashes);
            self.progress.add_done(1);
        }
        Ok(counts)
    }

    /// Groups by key range (one integer key of `bits` bits): groups are
    /// runs of `2^shift` consecutive keys, so a table stored roughly in key
    /// order is aggregated with its groups in cache, and a mismatched group
    /// is read back through the primary key's index. A mismatched group
    /// larger than `compare_unit_size` rows on some node is split into
    /// finer groups, again by index range, until small.
    async fn range_diff(
        &self,
        nodes: &[NodeSession],
        sizing: &Sizing,
        bits: u32,
        collector: &mut Collector,
    ) -> Result<Counts> {
        let Some(plan) = self.range_plan(nodes, sizing, bits).await? else {
            // Empty on every node.
            return Ok(Counts::default());
        };

        // Pass 1: group fingerprints on every node, every chunk at once.
        self.progress.add_total(plan.spans.len() as u64);
        let bounded = plan.spans.len() > 1;
        let per_node = try_join_all(
            nodes
                .iter()
                .map(|node| self.range_fingerprints(node, &plan.spans, plan.shift, bounded)),
        )
        .await?;
        self.progress.add_done(plan.spans.len() as u64);
        let mismatched: Vec<Span> = mismatched(&per_node)
            .into_iter()
            .map(|(group, largest)| Span::of(group, plan.shift, largest))
            .collect();
        let counts = Counts {
            chunks: plan.spans.len() as u64,
            groups: plan.groups,
            mismatched: mismatched.len() as u64,
            rows: most_rows(&per_node),
        };
        drop(per_node);
        tracing::debug!(
            shift = plan.shift,
            groups = counts.groups,
            mismatched = counts.mismatched,
            "range groups hashed"
        );

        let small = self.split_large(nodes, sizing, mismatched).await?;
        tracing::debug!(groups = small.len(), "range groups split");
        self.compare_spans(nodes, sizing, small, collector).await?;
        Ok(counts)
    }

    /// The shift that gives about `block_size / 32` keys a group over the
    /// keys' extent on every node (from the ends of the index), and the
    /// chunks: contiguous runs of groups, the first and last open. `None`
    /// when every node is empty.
    async fn range_plan(
        &self,
        nodes: &[NodeSession],
        sizing: &Sizing,
        bits: u32,
    ) -> Result<Option<RangePlan>> {
        let bounds = try_join_all(nodes.iter().map(|node| self.key_bounds(node))).await?;
        let extent = bounds
            .into_iter()
            .flatten()
            .reduce(|(lo, hi), (a, b)| (lo.min(a), hi.max(b)));
        let Some((min, max)) = extent else {
            return Ok(None);
        };
        self.progress.check()?;

        // Unique keys: no more rows than the span of keys.
        let span = (i128::from(max) - i128::from(min) + 1) as f64;
        let rows = sizing.estimate.clamp(1.0, span);
        let wanted = (rows / sizing.group_rows(RANGE_GROUP_DIVISOR) as f64)
            .ceil()
            .clamp(1.0, (MAX_GROUPS as usize * sizing.chunks) as f64) as i128;
        let mut shift = 0;
        while shift < bits - 1 && (i128::from(max) >> shift) - (i128::from(min) >> shift) >= wanted
        {
            shift += 1;
        }

        let (first, last) = (i128::from(min >> shift), i128::from(max >> shift));
        let groups = last - first + 1;
        let chunks = (sizing.chunks as i128).min(groups);
        let spans = (0..chunks)
            .map(|i| {
                let lo = if i == 0 {
                    i64::MIN
                } else {
                    group_span(first + groups * i / chunks, shift).0
                };
                let hi = if i == chunks - 1 {
                    i64::MAX
                } else {
                    group_span(first + groups * (i + 1) / chunks, shift).0 - 1
                };
                (lo, hi)
            })
            .collect();
        Ok(Some(RangePlan {
            shift,
            groups: groups as u64,
            spans,
        }))
    }

    /// Splits mismatched groups too large to compare row by row (more than
    /// `compare_unit_size` rows on some node) into finer ranges of about
    /// `block_size / 32` rows, read through the index, until every
    /// mismatched range is small. Returns them in key order.
    async fn split_large(
        &self,
        nodes: &[NodeSession],
        sizing: &Sizing,
        mut work: Vec<Span>,
    ) -> Result<Vec<Span>> {
        let group_rows = sizing.group_rows(RANGE_GROUP_DIVISOR);
        let mut small = Vec::new();
        while let Some(span) = work.pop() {
            if span.largest <= sizing.compare_unit_size || span.shift == 0 {
                small.push(span);
                continue;
            }
            self.progress.check()?;
            let parts = (span.largest as u64).div_ceil(group_rows).max(2);
            let sub = span
                .shift
                .saturating_sub(parts.next_power_of_two().trailing_zeros())
                .min(span.shift - 1);
            let bounds = [(span.lo, span.hi)];
            let per_node = try_join_all(
                nodes
                    .iter()
                    .map(|node| self.range_fingerprints(node, &bounds, sub, true)),
            )
            .await?;
            work.extend(
                mismatched(&per_node)
                    .into_iter()
                    .map(|(group, largest)| Span::of(group, sub, largest)),
            );
        }
        small.sort_by_key(|span| span.lo);
        Ok(small)
    }

    /// Pass 2 by key range: the rows of `spans` through the index, at most
    /// RANGE_BATCH_ROWS rows per node and statement, compared key by key.
    async fn compare_spans(
        &self,
        nodes: &[NodeSession],
        sizing: &Sizing,
        spans: Vec<Span>,
        collector: &mut Collector,
    ) -> Result<()> {
        let mut batches: Vec<Vec<Span>> = Vec::new();
        let mut rows_in_batch = 0;
        for span in spans {
            match batches.last_mut() {
                Some(batch)
                    if rows_in_batch + span.largest <= sizing.batch_rows(RANGE_BATCH_ROWS) =>
                {
                    rows_in_batch += span.largest;
                    batch.push(span);
                }
                _ => {
                    rows_in_batch = span.largest;
                    batches.push(vec![span]);
                }
            }
        }
        self.progress.add_total(batches.len() as u64);
        let sql = self.sql.range_row_hashes();
        for batch in batches {
            self.progress.check()?;
            if collector.full() {
                break;
            }
            let lo: Vec<i64> = batch.iter().map(|span| span.lo).collect();
            let hi: Vec<i64> = batch.iter().map(|span| span.hi).collect();
            let hashes = try_join_all(nodes.iter().map(|node| {
                self.row_hashes(node, sqlx::query(&sql).bind(lo.clone()).bind(hi.clone()))
            }))
            .await?;
            collector.compare(&hashes);
            self.progress.add_done(1);
        }
        Ok(())
    }

    /// The smallest and largest key on one node (an integer key).
    async fn key_bounds(&self, node: &NodeSession) -> Result<Option<(i64, i64)>> {
        let mut tx = node.begin(self.scope).await?;
        let (min, max): (Option<i64>, Option<i64>) = sqlx::query_as(&self.sql.key_bounds())
            .fetch_one(tx.conn())
            .await
            .map_err(|e| EngineError::query(node.name(), e))?;
        tx.commit().await?;
        Ok(min.zip(max))
    }

    /// Pass 1 by key range on one node: fingerprints per group
    /// `key >> shift` in each of `spans`, one scan per span, all at once.
    async fn range_fingerprints(
        &self,
        node: &NodeSession,
        spans: &[(i64, i64)],
        shift: u32,
        bounded: bool,
    ) -> Result<HashMap<i64, Fingerprint>> {
        let sql = self.sql.range_group_fingerprints(shift, bounded);
        let parts = try_join_all(spans.iter().map(|&(lo, hi)| {
            let query = sqlx::query(&sql);
            let query = if bounded {
                query.bind(lo).bind(hi)
            } else {
                query
            };
            self.fingerprints(node, query)
        }))
        .await?;
        // Spans hold whole groups, so no group is in two spans.
        Ok(parts.into_iter().flatten().collect())
    }

    /// Runs one fingerprint statement (rows of group, count, hash).
    async fn fingerprints(
        &self,
        node: &NodeSession,
        query: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> Result<HashMap<i64, Fingerprint>> {
        let mut tx = node.begin(self.scope).await?;
        // The planner cannot know how few groups there are: it would sort
        // every row to disk, or run a parallel partial aggregate whose
        // workers each build the whole table of groups (three times the CPU
        // for one scan). Hash them in memory, in one process per scan;
        // nodes and chunks give the parallelism.
        sqlx::query(
            "SELECT set_config('enable_sort', 'off', true), \
                    set_config('work_mem', '64MB', true), \
                    set_config('max_parallel_workers_per_gather', '0', true)",
        )
        .execute(tx.conn())
        .await
        .map_err(|e| EngineError::query(node.name(), e))?;
        type Arrays = (Option<Vec<i64>>, Option<Vec<i64>>, Option<Vec<Option<i64>>>);
        let (groups, counts, hashes): Arrays = query
            .try_map(|row: sqlx::postgres::PgRow| {
                Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?))
            })
            .fetch_one(tx.conn())
            .await
            .map_err(|e| EngineError::query(node.name(), e))?;
        tx.commit().await?;
        let (groups, counts, hashes) = (
            groups.unwrap_or_default(),
            counts.unwrap_or_default(),
            hashes.unwrap_or_default(),
        );
        Ok(groups
            .into_iter()
            .zip(counts)
            .zip(hashes)
            .map(|((group, count), hash)| {
                let hash = hash.unwrap_or(0);
                (group, Fingerprint { count, hash })
            })
            .collect())
    }

    /// Pass 2 on one node: runs a row-hash statement (key texts, two row
    /// hashes).
    async fn row_hashes(
        &self,
        node: &NodeSession,
        query: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> Result<HashMap<Key, (i64, i64)>> {
        self.progress.check()?;
        let mut tx = node.begin(self.scope).await?;
        let n = self.sql.key_len();
        let (keys, h0, h1) = query
            .try_map(|row: sqlx::postgres::PgRow| {
                let keys = (0..n)
                    .map(|i| {
                        Ok(row
                            .try_get::<Option<Vec<String>>, _>(i)?
                            .unwrap_or_default())
                    })
                    .collect::<Result<Vec<_>, sqlx::Error>>()?;
                let hashes = |i| {
                    Ok::<_, sqlx::Error>(row.try_get::<Option<Vec<i64>>, _>(i)?.unwrap_or_default())
                };
                Ok((keys, hashes(n)?, hashes(n + 1)?))
            })
            .fetch_one(tx.conn())
            .await
            .map_err(|e| EngineError::query(node.name(), e))?;
        tx.commit().await?;
        // Column arrays to one key per row.
        let mut columns: Vec<_> = keys.into_iter().map(Vec::into_iter).collect();
        Ok(h0
            .into_iter()
            .zip(h1)
            .map(|hashes| {
                let key: Key = columns.iter_mut().filter_map(Iterator::next).collect();
                (key, hashes)
            })
            .collect())
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
            // Integer keys by value, so a limit keeps the lowest keys.
            differing.sort_by(|x, y| crate::sql::key_order(x, y));
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
