-- Backups taken by `tollgate backup` and the scheduled backup job (docs/backups.md): what was
-- written, whether its verification passed, so /ready and `tollgate check` can tell the age of
-- the newest good one.
CREATE TABLE backups (
    id           BIGSERIAL PRIMARY KEY,
    -- schedule: the backup job; command: `tollgate backup`.
    trigger      TEXT   NOT NULL CHECK (trigger IN ('schedule', 'command')),
    path         TEXT   NOT NULL,
    -- ok: written and verified; failed: nothing usable was kept.
    outcome      TEXT   NOT NULL CHECK (outcome IN ('ok', 'failed')),
    bytes        BIGINT,
    error        TEXT,
    started_at   BIGINT NOT NULL,
    finished_at  BIGINT NOT NULL
);
CREATE INDEX backups_finished ON backups (outcome, finished_at);

-- The tenant policies' function named `users` by the session's search_path, so a session with
-- another one (pg_dump sets it empty, and reads rows through the policies) failed with
-- "relation users does not exist". The owner's table is now named with its schema, fixed when
-- this migration runs; a restore keeps the schema's name (docs/backups.md).
DO $$
BEGIN
    EXECUTE format($f$
        CREATE OR REPLACE FUNCTION tollgate_tenant_visible(row_app_id BIGINT) RETURNS BOOLEAN
        LANGUAGE sql STABLE AS $b$
            SELECT row_app_id = nullif(current_setting('tollgate.app_id', true), '')::BIGINT
                OR (coalesce(current_setting('tollgate.all_apps', true), '') = 'on'
                    AND pg_has_role(current_user,
                        (SELECT relowner FROM pg_catalog.pg_class WHERE oid = %L::regclass),
                        'MEMBER'))
        $b$
    $f$, quote_ident(current_schema()) || '.users');
END
$$;
