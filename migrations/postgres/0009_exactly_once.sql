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

-- Every app at once only for the schema's owner: a role that merely reads and writes the
-- tables (database.url, when database.owner_url names the owner) can set tollgate.all_apps and
-- still sees only the app named in tollgate.app_id. The owner is the owner of `users`, the
-- role that ran the migrations.
CREATE OR REPLACE FUNCTION tollgate_tenant_visible(row_app_id BIGINT) RETURNS BOOLEAN
LANGUAGE sql STABLE AS $$
    SELECT row_app_id = nullif(current_setting('tollgate.app_id', true), '')::BIGINT
        OR (coalesce(current_setting('tollgate.all_apps', true), '') = 'on'
            AND pg_has_role(current_user,
                (SELECT relowner FROM pg_class WHERE oid = 'users'::regclass), 'MEMBER'))
$$;
