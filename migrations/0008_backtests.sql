-- 0008_backtests: a backtest is a run (kind 'backtest') whose facts are
-- written in bulk when it ends; its round-trip trades; and recorded model
-- answers, so a backtest re-run answers from the record instead of the model.
--
-- runs.details of a backtest holds its report (report.json without the
-- per-trade list) and the digest of its order stream.

CREATE TABLE backtest_trades (
  backtest_trade_id bigserial PRIMARY KEY,
  run_id        bigint NOT NULL REFERENCES runs ON DELETE CASCADE,
  account       text NOT NULL,
  symbol        text NOT NULL,
  side          text NOT NULL CHECK (side IN ('long', 'short')),
  opened_at     timestamptz NOT NULL,
  closed_at     timestamptz NOT NULL,
  quantity      numeric NOT NULL,
  entry_price   numeric,
  exit_price    numeric,
  pnl           numeric NOT NULL,          -- realized, before fees and funding
  fees          numeric NOT NULL,
  funding       numeric NOT NULL,
  net           numeric NOT NULL,
  reason        text NOT NULL CHECK (reason IN ('signal', 'stop', 'target', 'liquidation')),
  created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX backtest_trades_run ON backtest_trades (run_id, account, symbol, opened_at);

-- One answer per key: sha256 over (provider, model, messages, parameters).
CREATE TABLE llm_answers (
  answer_key    text PRIMARY KEY,
  provider      text NOT NULL,
  model         text,
  request       jsonb NOT NULL,             -- the messages and parameters the key was made of
  answer        text NOT NULL,
  tokens_in     integer,
  tokens_out    integer,
  cost          numeric,
  latency_ms    numeric,
  first_run_id  bigint REFERENCES runs ON DELETE SET NULL,
  created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX llm_answers_model ON llm_answers (provider, model);

-- Which answers a run was given (a replay of that run answers from these only).
CREATE TABLE run_answers (
  run_id        bigint NOT NULL REFERENCES runs ON DELETE CASCADE,
  answer_key    text NOT NULL REFERENCES llm_answers ON DELETE CASCADE,
  account       text,
  cycle_key     text,
  PRIMARY KEY (run_id, answer_key)
);

CREATE INDEX account_snapshots_run ON account_snapshots (run_id) WHERE run_id IS NOT NULL;
CREATE INDEX orders_run ON orders (run_id) WHERE run_id IS NOT NULL;
CREATE INDEX fills_run ON fills (run_id) WHERE run_id IS NOT NULL;
CREATE INDEX diary_entries_run ON diary_entries (run_id) WHERE run_id IS NOT NULL;

-- Funding settlements and mark price candles downloaded for backtests
-- (vibex data download --funding --mark); a backtest on the database
-- settles funding at these rates and moves the mark with these candles.
CREATE TABLE funding_rates (
  symbol        text NOT NULL,
  funding_time  timestamptz NOT NULL,
  rate          numeric NOT NULL,
  mark_price    numeric,
  created_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (symbol, funding_time)
);

CREATE TABLE mark_candles (
  symbol        text NOT NULL,
  interval      text NOT NULL,
  open_time     timestamptz NOT NULL,
  open          numeric NOT NULL,
  high          numeric NOT NULL,
  low           numeric NOT NULL,
  close         numeric NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (symbol, interval, open_time)
);
