-- Runtime settings that every replica reads (kill switches, queue pauses, instance facts).
-- Times are integer milliseconds since the Unix epoch, UTC, everywhere in the schema.
CREATE TABLE settings (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
