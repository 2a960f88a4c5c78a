//! Writes the buffered batch out: one set-based INSERT for the logins, one for the rejects.
//!
//! Rows are sorted by message id first, so two sessions loading overlapping ids take their
//! unique-index locks in the same order (they wait and skip instead of deadlocking). Rows that
//! `ON CONFLICT DO NOTHING` skipped are counted as duplicates.

use super::buffer::{self, Batch, Stats};
use crate::error::MaskError;
use pgrx::datum::{DatumWithOid, TimestampWithTimeZone};
use pgrx::prelude::*;

/// `ingest_flush()`: the AFTER INSERT … FOR EACH STATEMENT trigger of an ingest view.
#[pg_trigger]
fn ingest_flush<'a>(
    _trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, std::convert::Infallible> {
    flush().unwrap_or_else(|e| e.report());
    Ok(None)
}

pub fn flush() -> Result<(), MaskError> {
    let Batch { target, mut logins, mut rejects } = buffer::take();
    let Some(target) = target else { return Ok(()) };
    logins.sort_unstable_by(|a, b| a.message_id.cmp(&b.message_id));
    rejects.sort_unstable_by(|a, b| a.message_id.cmp(&b.message_id));
    let (n_logins, n_rejects) = (logins.len() as i64, rejects.len() as i64);

    let mut delta = Stats::default();
    Spi::connect_mut(|client| -> Result<(), MaskError> {
        if !logins.is_empty() {
            let mut ids = Vec::with_capacity(logins.len());
            let mut sent = Vec::with_capacity(logins.len());
            let mut users = Vec::with_capacity(logins.len());
            let mut types = Vec::with_capacity(logins.len());
            let mut ips = Vec::with_capacity(logins.len());
            let mut devices = Vec::with_capacity(logins.len());
            let mut locales = Vec::with_capacity(logins.len());
            let mut versions = Vec::with_capacity(logins.len());
            for r in logins {
                ids.push(r.message_id);
                sent.push(r.sent_at);
                users.push(r.user_id);
                types.push(r.device_type);
                ips.push(r.ip);
                devices.push(r.device_id);
                locales.push(r.locale);
                versions.push(r.app_version);
            }
            let args: [DatumWithOid; 8] = [
                ids.into(),
                sent.into(),
                users.into(),
                types.into(),
                ips.into(),
                devices.into(),
                locales.into(),
                versions.into(),
            ];
            let inserted = client
                .update(&target.insert_logins, None, &args)
                .map_err(|e| MaskError::Spi(e.to_string()))?
                .len() as i64;
            delta.loaded = inserted;
            delta.duplicates += n_logins - inserted;
        }
        if !rejects.is_empty() {
            let mut ids = Vec::with_capacity(rejects.len());
            let mut sent: Vec<Option<TimestampWithTimeZone>> = Vec::with_capacity(rejects.len());
            let mut reasons = Vec::with_capacity(rejects.len());
            let mut details = Vec::with_capacity(rejects.len());
            let mut payloads = Vec::with_capacity(rejects.len());
            for r in rejects {
                ids.push(r.message_id);
                sent.push(r.sent_at);
                reasons.push(r.reason.to_owned());
                details.push(r.detail);
                payloads.push(r.payload);
            }
            let args: [DatumWithOid; 5] =
                [ids.into(), sent.into(), reasons.into(), details.into(), payloads.into()];
            let inserted = client
                .update(&target.insert_rejects, None, &args)
                .map_err(|e| MaskError::Spi(e.to_string()))?
                .len() as i64;
            delta.rejected = inserted;
            delta.duplicates += n_rejects - inserted;
        }
        Ok(())
    })?;
    buffer::add_stats(delta);
    Ok(())
}
