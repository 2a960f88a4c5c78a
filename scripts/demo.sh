#!/usr/bin/env bash
# The whole pipeline on this machine: a fresh demo database with sql/ applied, an empty
# login-queue on the local emulator seeded with data/sample_messages.jsonl, the feeder draining
# it, and the result. `make demo` runs the set-up steps first; re-running starts over cleanly.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
DEMO_DB=pg_mask_demo
FEEDER="$ROOT/target/release/feeder"
export DATABASE_URL="postgres://postgres:postgres@127.0.0.1:$PG_PORT/$DEMO_DB"
export SQS_QUEUE_URL="http://localhost:$SQS_PORT/000000000000/login-queue"

log "fresh database $DEMO_DB with pg_mask and sql/"
psql_su -c "DROP DATABASE IF EXISTS $DEMO_DB WITH (FORCE)" -c "CREATE DATABASE $DEMO_DB"
PGDATABASE=$DEMO_DB bash scripts/pg.sh schema
psql_su -d "$DEMO_DB" <<'SQL'
-- Two roles for the demo: analysts see tokens only; pii_reader may unmask.
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'analyst') THEN CREATE ROLE analyst; END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pii_reader') THEN CREATE ROLE pii_reader; END IF;
END $$;
GRANT SELECT ON user_logins, user_login_rejects, login_duplicates TO analyst, pii_reader;
GRANT EXECUTE ON FUNCTION unmask_pii(text) TO pii_reader;
SQL

log "empty login-queue on the emulator, seeded with data/sample_messages.jsonl"
bash scripts/sqs.sh restart
# The feeder logs what it did on stderr and repeats its summary on stdout for scripts; the log is
# enough here.
"$FEEDER" seed data/sample_messages.jsonl >/dev/null

log "feeder drain: SQS -> COPY login_ingest -> user_logins / user_login_rejects"
"$FEEDER" drain >/dev/null
log "feeder load: three more events that share an IP and a device (for the duplicates view)"
"$FEEDER" load data/duplicates_demo.jsonl >/dev/null

log "result"
psql_su -d "$DEMO_DB" -P pager=off <<'SQL'
\echo '-- rows and rejects'
SELECT (SELECT count(*) FROM user_logins) AS user_logins, (SELECT count(*) FROM user_login_rejects) AS rejects;
\echo '-- a few rows as an analyst sees them (masked)'
SET ROLE analyst;
SELECT user_id, device_type, masked_ip, masked_device_id, locale, app_version, app_version_text(app_version) AS version, create_date
  FROM user_logins ORDER BY message_id LIMIT 5;
\echo '-- the reject, with its reason (payload masked)'
SELECT message_id, reason, detail, left(payload, 40) || '...' AS payload FROM user_login_rejects;
\echo '-- duplicates view: masked values seen for more than one user'
SELECT kind, left(masked_value, 24) || '...' AS masked_value, users, logins, first_seen, last_seen FROM login_duplicates;
\echo '-- an analyst cannot unmask:'
\set ON_ERROR_STOP 0
SELECT unmask_pii(masked_ip) FROM user_logins LIMIT 1;
\set ON_ERROR_STOP 1
RESET ROLE;
\echo '-- a role granted unmask_pii can:'
SET ROLE pii_reader;
SELECT user_id, unmask_pii(masked_ip) AS ip, unmask_pii(masked_device_id) AS device_id
  FROM user_logins ORDER BY message_id LIMIT 1;
SELECT unmask_pii(payload) AS rejected_payload FROM user_login_rejects;
RESET ROLE;
SQL
cat <<MSG

Done. Explore:   psql "$DATABASE_URL"
Stop everything: make stop     (or: bash scripts/sqs.sh stop; bash scripts/pg.sh stop)
MSG
