-- Identity: apps (tenants), their users, API keys of three kinds, and the audit log.
CREATE TABLE apps (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    slug       TEXT   NOT NULL UNIQUE,
    name       TEXT   NOT NULL,
    -- JSON: per-app settings (JWT issuer, client compatibility, invites …).
    settings   TEXT   NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- A user of one app, known by the app's own id for them (external_id). Deleting a user (a
-- privacy request) clears external_id and keeps the row, so the ledger's amounts stay attached
-- to anonymous_id.
CREATE TABLE users (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id       BIGINT NOT NULL REFERENCES apps (id),
    external_id  TEXT,
    anonymous_id TEXT   NOT NULL UNIQUE,
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT,
    deleted_at   BIGINT
);
CREATE UNIQUE INDEX users_external_id ON users (app_id, external_id) WHERE external_id IS NOT NULL;

-- Keys are stored as SHA-256 of the secret; `prefix` (kind + 8 random characters) finds the row.
CREATE TABLE api_keys (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    kind         TEXT   NOT NULL CHECK (kind IN ('user', 'app', 'operator')),
    prefix       TEXT   NOT NULL UNIQUE,
    last4        TEXT   NOT NULL,
    secret_hash  TEXT   NOT NULL,
    app_id       BIGINT REFERENCES apps (id),
    user_id      BIGINT REFERENCES users (id),
    role         TEXT CHECK (role IS NULL OR role IN ('owner', 'admin', 'support', 'viewer')),
    -- Operators limited to some apps: a JSON array of app slugs; NULL means every app.
    app_scope    TEXT,
    name         TEXT,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT,
    revoked_at   BIGINT,
    last_used_at BIGINT,
    CHECK ((kind = 'user') = (user_id IS NOT NULL)),
    CHECK ((kind = 'operator') = (role IS NOT NULL)),
    CHECK (kind = 'operator' OR app_id IS NOT NULL)
);
CREATE INDEX api_keys_app ON api_keys (app_id);
CREATE INDEX api_keys_user ON api_keys (user_id);

-- Every mutating admin call: who, what, on what, when, under which request id.
CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         BIGINT NOT NULL,
    actor      TEXT   NOT NULL,
    actor_role TEXT,
    action     TEXT   NOT NULL,
    target     TEXT,
    app_id     BIGINT,
    request_id TEXT,
    details    TEXT
);
CREATE INDEX audit_log_app ON audit_log (app_id, id);
