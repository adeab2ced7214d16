-- Invite codes: when an app requires them, a new user must redeem one before paid or metered
-- routes work.
CREATE TABLE invite_codes (
    id         BIGSERIAL PRIMARY KEY,
    app_id     BIGINT NOT NULL REFERENCES apps (id),
    code       TEXT   NOT NULL,
    max_uses   BIGINT NOT NULL,
    uses       BIGINT NOT NULL DEFAULT 0,
    expires_at BIGINT,
    created_at BIGINT NOT NULL,
    UNIQUE (app_id, code),
    CHECK (uses <= max_uses)
);

ALTER TABLE users ADD COLUMN invited_at BIGINT;
ALTER TABLE users ADD COLUMN invite_code_id BIGINT REFERENCES invite_codes (id);
