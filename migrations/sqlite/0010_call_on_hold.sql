-- What an AI call's hold was for (model, provider, tokens so far, as JSON), so that a call cut
-- by a crash and settled by the expiry job still leaves a usage record (flagged estimated).
-- NULL for holds taken through the credits API.
ALTER TABLE credit_holds ADD COLUMN call TEXT;
