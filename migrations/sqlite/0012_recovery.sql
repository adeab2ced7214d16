-- Payment recovery (docs/recovery.md): a failed payment opens a case per user and subscription;
-- a payment whose store event time falls within the case's window after its first failure
-- recovers it; the window passing (or the subscription ending) loses it.

-- The subscription a payment outcome is for ('' when the store names none).
ALTER TABLE payment_events ADD COLUMN subscription_id TEXT NOT NULL DEFAULT '';

CREATE TABLE recovery_cases (
    id                      INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id                  BIGINT NOT NULL REFERENCES apps (id),
    user_id                 BIGINT NOT NULL REFERENCES users (id),
    provider                TEXT   NOT NULL,
    subscription_id         TEXT   NOT NULL,
    state                   TEXT   NOT NULL CHECK (state IN ('open', 'recovered', 'lost', 'canceled')),
    -- Store event times (ms), never processing times.
    first_failure_at        BIGINT NOT NULL,
    last_failure_at         BIGINT NOT NULL,
    attempts                BIGINT NOT NULL,
    amount_minor            BIGINT,
    currency                TEXT,
    -- The app's window when the case opened: a payment until first_failure_at + window_ms recovers it.
    window_ms               BIGINT NOT NULL,
    recovered_at            BIGINT,
    recovered_amount_minor  BIGINT,
    closed_at               BIGINT,
    created_at              BIGINT NOT NULL,
    updated_at              BIGINT NOT NULL
);
-- One open case per user and subscription.
CREATE UNIQUE INDEX recovery_cases_one_open ON recovery_cases (app_id, user_id, provider, subscription_id)
    WHERE state = 'open';
CREATE INDEX recovery_cases_user ON recovery_cases (app_id, user_id, provider, subscription_id);
CREATE INDEX recovery_cases_due ON recovery_cases (first_failure_at) WHERE state = 'open';
