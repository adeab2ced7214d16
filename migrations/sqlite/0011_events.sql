-- Outbound events (docs/events.md): the app's endpoints, the outbox of tollgate's own events,
-- one delivery per event and endpoint (a replay adds a round), and every attempt. The app's
-- HTTP jobs (docs/jobs.md) are delivered to its `jobs` endpoint.

-- An app's webhook endpoint. Secrets are stored sealed with ENCRYPTION_KEY (`enc:v1:…`), or
-- as `plain:whsec_…` where no key is configured (never in production). During a rotation the
-- previous secret keeps signing until `previous_until`.
CREATE TABLE event_endpoints (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id           BIGINT  NOT NULL REFERENCES apps (id),
    url              TEXT    NOT NULL,
    description      TEXT    NOT NULL DEFAULT '',
    -- `events`: tollgate's events; `jobs`: the app's own HTTP jobs (one such endpoint per app).
    purpose          TEXT    NOT NULL DEFAULT 'events' CHECK (purpose IN ('events', 'jobs')),
    -- JSON array of event types; NULL: every type.
    event_types      TEXT,
    secret           TEXT    NOT NULL,
    previous_secret  TEXT,
    previous_until   BIGINT,
    enabled          BOOLEAN NOT NULL DEFAULT 1,
    disabled_reason  TEXT,
    -- Since when every attempt failed (NULL after a success): an endpoint failing for longer
    -- than events.disable_after_hours is disabled.
    failing_since    BIGINT,
    created_at       BIGINT  NOT NULL,
    updated_at       BIGINT  NOT NULL
);
CREATE INDEX event_endpoints_app ON event_endpoints (app_id, id);
CREATE UNIQUE INDEX event_endpoints_one_for_jobs ON event_endpoints (app_id) WHERE purpose = 'jobs';

-- The outbox: written in the transaction of the change that causes the event. `dedupe_key`
-- makes a re-applied change (a retried job) publish nothing twice.
CREATE TABLE events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id      BIGINT NOT NULL REFERENCES apps (id),
    -- The Standard Webhooks message id (webhook-id), `msg_` + 32 hex.
    msg_id      TEXT   NOT NULL UNIQUE,
    type        TEXT   NOT NULL,
    -- No foreign key: `user.deleted` outlives its user.
    user_id     BIGINT,
    dedupe_key  TEXT   NOT NULL,
    -- The body as delivered: {"type", "timestamp", "data"}.
    payload     TEXT   NOT NULL,
    created_at  BIGINT NOT NULL,
    UNIQUE (app_id, dedupe_key)
);
CREATE INDEX events_app_time ON events (app_id, created_at);

CREATE TABLE event_deliveries (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id       BIGINT NOT NULL REFERENCES apps (id),
    event_id     BIGINT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    endpoint_id  BIGINT NOT NULL REFERENCES event_endpoints (id) ON DELETE CASCADE,
    -- 0: the first delivery; each replay adds one.
    round        BIGINT NOT NULL DEFAULT 0,
    state        TEXT   NOT NULL CHECK (state IN ('pending', 'succeeded', 'failed', 'skipped')),
    attempts     BIGINT NOT NULL DEFAULT 0,
    last_status  BIGINT,
    created_at   BIGINT NOT NULL,
    finished_at  BIGINT,
    UNIQUE (event_id, endpoint_id, round)
);
CREATE INDEX event_deliveries_endpoint ON event_deliveries (endpoint_id, id);

CREATE TABLE event_attempts (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id       BIGINT NOT NULL REFERENCES apps (id),
    delivery_id  BIGINT NOT NULL REFERENCES event_deliveries (id) ON DELETE CASCADE,
    attempt      BIGINT NOT NULL,
    at           BIGINT NOT NULL,
    -- The HTTP status; NULL when no answer came (refused, timed out, blocked target).
    status       BIGINT,
    latency_ms   BIGINT NOT NULL,
    -- The first 1 KiB of the answer's body.
    response     TEXT,
    error        TEXT,
    UNIQUE (delivery_id, attempt)
);

-- An app's HTTP job remembers the Idempotency-Key it was enqueued under: a retry of the request
-- after a crash finds the job instead of enqueueing it again.
ALTER TABLE jobs ADD COLUMN effect_key TEXT;
CREATE UNIQUE INDEX jobs_effect_key ON jobs (effect_key) WHERE effect_key IS NOT NULL;

-- Email (docs/email.md): one row per message, rendered when it is queued, sent by a job; the
-- key makes a message once per app however often it is asked for.
CREATE TABLE email_messages (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id      BIGINT NOT NULL REFERENCES apps (id),
    key         TEXT   NOT NULL,
    template    TEXT   NOT NULL,
    -- Personal data: pruned with the message (retention.email_days).
    recipient   TEXT   NOT NULL,
    subject     TEXT   NOT NULL,
    text_body   TEXT   NOT NULL,
    html_body   TEXT,
    state       TEXT   NOT NULL CHECK (state IN ('pending', 'sent', 'failed', 'bounced')),
    attempts    BIGINT NOT NULL DEFAULT 0,
    -- The SMTP reply code of the last failure (a 5xx is a bounce).
    smtp_code   BIGINT,
    last_error  TEXT,
    created_at  BIGINT NOT NULL,
    sent_at     BIGINT,
    UNIQUE (app_id, key)
);

-- Schedules of an app's own jobs made at run time (the admin API), beside those of
-- [[apps.schedules]] (docs/jobs.md). The scheduler re-reads them every few seconds.
CREATE TABLE app_schedules (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id      BIGINT NOT NULL REFERENCES apps (id),
    name        TEXT   NOT NULL,
    cron        TEXT   NOT NULL,
    kind        TEXT   NOT NULL,
    -- JSON object.
    args        TEXT   NOT NULL,
    queue       TEXT   NOT NULL,
    catch_up    TEXT   NOT NULL CHECK (catch_up IN ('once', 'none', 'all')),
    created_at  BIGINT NOT NULL,
    UNIQUE (app_id, name)
);
