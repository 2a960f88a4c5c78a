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
