-- Billing stores (docs/billing.md): verified webhook deliveries, the subscriptions they
-- describe, the stores' customer ids, and payment outcomes for the recovery feature.
-- Times are ms since the epoch; a store's event time is kept apart from the received time.

-- When a user's paid plan stops applying unless renewed (a subscription set to cancel at its
-- period's end); NULL for one that renews.
ALTER TABLE users ADD COLUMN plan_until BIGINT;

-- Every verified delivery, stored before it is answered, with its processing job in the same
-- transaction. One row per store event: a redelivery finds it and changes nothing.
CREATE TABLE webhook_events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id       BIGINT NOT NULL REFERENCES apps (id),
    provider     TEXT   NOT NULL,
    event_id     TEXT   NOT NULL,
    event_type   TEXT   NOT NULL,
    event_time   BIGINT NOT NULL,
    received_at  BIGINT NOT NULL,
    body         BLOB   NOT NULL,
    status       TEXT   NOT NULL CHECK (status IN ('pending', 'processed', 'ignored', 'failed')),
    attempts     BIGINT NOT NULL DEFAULT 0,
    deliveries   BIGINT NOT NULL DEFAULT 1,
    user_id      BIGINT REFERENCES users (id),
    change       TEXT,
    outcome      TEXT,
    last_error   TEXT,
    processed_at BIGINT,
    UNIQUE (app_id, provider, event_id)
);
CREATE INDEX webhook_events_status ON webhook_events (status, id);

-- A user's subscription at one store, as the newest event (by event time, then id) left it.
CREATE TABLE subscriptions (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id               BIGINT NOT NULL REFERENCES apps (id),
    user_id              BIGINT NOT NULL REFERENCES users (id),
    provider             TEXT   NOT NULL,
    provider_id          TEXT   NOT NULL,
    status               TEXT   NOT NULL,
    product_id           TEXT,
    plan_id              TEXT,
    period_start         BIGINT,
    period_end           BIGINT,
    cancel_at_period_end BOOLEAN NOT NULL,
    environment          TEXT,
    store                TEXT,
    event_time           BIGINT NOT NULL,
    event_id             TEXT   NOT NULL,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL,
    UNIQUE (app_id, provider, provider_id)
);
CREATE INDEX subscriptions_user ON subscriptions (user_id);

-- The store's customer id of a user, so events naming only the customer find the user.
CREATE TABLE billing_customers (
    app_id      BIGINT NOT NULL REFERENCES apps (id),
    user_id     BIGINT NOT NULL REFERENCES users (id),
    provider    TEXT   NOT NULL,
    customer_id TEXT   NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (app_id, provider, customer_id)
);
CREATE INDEX billing_customers_user ON billing_customers (user_id, provider);

-- Which grants a store purchase (invoice, payment, transaction) made, under every id the
-- store may later name it by: a refund finds them here.
CREATE TABLE purchase_grants (
    app_id      BIGINT NOT NULL REFERENCES apps (id),
    user_id     BIGINT NOT NULL REFERENCES users (id),
    provider    TEXT   NOT NULL,
    reference   TEXT   NOT NULL,
    grant_id    BIGINT NOT NULL REFERENCES credit_grants (id),
    PRIMARY KEY (app_id, provider, reference, grant_id)
);

-- Payment outcomes published for the payment-recovery feature, one per store event.
CREATE TABLE payment_events (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id        BIGINT NOT NULL REFERENCES apps (id),
    user_id       BIGINT NOT NULL REFERENCES users (id),
    provider      TEXT   NOT NULL,
    kind          TEXT   NOT NULL CHECK (kind IN ('payment_failed', 'payment_succeeded')),
    reference     TEXT,
    amount_minor  BIGINT,
    currency      TEXT,
    event_time    BIGINT NOT NULL,
    webhook_id    BIGINT NOT NULL UNIQUE REFERENCES webhook_events (id),
    created_at    BIGINT NOT NULL
);
CREATE INDEX payment_events_user ON payment_events (app_id, user_id, event_time);
