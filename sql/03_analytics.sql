-- What analysts use.

-- app_version integer -> 'major.minor.patch' (the inverse of the ingest encoding).
CREATE OR REPLACE FUNCTION app_version_text(code integer) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN CASE WHEN code BETWEEN 0 AND 999999999
                THEN format('%s.%s.%s', code / 1000000, code / 1000 % 1000, code % 1000) END;

-- Masked IPs and device ids seen for more than one user: the reason masking is deterministic.
CREATE OR REPLACE VIEW login_duplicates AS
    SELECT 'ip'::text AS kind, masked_ip AS masked_value,
           count(DISTINCT user_id) AS users, count(*) AS logins,
           min(create_date) AS first_seen, max(create_date) AS last_seen
      FROM user_logins WHERE masked_ip IS NOT NULL
     GROUP BY masked_ip HAVING count(DISTINCT user_id) > 1
    UNION ALL
    SELECT 'device_id', masked_device_id,
           count(DISTINCT user_id), count(*), min(create_date), max(create_date)
      FROM user_logins WHERE masked_device_id IS NOT NULL
     GROUP BY masked_device_id HAVING count(DISTINCT user_id) > 1;

-- Replaying rejects after a fix (a wider column, a dropped constraint), as a role that may
-- unmask, delete rejects and load the ingest view:  SELECT * FROM replay_rejects('too_long');
-- Each reject is deleted and sent again through the ingest path one at a time, so a payload's
-- plaintext is in memory for one message and never in a temporary file: one
-- INSERT ... SELECT unmask_pii(payload) over all of them would hold every plaintext of the
-- batch in a tuplestore, which spills to disk past work_mem.
CREATE OR REPLACE FUNCTION replay_rejects(reason text)
    RETURNS TABLE (replayed bigint, loaded bigint, rejected bigint)
    LANGUAGE plpgsql AS $$
DECLARE
    id text;
BEGIN
    replayed := 0;
    -- No ORDER BY: a sort of many ids would itself spill to disk.
    FOR id IN SELECT j.message_id FROM user_login_rejects j
               WHERE j.reason = replay_rejects.reason LOOP
        WITH gone AS (DELETE FROM user_login_rejects j WHERE j.message_id = id
                      RETURNING j.message_id, j.sent_at, j.payload)
        INSERT INTO login_ingest (message_id, sent_at, body)
            SELECT gone.message_id, gone.sent_at, unmask_pii(gone.payload) FROM gone;
        replayed := replayed + 1;
    END LOOP;
    -- What this transaction's loads did, this replay included.
    SELECT s.loaded, s.rejected INTO loaded, rejected FROM ingest_stats() s;
    RETURN NEXT;
END $$;
