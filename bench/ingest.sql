-- Benchmark 2 (issue: ingest path): 1M synthetic SQS messages through login_ingest (parse,
-- validate, encode, mask, dedupe) against a plain COPY of the same rows already flattened and
-- masked into user_logins with its trigger disabled: the physical limit for this table.
-- Run by bench/run.sh in a scratch database with sql/ applied. Synthetic data only.
\set ON_ERROR_STOP 1
\pset pager off
SET client_min_messages = warning;
TRUNCATE user_logins, user_login_rejects;
-- No autovacuum during the runs: on 2 cores it would steal CPU from the next COPY.
ALTER TABLE user_logins SET (autovacuum_enabled = off);
ALTER TABLE user_login_rejects SET (autovacuum_enabled = off);

-- 1M bodies shaped like the real ones (2% rejects), in binary COPY format, the feeder's way.
COPY (
    SELECT md5(i::text)::uuid::text AS message_id, now() - i * interval '1 second' AS sent_at,
           CASE WHEN i % 50 = 0 THEN '{"foo": "oops_wrong_msg_type", "bar": "123"}'
           ELSE json_build_object('user_id', md5('u' || i)::uuid, 'app_version', (i % 10) || '.' || (i % 7) || '.' || (i % 13),
                                  'device_type', CASE WHEN i % 2 = 0 THEN 'ios' ELSE 'android' END,
                                  'ip', format('%s.%s.%s.%s', 1 + i / 65536 % 223, i / 256 % 256, i % 256, i % 7),
                                  'locale', CASE WHEN i % 3 = 0 THEN NULL ELSE 'RU' END,
                                  'device_id', format('%s-%s-%s', lpad((i % 1000)::text, 3, '0'), lpad((i % 100)::text, 2, '0'), lpad((i % 10000)::text, 4, '0')))::text
           END AS body
      FROM generate_series(1, 1000000) AS i
) TO '/tmp/pg_mask_bench_messages.bin' (FORMAT binary);
CHECKPOINT;

CREATE TEMP TABLE runs (name text, seconds float8);
-- Runs `statement` once and records its wall-clock time under `name`.
CREATE PROCEDURE pg_temp.timed(name text, statement text) LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz := clock_timestamp();
BEGIN
  EXECUTE statement;
  INSERT INTO runs VALUES (name, extract(epoch FROM clock_timestamp() - t0));
END $$;
\set ingest_copy 'COPY login_ingest (message_id, sent_at, body) FROM ''/tmp/pg_mask_bench_messages.bin'' (FORMAT binary)'
CALL pg_temp.timed('ingest: COPY login_ingest (raw JSON)', :'ingest_copy');
SELECT (SELECT count(*) FROM user_logins) AS rows, (SELECT count(*) FROM user_login_rejects) AS rejects;

-- The same rows, flattened and masked, for the baseline.
COPY (SELECT user_id, device_type, masked_ip, masked_device_id, locale, app_version, create_date, message_id FROM user_logins)
  TO '/tmp/pg_mask_bench_flat.bin' (FORMAT binary);
TRUNCATE user_logins;
ALTER TABLE user_logins DISABLE TRIGGER user_logins_mask;
CHECKPOINT;
CALL pg_temp.timed('baseline: plain COPY of flattened masked rows, trigger disabled',
    $q$COPY user_logins (user_id, device_type, masked_ip, masked_device_id, locale, app_version, create_date, message_id) FROM '/tmp/pg_mask_bench_flat.bin' (FORMAT binary)$q$);
ALTER TABLE user_logins ENABLE TRIGGER user_logins_mask;

-- Re-delivery of the whole batch: every message is a duplicate.
CALL pg_temp.timed('ingest again: all 1M are duplicates', :'ingest_copy');

\echo '== 1M messages (ratio = baseline time / this time)'
SELECT name, round(seconds::numeric, 2) AS seconds, round((1000000 / seconds)::numeric) AS messages_per_s,
       round(((SELECT seconds FROM runs WHERE name LIKE 'baseline%') / seconds)::numeric, 2) AS ratio_vs_plain_copy
  FROM runs;
TRUNCATE user_logins, user_login_rejects;
\! rm -f /tmp/pg_mask_bench_messages.bin /tmp/pg_mask_bench_flat.bin
