-- Backups taken by `tollgate backup` and the scheduled backup job (docs/backups.md): what was
-- written, whether its verification passed, so /ready and `tollgate check` can tell the age of
-- the newest good one.
CREATE TABLE backups (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
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
