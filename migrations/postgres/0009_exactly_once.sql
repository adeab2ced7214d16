-- One Stripe Checkout Session per user and price: the row is claimed before the session is
-- created, so concurrent requests wait for the first one's session instead of making their
-- own. `generation` names the Stripe Idempotency-Key of the session being made: a claim taken
-- over after a crash asks Stripe again with the same key and gets the same session.
CREATE TABLE checkout_sessions (
    app_id      BIGINT NOT NULL REFERENCES apps (id),
    user_id     BIGINT NOT NULL REFERENCES users (id),
    price       TEXT   NOT NULL,
    generation  BIGINT NOT NULL,
    session_id  TEXT,
    url         TEXT,
    expires_at  BIGINT,
    claimed_at  BIGINT NOT NULL,
    PRIMARY KEY (app_id, user_id, price)
);

ALTER TABLE checkout_sessions ENABLE ROW LEVEL SECURITY;
ALTER TABLE checkout_sessions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON checkout_sessions
    USING (tollgate_tenant_visible(app_id)) WITH CHECK (tollgate_tenant_visible(app_id));
