-- Benchmark 1 (issue: pg_mask extension): per-call cost of mask_pii against pgcrypto, and COPY
-- with vs without the masking trigger. Run by bench/run.sh in a scratch database; prints
-- ratios measured in this run. Synthetic data only.
\set ON_ERROR_STOP 1
\pset pager off
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgcrypto;

-- 1M distinct IP-like strings.
DROP TABLE IF EXISTS bench_ips;
CREATE UNLOGGED TABLE bench_ips AS
    SELECT format('%s.%s.%s.%s', 1 + i / 65536 % 223, i / 256 % 256, i % 256, i % 7) AS v
      FROM generate_series(1, 1000000) AS i;
ANALYZE bench_ips;

-- Best of 3 wall-clock runs of `SELECT count(<expr>) FROM bench_ips`, in seconds.
CREATE OR REPLACE FUNCTION pg_temp.best_of_3(expr text) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz; best float8 := 'Infinity'; n bigint;
BEGIN
  FOR _ IN 1..3 LOOP
    t0 := clock_timestamp();
    EXECUTE format('SELECT count(%s) FROM bench_ips', expr) INTO n;
    best := least(best, extract(epoch FROM clock_timestamp() - t0));
  END LOOP;
  RETURN best;
END $$;

CREATE TEMP TABLE calls AS
WITH base AS (SELECT pg_temp.best_of_3('length(v)') AS s)
SELECT f.name,
       round(((pg_temp.best_of_3(f.expr) - base.s) * 1e6 / 1000000)::numeric, 3) AS net_us_per_call
  FROM base, (VALUES
        ('mask_pii(v)', 'mask_pii(v)'),
        ('pgcrypto encrypt(aes)', $$encrypt(convert_to(v, 'UTF8'), '\x000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f'::bytea, 'aes')$$),
        ('pgcrypto hmac(sha256)', $$hmac(v, 'k', 'sha256')$$),
        ('unmask_pii(mask_pii(v)) - mask', 'unmask_pii(mask_pii(v))')) AS f(name, expr);
UPDATE calls SET net_us_per_call = net_us_per_call - (SELECT net_us_per_call FROM calls WHERE name = 'mask_pii(v)')
 WHERE name LIKE 'unmask%';
\echo '== per-call cost, 1M distinct IP-like strings (net of count(length(v)), best of 3)'
SELECT name, net_us_per_call,
       round(net_us_per_call / (SELECT net_us_per_call FROM calls WHERE name = 'pgcrypto encrypt(aes)'), 2) AS vs_pgcrypto_encrypt
  FROM calls ORDER BY name;

-- COPY of 1M rows into user_logins-shaped tables, with and without mask_columns.
DROP TABLE IF EXISTS bench_plain, bench_masked;
CREATE UNLOGGED TABLE bench_rows AS
    SELECT 'msg-' || i AS message_id, 'user-' || i AS user_id, 'android'::text AS device_type,
           v AS ip, lpad((i % 1000)::text, 3, '0') || '-' || lpad((i % 100)::text, 2, '0') || '-' || lpad(i::text, 4, '0') AS device_id,
           'RU'::text AS locale, 2003000 AS app_version, current_date AS create_date
      FROM (SELECT v, row_number() OVER () AS i FROM bench_ips) AS t;
COPY bench_rows TO '/tmp/pg_mask_bench_rows.bin' (FORMAT binary);
-- The same rows with ip and device_id already masked: what storing tokens costs by itself.
COPY (SELECT message_id, user_id, device_type, mask_pii(ip), mask_pii(device_id), locale, app_version, create_date
        FROM bench_rows) TO '/tmp/pg_mask_bench_premasked.bin' (FORMAT binary);
CREATE TABLE bench_plain (message_id text UNIQUE, user_id varchar(128), device_type varchar(32),
    masked_ip varchar(256), masked_device_id varchar(256), locale varchar(32), app_version integer, create_date date);
CREATE TABLE bench_masked (LIKE bench_plain INCLUDING ALL);
CREATE TABLE bench_noop (LIKE bench_plain INCLUDING ALL);
CREATE TABLE bench_premasked (LIKE bench_plain INCLUDING ALL);
CREATE TRIGGER m BEFORE INSERT OR UPDATE ON bench_masked
    FOR EACH ROW EXECUTE FUNCTION mask_columns('masked_ip', 'masked_device_id');
-- Any BEFORE ROW trigger makes COPY insert row by row instead of in batches: an empty
-- PL/pgSQL trigger shows what that costs before any masking.
CREATE FUNCTION pg_temp.noop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER n BEFORE INSERT OR UPDATE ON bench_noop FOR EACH ROW EXECUTE FUNCTION pg_temp.noop();
-- No autovacuum between runs: on 2 cores it would steal CPU from whichever COPY comes next.
ALTER TABLE bench_plain SET (autovacuum_enabled = off);
ALTER TABLE bench_masked SET (autovacuum_enabled = off);
ALTER TABLE bench_noop SET (autovacuum_enabled = off);
ALTER TABLE bench_premasked SET (autovacuum_enabled = off);
CREATE TEMP TABLE copies (name text, seconds float8);
DO $$
DECLARE t0 timestamptz; run record;
BEGIN
  FOR _ IN 1..3 LOOP
    FOR run IN SELECT * FROM (VALUES
        ('plain COPY', 'bench_plain', '/tmp/pg_mask_bench_rows.bin'),
        ('COPY + mask_columns', 'bench_masked', '/tmp/pg_mask_bench_rows.bin'),
        ('  for scale: COPY + empty PL/pgSQL trigger', 'bench_noop', '/tmp/pg_mask_bench_rows.bin'),
        ('  for scale: plain COPY of pre-masked rows', 'bench_premasked', '/tmp/pg_mask_bench_premasked.bin')) AS r(name, tab, file)
    LOOP
      EXECUTE format('TRUNCATE %I', run.tab);
      -- Each COPY starts right after a checkpoint, so none pays for one another caused.
      CHECKPOINT;
      t0 := clock_timestamp();
      EXECUTE format('COPY %I FROM %L (FORMAT binary)', run.tab, run.file);
      INSERT INTO copies VALUES (run.name, extract(epoch FROM clock_timestamp() - t0));
    END LOOP;
  END LOOP;
END $$;
\echo '== COPY of 1M rows into a user_logins-shaped table (best of 3, interleaved)'
SELECT name, round(min(seconds)::numeric, 2) AS seconds, round((1000000 / min(seconds))::numeric) AS rows_per_s,
       round(((SELECT min(seconds) FROM copies WHERE name = 'plain COPY') / min(seconds))::numeric, 2) AS throughput_vs_plain
  FROM copies GROUP BY name ORDER BY name LIKE ' %', name DESC;
SELECT count(*) FILTER (WHERE masked_ip LIKE 'pm1.%') = 1000000 AS all_masked FROM bench_masked;
DROP TABLE bench_plain, bench_masked, bench_noop, bench_premasked, bench_rows, bench_ips;
\! rm -f /tmp/pg_mask_bench_rows.bin /tmp/pg_mask_bench_premasked.bin
