//! `create_date`: the UTC calendar date of a PostgreSQL `timestamptz`, as PostgreSQL stores a
//! `date` (days since 2000-01-01). The same result as `(ts AT TIME ZONE 'UTC')::date`, without
//! an executor: the ingest path's bulk insert fills the column itself.

/// Microseconds per day.
const USECS_PER_DAY: i64 = 86_400_000_000;
/// PostgreSQL's `-infinity` / `infinity` timestamps and dates.
const TIMESTAMP_NOBEGIN: i64 = i64::MIN;
const TIMESTAMP_NOEND: i64 = i64::MAX;
const DATEVAL_NOBEGIN: i32 = i32::MIN;
const DATEVAL_NOEND: i32 = i32::MAX;

/// `timestamptz` (microseconds since 2000-01-01 00:00 UTC) → `date` (days since 2000-01-01).
pub fn utc_date(timestamp_micros: i64) -> i32 {
    match timestamp_micros {
        TIMESTAMP_NOBEGIN => DATEVAL_NOBEGIN,
        TIMESTAMP_NOEND => DATEVAL_NOEND,
        // Every finite timestamp PostgreSQL accepts is well inside i32 days.
        t => t.div_euclid(USECS_PER_DAY) as i32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn midnight_boundaries_and_dates_before_2000() {
        assert_eq!(utc_date(0), 0); // 2000-01-01 00:00:00
        assert_eq!(utc_date(USECS_PER_DAY - 1), 0); // 2000-01-01 23:59:59.999999
        assert_eq!(utc_date(USECS_PER_DAY), 1);
        assert_eq!(utc_date(-1), -1); // 1999-12-31 23:59:59.999999
        assert_eq!(utc_date(-USECS_PER_DAY), -1);
        assert_eq!(utc_date(-USECS_PER_DAY - 1), -2);
    }

    #[test]
    fn a_real_sent_timestamp() {
        // 2024-03-05 17:31:12.345 UTC is day 8830 after 2000-01-01.
        let days = 8830i64;
        let t = days * USECS_PER_DAY + ((17 * 60 + 31) * 60 + 12) * 1_000_000 + 345_000;
        assert_eq!(utc_date(t), 8830);
    }

    #[test]
    fn infinities_stay_infinite() {
        assert_eq!(utc_date(i64::MIN), i32::MIN);
        assert_eq!(utc_date(i64::MAX), i32::MAX);
    }
}
