-- 0003_paper_state: a paper (simulated) account's state — wallet, positions,
-- open orders, clock — saved as the venue snapshot, restored on restart.
CREATE TABLE paper_states (
  paper_state_id bigserial PRIMARY KEY,
  account_id     bigint NOT NULL UNIQUE REFERENCES accounts,
  state          jsonb NOT NULL,
  created_at     timestamptz NOT NULL DEFAULT now(),
  updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER paper_states_touch BEFORE UPDATE ON paper_states FOR EACH ROW EXECUTE FUNCTION vibex_touch_updated_at();
