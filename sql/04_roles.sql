-- The feeder's role, if it exists: it loads through the ingest view and nothing else. The view's
-- triggers write the tables as the view's owner, so the loader needs no right on them and can
-- read nothing back (README, "Who can learn what"). Create the role itself with a password from
-- your secret store: CREATE ROLE feeder LOGIN PASSWORD '...';
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'feeder') THEN
        GRANT INSERT ON login_ingest TO feeder;
    END IF;
END
$$;
