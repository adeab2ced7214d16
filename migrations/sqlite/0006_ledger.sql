-- The credit ledger (docs/credits.md): append-only entries, grant buckets, holds, the cached
-- balance per user, quota counters, and stored answers for Idempotency-Key.
-- Amounts are integer micro-credits (10^-6 of a credit). Times are ms since the epoch.

-- The user's plan and billing period (written by subscriptions and by operators).
ALTER TABLE users ADD COLUMN plan_id TEXT;
ALTER TABLE users ADD COLUMN period_start BIGINT;
ALTER TABLE users ADD COLUMN period_end BIGINT;

-- One row per user: the balance (sum of every entry's `amount`) and what open holds reserve
-- (sum of every entry's `held`), both updated in the transaction that appends the entry. Every
-- ledger transaction locks this row first, so writes for one user are serialised.
CREATE TABLE credit_accounts (
    user_id    BIGINT NOT NULL PRIMARY KEY REFERENCES users (id),
    app_id     BIGINT NOT NULL REFERENCES apps (id),
    balance    BIGINT NOT NULL DEFAULT 0,
    held       BIGINT NOT NULL DEFAULT 0 CHECK (held >= 0),
    updated_at BIGINT NOT NULL
);

-- Where credits came from and how much of each is left; spent soonest-expiring first.
CREATE TABLE credit_grants (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id     BIGINT NOT NULL REFERENCES apps (id),
    user_id    BIGINT NOT NULL REFERENCES users (id),
    source     TEXT   NOT NULL,
    amount     BIGINT NOT NULL CHECK (amount > 0),
    remaining  BIGINT NOT NULL CHECK (remaining >= 0 AND remaining <= amount),
    expires_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX credit_grants_open ON credit_grants (user_id, expires_at) WHERE remaining > 0;

-- Credits reserved for work whose cost is not known yet (an AI call).
CREATE TABLE credit_holds (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id      BIGINT NOT NULL REFERENCES apps (id),
    user_id     BIGINT NOT NULL REFERENCES users (id),
    amount      BIGINT NOT NULL CHECK (amount > 0),
    -- What the work has used so far, as recorded while it runs (settled at this if it dies).
    used        BIGINT CHECK (used >= 0 AND used <= amount),
    state       TEXT   NOT NULL CHECK (state IN ('open', 'settled', 'released', 'expired')),
    charged     BIGINT,
    reference   TEXT,
    expires_at  BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    resolved_at BIGINT
);
CREATE INDEX credit_holds_open ON credit_holds (expires_at) WHERE state = 'open';

-- Append-only. `amount` is the entry's change to the balance, `held` its change to the held
-- total. The idempotency key is unique per app: writing an entry twice returns the first.
CREATE TABLE ledger_entries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id          BIGINT NOT NULL REFERENCES apps (id),
    user_id         BIGINT NOT NULL REFERENCES users (id),
    kind            TEXT   NOT NULL CHECK (kind IN ('grant', 'debit', 'hold', 'settle', 'release',
                                                    'expire', 'adjustment', 'refund')),
    amount          BIGINT NOT NULL,
    held            BIGINT NOT NULL DEFAULT 0,
    balance_after   BIGINT NOT NULL,
    grant_id        BIGINT REFERENCES credit_grants (id),
    hold_id         BIGINT REFERENCES credit_holds (id),
    source          TEXT,
    reason          TEXT,
    reference       TEXT,
    idempotency_key TEXT,
    created_at      BIGINT NOT NULL,
    UNIQUE (app_id, idempotency_key)
);
CREATE INDEX ledger_entries_user ON ledger_entries (user_id, id);

-- Usage per user, metric and period, keyed by the period's start: a new period is a new row,
-- so nothing has to reset counters.
CREATE TABLE quota_counters (
    app_id       BIGINT NOT NULL REFERENCES apps (id),
    user_id      BIGINT NOT NULL REFERENCES users (id),
    metric       TEXT   NOT NULL,
    period_start BIGINT NOT NULL,
    used         BIGINT NOT NULL,
    PRIMARY KEY (user_id, metric, period_start)
);

-- Idempotency-Key: the first request's final answer, replayed to repeats of it. `principal`
-- names the caller (the key is scoped to it); `locked_until` marks a request in flight.
CREATE TABLE idempotency_keys (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id       BIGINT REFERENCES apps (id),
    principal    TEXT   NOT NULL,
    key          TEXT   NOT NULL,
    fingerprint  TEXT   NOT NULL,
    status       INTEGER,
    headers      TEXT,
    body         BLOB,
    locked_until BIGINT,
    created_at   BIGINT NOT NULL,
    UNIQUE (principal, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
