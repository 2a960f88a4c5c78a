//! `ingest_stats()`: what the ingest triggers did in the current transaction, so a loader can
//! check and export per-batch counts without scanning the tables again.

use super::buffer;
use pgrx::prelude::*;

/// Rows loaded, skipped as duplicates (message id already loaded or rejected) and rejected by
/// the ingest views in the current transaction. Call it after the COPY, before COMMIT: a loader
/// should check that the three add up to the rows it sent.
#[pg_extern(volatile, parallel_unsafe)]
fn ingest_stats(
) -> TableIterator<'static, (name!(loaded, i64), name!(duplicates, i64), name!(rejected, i64))> {
    let s = buffer::stats();
    TableIterator::once((s.loaded, s.duplicates, s.rejected))
}
