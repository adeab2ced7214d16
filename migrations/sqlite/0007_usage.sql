-- One row per AI call through the gateway (docs/gateway.md): who, which model and provider,
-- tokens by kind, what was charged, timings, and whether the tokens were estimated (the
-- provider reported no usage because the stream broke or the client left).
CREATE TABLE usage_records (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id              BIGINT  NOT NULL REFERENCES apps (id),
    user_id             BIGINT  NOT NULL REFERENCES users (id),
    request_id          TEXT    NOT NULL,
    model               TEXT    NOT NULL,
    provider            TEXT    NOT NULL,
    upstream_model      TEXT    NOT NULL,
    input_tokens        BIGINT  NOT NULL,
    cached_input_tokens BIGINT  NOT NULL,
    output_tokens       BIGINT  NOT NULL,
    cost                BIGINT  NOT NULL CHECK (cost >= 0),
    hold_id             BIGINT,
    status              TEXT    NOT NULL,
    estimated           INTEGER NOT NULL,
    stream              INTEGER NOT NULL,
    latency_ms          BIGINT  NOT NULL,
    ttft_ms             BIGINT,
    created_at          BIGINT  NOT NULL
);
CREATE INDEX usage_records_user ON usage_records (app_id, user_id, id);
