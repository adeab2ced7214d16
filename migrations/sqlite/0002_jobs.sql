-- Durable jobs (see docs/jobs.md). One row per job; the state machine is
-- available → running → completed | retryable → … | discarded (dead letter) | cancelled.
CREATE TABLE jobs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    queue        TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    args         TEXT    NOT NULL,
    state        TEXT    NOT NULL CHECK (state IN ('available', 'running', 'retryable', 'completed', 'discarded', 'cancelled')),
    -- 0 runs first.
    priority     BIGINT  NOT NULL DEFAULT 1,
    attempt      BIGINT  NOT NULL DEFAULT 0,
    max_attempts BIGINT  NOT NULL,
    timeout_ms   BIGINT  NOT NULL,
    run_at       BIGINT  NOT NULL,
    created_at   BIGINT  NOT NULL,
    attempted_at BIGINT,
    -- The worker that claimed the last attempt; kept after the job finishes.
    attempted_by TEXT,
    -- Lease: a running job whose lease passed belongs to a dead worker and is rescued.
    locked_until BIGINT,
    finalized_at BIGINT,
    -- Enqueued while the enqueue switch was off by a kind that parks: kept, not run.
    parked       BOOLEAN NOT NULL DEFAULT 0,
    unique_key   TEXT,
    last_error   TEXT
);

-- A unique key blocks a second job only while the first is unfinished.
CREATE UNIQUE INDEX jobs_unique_key ON jobs (kind, unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('available', 'running', 'retryable');
CREATE INDEX jobs_fetch ON jobs (queue, priority, run_at, id)
    WHERE state IN ('available', 'retryable') AND NOT parked;
CREATE INDEX jobs_lease ON jobs (locked_until) WHERE state = 'running';
CREATE INDEX jobs_state_finalized ON jobs (state, finalized_at);

-- One row per failed attempt, for `tollgate jobs show`.
CREATE TABLE job_errors (
    job_id  BIGINT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt BIGINT NOT NULL,
    at      BIGINT NOT NULL,
    worker  TEXT,
    error   TEXT   NOT NULL,
    PRIMARY KEY (job_id, attempt)
);

-- Queues and their pause flag. `default` always exists.
CREATE TABLE job_queues (
    name       TEXT PRIMARY KEY,
    paused     BOOLEAN NOT NULL DEFAULT 0,
    updated_at BIGINT  NOT NULL
);
INSERT INTO job_queues (name, paused, updated_at) VALUES ('default', 0, 0);

-- One row per cron slot ever enqueued: the primary key is what makes N schedulers produce one
-- job per slot. job_id is NULL when the slot was skipped (catch_up = "none").
CREATE TABLE cron_slots (
    name       TEXT   NOT NULL,
    slot_at    BIGINT NOT NULL,
    job_id     BIGINT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (name, slot_at)
);
