-- Recovery nudges (docs/recovery.md): one row per case and cadence step, made when the step is
-- due and sent once by its job; the link in it (/r/{token}) counts clicks.
CREATE TABLE recovery_nudges (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id           BIGINT NOT NULL REFERENCES apps (id),
    case_id          BIGINT NOT NULL REFERENCES recovery_cases (id),
    step             BIGINT NOT NULL,
    variant          TEXT   NOT NULL,
    -- pending: due, waiting for its job (or the end of quiet hours); sent; skipped: a later step
    -- was due when the case was first seen; canceled: the case closed before it was sent.
    state            TEXT   NOT NULL CHECK (state IN ('pending', 'sent', 'skipped', 'canceled')),
    due_at           BIGINT NOT NULL,
    send_after       BIGINT NOT NULL,
    sent_at          BIGINT,
    -- SHA-256 (hex) of the link's token; the token itself travels only in the nudge.
    token_hash       TEXT UNIQUE,
    link_expires_at  BIGINT,
    clicks           BIGINT NOT NULL DEFAULT 0,
    first_click_at   BIGINT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    UNIQUE (case_id, step)
);
CREATE INDEX recovery_nudges_pending ON recovery_nudges (send_after) WHERE state = 'pending';
CREATE INDEX recovery_nudges_app ON recovery_nudges (app_id, case_id);
