-- The agent's records: every model call, every risk-gate refusal, and
-- performance per strategy as well as per account.

CREATE TABLE llm_calls (
  llm_call_id   bigserial PRIMARY KEY,
  account_id    bigint REFERENCES accounts,
  decision_id   bigint REFERENCES decisions,
  purpose       text NOT NULL,                 -- 'decide' | 'repair'
  provider      text NOT NULL,
  model         text,
  variant       text,
  outcome       text NOT NULL,                 -- 'ok' or the error kind
  attempts      integer,
  tokens_in     integer,
  tokens_out    integer,
  latency_ms    numeric,
  cost          numeric,
  error         text,
  created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX llm_calls_decision ON llm_calls (decision_id);
CREATE INDEX llm_calls_provider ON llm_calls (provider, model, created_at);

CREATE TABLE risk_refusals (
  risk_refusal_id bigserial PRIMARY KEY,
  account_id    bigint NOT NULL REFERENCES accounts,
  decision_id   bigint REFERENCES decisions,
  rule          text NOT NULL,
  symbol        text,
  message       text NOT NULL,
  intent        jsonb,
  created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX risk_refusals_account ON risk_refusals (account_id, created_at);

ALTER TABLE performance_metrics ADD COLUMN strategy text;
CREATE INDEX performance_metrics_strategy ON performance_metrics (strategy, computed_at);
