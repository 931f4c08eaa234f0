-- Up Migration
-- A hold may reserve beyond its lots, up to the wallet's overdraft limit (invariant 6). That part
-- is held unassigned to any lot (entries available(null) → held(null)); `overdraft` is how much of
-- the hold's `held` it is, so capture can take it last and release can give it back.
ALTER TABLE holds ADD COLUMN IF NOT EXISTS overdraft bigint NOT NULL DEFAULT 0;
ALTER TABLE holds DROP CONSTRAINT IF EXISTS holds_overdraft_within_held;
ALTER TABLE holds ADD CONSTRAINT holds_overdraft_within_held CHECK (overdraft >= 0 AND overdraft <= held);
