-- A user's email address, for recovery nudges by email (docs/recovery.md): set by the app
-- (`PUT /v1/users/{external_id}/email`), erased with the user.
ALTER TABLE users ADD COLUMN email TEXT;
