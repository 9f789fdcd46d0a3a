-- 0001_init: the trading schema.
--
-- Conventions: snake_case; every table's key is {table}_id; foreign keys are
-- named after the table they point to; created_at/updated_at everywhere
-- rows change; deleted_at (soft delete) on user-facing rows; money, prices
-- and quantities are NUMERIC (never float); times are timestamptz.

-- ---- helpers ------------------------------------------------------------------

CREATE FUNCTION vibex_touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.updated_at := now();
  RETURN NEW;
END $$;

-- One audit row per change of a watched table: the whole old and new row.
CREATE TABLE audit_log (
  audit_log_id bigserial PRIMARY KEY,
  table_name   text NOT NULL,
  row_id       bigint NOT NULL,
  action       text NOT NULL CHECK (action IN ('INSERT', 'UPDATE', 'DELETE')),
  old_row      jsonb,
  new_row      jsonb,
  changed_by   text NOT NULL DEFAULT current_user,
  txid         bigint NOT NULL DEFAULT txid_current(),
  changed_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_table_row ON audit_log (table_name, row_id, audit_log_id);

CREATE FUNCTION vibex_audit() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  key text := TG_ARGV[0];
  rec jsonb := to_jsonb(COALESCE(NEW, OLD));
BEGIN
  IF TG_OP = 'UPDATE' AND to_jsonb(OLD) - 'updated_at' = to_jsonb(NEW) - 'updated_at' THEN
    RETURN NEW; -- nothing but the timestamp changed
  END IF;
  INSERT INTO audit_log (table_name, row_id, action, old_row, new_row)
  VALUES (TG_TABLE_NAME, (rec ->> key)::bigint, TG_OP,
          CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END,
          CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END);
  RETURN COALESCE(NEW, OLD);
END $$;

-- ---- accounts and strategies ----------------------------------------------------

CREATE TABLE accounts (
  account_id    bigserial PRIMARY KEY,
  name          text NOT NULL,
  venue         text NOT NULL,
  mode          text NOT NULL DEFAULT 'paper' CHECK (mode IN ('live', 'paper')),
  quote_asset   text NOT NULL DEFAULT 'USDT',
  settings      jsonb NOT NULL DEFAULT '{}',
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now(),
  deleted_at    timestamptz
);
CREATE UNIQUE INDEX accounts_name_live ON accounts (name) WHERE deleted_at IS NULL;

CREATE TABLE strategies (
  strategy_id   bigserial PRIMARY KEY,
  name          text NOT NULL,
  description   text NOT NULL DEFAULT '',
  scripts       jsonb NOT NULL DEFAULT '{}',   -- context/prompt/policy script names and versions
  params        jsonb NOT NULL DEFAULT '{}',
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now(),
  deleted_at    timestamptz
);
CREATE UNIQUE INDEX strategies_name_live ON strategies (name) WHERE deleted_at IS NULL;

CREATE TABLE account_strategies (
  account_strategy_id bigserial PRIMARY KEY,
  account_id    bigint NOT NULL REFERENCES accounts,
  strategy_id   bigint NOT NULL REFERENCES strategies,
  assigned_at   timestamptz NOT NULL DEFAULT now(),
  unassigned_at timestamptz,
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now()
);
-- an account runs one strategy at a time
CREATE UNIQUE INDEX account_strategies_current ON account_strategies (account_id) WHERE unassigned_at IS NULL;

-- ---- configuration -----------------------------------------------------------------

CREATE TABLE config_versions (
  config_version_id bigserial PRIMARY KEY,
  version       integer NOT NULL,
  hash          text NOT NULL,
  environment   text NOT NULL,
  source_path   text,
  config        jsonb NOT NULL,          -- secrets masked
  applied_at    timestamptz NOT NULL DEFAULT now(),
  created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX config_versions_hash ON config_versions (hash);

-- ---- decisions ------------------------------------------------------------------------

CREATE TABLE decisions (
  decision_id     bigserial PRIMARY KEY,
  account_id      bigint NOT NULL REFERENCES accounts,
  strategy_id     bigint REFERENCES strategies,
  cycle_key       text NOT NULL,          -- account + interval start: one row per cycle
  provider        text,
  model           text,
  prompt_version  text,
  prompt          jsonb,                  -- the messages as sent
  raw_answer      text,
  parsed          jsonb,
  valid           boolean,
  validation      jsonb,                  -- what was rejected or repaired, and why
  tokens_in       integer,
  tokens_out      integer,
  latency_ms      numeric,
  cost            numeric,
  experiment      text,
  variant         text,
  config_hash     text,
  step_ms         jsonb,                  -- time per step of the cycle
  error           text,
  started_at      timestamptz NOT NULL DEFAULT now(),
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX decisions_cycle ON decisions (account_id, cycle_key);
CREATE INDEX decisions_variant ON decisions (experiment, variant, started_at);

-- ---- orders, fills, positions -------------------------------------------------------------

CREATE TABLE orders (
  order_id        bigserial PRIMARY KEY,
  account_id      bigint NOT NULL REFERENCES accounts,
  decision_id     bigint REFERENCES decisions,
  leg             integer,
  client_order_id text NOT NULL UNIQUE,
  venue_order_id  text,
  symbol          text NOT NULL,
  side            text NOT NULL CHECK (side IN ('BUY', 'SELL')),
  position_side   text NOT NULL DEFAULT 'BOTH' CHECK (position_side IN ('BOTH', 'LONG', 'SHORT')),
  type            text NOT NULL,
  time_in_force   text,
  price           numeric,
  stop_price      numeric,
  quantity        numeric,
  executed_qty    numeric NOT NULL DEFAULT 0,
  avg_price       numeric,
  reduce_only     boolean NOT NULL DEFAULT false,
  close_position  boolean NOT NULL DEFAULT false,
  working_type    text,
  status          text NOT NULL DEFAULT 'PENDING',
  reject_reason   text,
  venue_updated_at timestamptz,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  deleted_at      timestamptz
);
CREATE INDEX orders_account_status ON orders (account_id, status) WHERE deleted_at IS NULL;
CREATE INDEX orders_venue_id ON orders (venue_order_id);

-- every state an order passed through, in order
CREATE TABLE order_events (
  order_event_id  bigserial PRIMARY KEY,
  order_id        bigint NOT NULL REFERENCES orders,
  status          text NOT NULL,
  executed_qty    numeric NOT NULL,
  avg_price       numeric,
  venue_time      timestamptz,
  created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX order_events_order ON order_events (order_id, order_event_id);

CREATE FUNCTION vibex_order_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' OR NEW.status IS DISTINCT FROM OLD.status OR NEW.executed_qty IS DISTINCT FROM OLD.executed_qty THEN
    INSERT INTO order_events (order_id, status, executed_qty, avg_price, venue_time)
    VALUES (NEW.order_id, NEW.status, NEW.executed_qty, NEW.avg_price, NEW.venue_updated_at);
  END IF;
  RETURN NEW;
END $$;

CREATE TABLE fills (
  fill_id         bigserial PRIMARY KEY,
  account_id      bigint NOT NULL REFERENCES accounts,
  order_id        bigint REFERENCES orders,
  client_order_id text,
  trade_id        text NOT NULL,
  symbol          text NOT NULL,
  side            text NOT NULL CHECK (side IN ('BUY', 'SELL')),
  price           numeric NOT NULL,
  quantity        numeric NOT NULL,
  fee             numeric NOT NULL DEFAULT 0,
  fee_asset       text,
  realized_pnl    numeric NOT NULL DEFAULT 0,
  is_maker        boolean NOT NULL DEFAULT false,
  filled_at       timestamptz NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now()
);
-- a fill seen twice (stream and REST, or a replay) is stored once
CREATE UNIQUE INDEX fills_trade ON fills (account_id, symbol, trade_id);
CREATE INDEX fills_order ON fills (order_id);

CREATE TABLE positions (
  position_id       bigserial PRIMARY KEY,
  account_id        bigint NOT NULL REFERENCES accounts,
  symbol            text NOT NULL,
  position_side     text NOT NULL DEFAULT 'BOTH' CHECK (position_side IN ('BOTH', 'LONG', 'SHORT')),
  quantity          numeric NOT NULL DEFAULT 0,     -- signed in one-way mode
  entry_price       numeric,
  leverage          numeric,
  margin_type       text,
  unrealized_pnl    numeric NOT NULL DEFAULT 0,
  liquidation_price numeric,
  exit_plan         jsonb,                          -- stop loss, take profit, invalidation
  opened_at         timestamptz,
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now(),
  deleted_at        timestamptz
);
CREATE UNIQUE INDEX positions_current ON positions (account_id, symbol, position_side) WHERE deleted_at IS NULL;

CREATE TABLE position_history (
  position_history_id bigserial PRIMARY KEY,
  position_id       bigint NOT NULL REFERENCES positions,
  quantity          numeric NOT NULL,
  entry_price       numeric,
  unrealized_pnl    numeric,
  liquidation_price numeric,
  recorded_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX position_history_position ON position_history (position_id, position_history_id);

CREATE FUNCTION vibex_position_history() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' OR NEW.quantity IS DISTINCT FROM OLD.quantity OR NEW.entry_price IS DISTINCT FROM OLD.entry_price
     OR NEW.unrealized_pnl IS DISTINCT FROM OLD.unrealized_pnl THEN
    INSERT INTO position_history (position_id, quantity, entry_price, unrealized_pnl, liquidation_price)
    VALUES (NEW.position_id, NEW.quantity, NEW.entry_price, NEW.unrealized_pnl, NEW.liquidation_price);
  END IF;
  RETURN NEW;
END $$;

CREATE TABLE funding_payments (
  funding_payment_id bigserial PRIMARY KEY,
  account_id      bigint NOT NULL REFERENCES accounts,
  symbol          text NOT NULL,
  amount          numeric NOT NULL,                 -- positive: received
  rate            numeric,
  position_qty    numeric,
  paid_at         timestamptz NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX funding_payments_once ON funding_payments (account_id, symbol, paid_at);

-- ---- account state and performance -----------------------------------------------------------

CREATE TABLE account_snapshots (
  account_snapshot_id bigserial PRIMARY KEY,
  account_id      bigint NOT NULL REFERENCES accounts,
  equity          numeric NOT NULL,
  wallet_balance  numeric NOT NULL,
  available       numeric,
  unrealized_pnl  numeric NOT NULL DEFAULT 0,
  margin_used     numeric,
  taken_at        timestamptz NOT NULL DEFAULT now(),
  created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX account_snapshots_account ON account_snapshots (account_id, taken_at);

CREATE TABLE performance_metrics (
  performance_metric_id bigserial PRIMARY KEY,
  account_id      bigint NOT NULL REFERENCES accounts,
  window_name     text NOT NULL,                    -- '1d', '7d', '30d', 'all'
  equity          numeric,
  pnl             numeric,
  return_pct      numeric,
  max_drawdown    numeric,
  sharpe          numeric,
  win_rate        numeric,
  trades          integer,
  fees            numeric,
  funding         numeric,
  computed_at     timestamptz NOT NULL DEFAULT now(),
  created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX performance_metrics_account ON performance_metrics (account_id, window_name, computed_at);

-- ---- diary ---------------------------------------------------------------------------------------

CREATE TABLE diary_entries (
  diary_entry_id  bigserial PRIMARY KEY,
  account_id      bigint REFERENCES accounts,
  decision_id     bigint REFERENCES decisions,
  author          text NOT NULL CHECK (author IN ('agent', 'user')),
  body            text NOT NULL,
  tags            text[] NOT NULL DEFAULT '{}',
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  deleted_at      timestamptz
);
CREATE INDEX diary_entries_account ON diary_entries (account_id, created_at) WHERE deleted_at IS NULL;
CREATE INDEX diary_entries_tags ON diary_entries USING gin (tags);

-- ---- market data ------------------------------------------------------------------------------------
-- One row per (symbol, interval, open_time): re-ingesting a range is harmless.
-- A TimescaleDB hypertable when the extension is installed, otherwise native
-- range partitions by year (plus a default partition for anything outside).

DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb') THEN
    EXECUTE 'CREATE EXTENSION IF NOT EXISTS timescaledb';
    EXECUTE $q$
      CREATE TABLE candles (
        symbol text NOT NULL, interval text NOT NULL, open_time timestamptz NOT NULL,
        open numeric NOT NULL, high numeric NOT NULL, low numeric NOT NULL, close numeric NOT NULL,
        volume numeric NOT NULL, quote_volume numeric, trades integer, close_time timestamptz,
        PRIMARY KEY (symbol, interval, open_time))$q$;
    EXECUTE $q$SELECT create_hypertable('candles', 'open_time', chunk_time_interval => interval '30 days')$q$;
  ELSE
    EXECUTE $q$
      CREATE TABLE candles (
        symbol text NOT NULL, interval text NOT NULL, open_time timestamptz NOT NULL,
        open numeric NOT NULL, high numeric NOT NULL, low numeric NOT NULL, close numeric NOT NULL,
        volume numeric NOT NULL, quote_volume numeric, trades integer, close_time timestamptz,
        PRIMARY KEY (symbol, interval, open_time)) PARTITION BY RANGE (open_time)$q$;
    FOR y IN 2017..2035 LOOP
      EXECUTE format('CREATE TABLE candles_%s PARTITION OF candles FOR VALUES FROM (%L) TO (%L)',
                     y, make_date(y, 1, 1), make_date(y + 1, 1, 1));
    END LOOP;
    EXECUTE 'CREATE TABLE candles_other PARTITION OF candles DEFAULT';
  END IF;
END $$;

-- ---- triggers -----------------------------------------------------------------------------------------

CREATE TRIGGER accounts_touch BEFORE UPDATE ON accounts FOR EACH ROW EXECUTE FUNCTION vibex_touch_updated_at();
CREATE TRIGGER strategies_touch BEFORE UPDATE ON strategies FOR EACH ROW EXECUTE FUNCTION vibex_touch_updated_at();
CREATE TRIGGER account_strategies_touch BEFORE UPDATE ON account_strategies FOR EACH ROW EXECUTE FUNCTION vibex_touch_updated_at();
CREATE TRIGGER decisions_touch BEFORE UPDATE ON decisions FOR EACH ROW EXECUTE FUNCTION vibex_touch_updated_at();
CREATE TRIGGER orders_touch BEFORE UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION vibex_touch_updated_at();
CREATE TRIGGER positions_touch BEFORE UPDATE ON positions FOR EACH ROW EXECUTE FUNCTION vibex_touch_updated_at();
CREATE TRIGGER diary_entries_touch BEFORE UPDATE ON diary_entries FOR EACH ROW EXECUTE FUNCTION vibex_touch_updated_at();

CREATE TRIGGER orders_events AFTER INSERT OR UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION vibex_order_event();
CREATE TRIGGER positions_history AFTER INSERT OR UPDATE ON positions FOR EACH ROW EXECUTE FUNCTION vibex_position_history();

CREATE TRIGGER accounts_audit AFTER INSERT OR UPDATE OR DELETE ON accounts FOR EACH ROW EXECUTE FUNCTION vibex_audit('account_id');
CREATE TRIGGER orders_audit AFTER INSERT OR UPDATE OR DELETE ON orders FOR EACH ROW EXECUTE FUNCTION vibex_audit('order_id');
CREATE TRIGGER positions_audit AFTER INSERT OR UPDATE OR DELETE ON positions FOR EACH ROW EXECUTE FUNCTION vibex_audit('position_id');
