-- A recovery incentive (docs/recovery.md): what was given when the case was recovered, once.
ALTER TABLE recovery_cases ADD COLUMN incentive_days BIGINT;
ALTER TABLE recovery_cases ADD COLUMN incentive_credits BIGINT;
ALTER TABLE recovery_cases ADD COLUMN incentive_applied_at BIGINT;
