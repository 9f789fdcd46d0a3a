-- 0007_integrity: every recorded fact has an identity, and runs are records.
--
-- A run is one stretch of trading that facts belong to: a replay (or, with
-- the backtest issue, a backtest) of a config over a data range, or one
-- start of a live or paper account. A replay restarted after a crash or a
-- stop resumes its run (same identity: config hash, scripts, data), so its
-- facts are written again under the same keys and change nothing.
--
-- Natural keys (run_id is NULL on rows written before this migration, and
-- on rows written outside a run, e.g. from the REPL; COALESCE(run_id, 0)
-- keeps those under the old rules):
--   decisions            (account, run, cycle)
--   diary_entries        (account, run, cycle) for the agent's cycle entry
--   account_snapshots    (account, run, cycle)
--   performance_metrics  (account, run, cycle, window)
--   risk_refusals        (account, run, cycle, seq)
--   llm_calls            (account, run, cycle, seq)
--   order_events         (order, status, executed quantity): an order passes
--                        through each state once, and only forward
--   fills                (account, symbol, venue trade id), as before

CREATE TABLE runs (
  run_id          bigserial PRIMARY KEY,
  kind            text NOT NULL CHECK (kind IN ('live', 'paper', 'replay', 'backtest')),
  identity        text NOT NULL,              -- sha256 of what makes two starts the same run
  accounts        text[] NOT NULL DEFAULT '{}',
  config_hash     text,
  script_versions jsonb NOT NULL DEFAULT '{}',
  data_from       timestamptz,
  data_to         timestamptz,
  pid             integer,
  resumes         integer NOT NULL DEFAULT 0, -- how many times a later process carried it on
  recorded_to     text,                       -- the last cycle fully recorded (replays)
  started_at      timestamptz NOT NULL DEFAULT now(),
  resumed_at      timestamptz,
  ended_at        timestamptz,
  -- NULL while it runs; crashed: found unfinished by a later start
  outcome         text CHECK (outcome IN ('completed', 'stopped', 'failed', 'crashed')),
  details         jsonb NOT NULL DEFAULT '{}',
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX runs_identity ON runs (identity, run_id);
CREATE INDEX runs_kind ON runs (kind, started_at);
CREATE TRIGGER runs_touch BEFORE UPDATE ON runs FOR EACH ROW EXECUTE FUNCTION vibex_touch_updated_at();

ALTER TABLE decisions ADD COLUMN run_id bigint REFERENCES runs;
ALTER TABLE decisions ADD COLUMN completed_at timestamptz;   -- the cycle's whole record is in (one transaction)
DROP INDEX decisions_cycle;
CREATE UNIQUE INDEX decisions_run_cycle ON decisions (account_id, (COALESCE(run_id, 0)), cycle_key);
CREATE INDEX decisions_run ON decisions (run_id) WHERE run_id IS NOT NULL;

ALTER TABLE diary_entries ADD COLUMN run_id bigint REFERENCES runs;
ALTER TABLE diary_entries ADD COLUMN cycle_key text;
CREATE UNIQUE INDEX diary_entries_cycle ON diary_entries (account_id, (COALESCE(run_id, 0)), cycle_key)
  WHERE author = 'agent' AND cycle_key IS NOT NULL;

ALTER TABLE account_snapshots ADD COLUMN run_id bigint REFERENCES runs;
ALTER TABLE account_snapshots ADD COLUMN cycle_key text;
CREATE UNIQUE INDEX account_snapshots_cycle ON account_snapshots (account_id, (COALESCE(run_id, 0)), cycle_key)
  WHERE cycle_key IS NOT NULL;

ALTER TABLE performance_metrics ADD COLUMN run_id bigint REFERENCES runs;
ALTER TABLE performance_metrics ADD COLUMN cycle_key text;
CREATE UNIQUE INDEX performance_metrics_cycle
  ON performance_metrics (account_id, (COALESCE(run_id, 0)), cycle_key, window_name) WHERE cycle_key IS NOT NULL;

ALTER TABLE risk_refusals ADD COLUMN run_id bigint REFERENCES runs;
ALTER TABLE risk_refusals ADD COLUMN cycle_key text;
ALTER TABLE risk_refusals ADD COLUMN seq integer;
CREATE UNIQUE INDEX risk_refusals_cycle ON risk_refusals (account_id, (COALESCE(run_id, 0)), cycle_key, seq)
  WHERE cycle_key IS NOT NULL AND seq IS NOT NULL;

ALTER TABLE llm_calls ADD COLUMN run_id bigint REFERENCES runs;
ALTER TABLE llm_calls ADD COLUMN cycle_key text;
ALTER TABLE llm_calls ADD COLUMN seq integer;
CREATE UNIQUE INDEX llm_calls_cycle ON llm_calls (account_id, (COALESCE(run_id, 0)), cycle_key, seq)
  WHERE cycle_key IS NOT NULL AND seq IS NOT NULL;

ALTER TABLE orders ADD COLUMN run_id bigint REFERENCES runs;
ALTER TABLE fills ADD COLUMN run_id bigint REFERENCES runs;
ALTER TABLE funding_payments ADD COLUMN run_id bigint REFERENCES runs;
ALTER TABLE reconciliations ADD COLUMN run_id bigint REFERENCES runs;

-- ---- orders only move forward -------------------------------------------------------------------
-- pending (recorded) → unknown (sent, answer lost) → new → partially_filled →
-- one final state (filled, canceled, expired, rejected). The same state again
-- is no move; a larger executed quantity within partially_filled is forward.

CREATE FUNCTION vibex_order_rank(status text) RETURNS integer LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE status WHEN 'pending' THEN 0 WHEN 'unknown' THEN 1 WHEN 'new' THEN 2 WHEN 'partially_filled' THEN 3
                     WHEN 'filled' THEN 4 WHEN 'canceled' THEN 4 WHEN 'expired' THEN 4 WHEN 'rejected' THEN 4 END
$$;

-- Whether an order may move from (old_status, old_qty) to (new_status, new_qty).
CREATE FUNCTION vibex_order_forward(old_status text, old_qty numeric, new_status text, new_qty numeric)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
  SELECT (new_qty IS NULL OR new_qty >= old_qty)
     AND (new_status IS NULL OR new_status = old_status
          OR (vibex_order_rank(new_status) > vibex_order_rank(old_status) AND vibex_order_rank(old_status) < 4))
$$;

-- The last line of defence: whatever writes to orders, a move backwards fails.
CREATE FUNCTION vibex_order_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NOT vibex_order_forward(OLD.status, OLD.executed_quantity, NEW.status, NEW.executed_quantity) THEN
    RAISE EXCEPTION 'order % would move backwards: % (executed %) to % (executed %)', OLD.client_order_id,
      OLD.status, OLD.executed_quantity, NEW.status, NEW.executed_quantity
      USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER orders_forward BEFORE UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION vibex_order_guard();

-- Existing duplicate events (a state written twice) are kept once.
DELETE FROM order_events e USING order_events f
  WHERE e.order_id = f.order_id AND e.status = f.status AND e.executed_quantity = f.executed_quantity
    AND e.order_event_id > f.order_event_id;
CREATE UNIQUE INDEX order_events_state ON order_events (order_id, status, executed_quantity);

CREATE OR REPLACE FUNCTION vibex_order_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' OR NEW.status IS DISTINCT FROM OLD.status
     OR NEW.executed_quantity IS DISTINCT FROM OLD.executed_quantity THEN
    INSERT INTO order_events (order_id, status, executed_quantity, average_price, venue_time)
    VALUES (NEW.order_id, NEW.status, NEW.executed_quantity, NEW.average_price, NEW.venue_updated_at)
    ON CONFLICT (order_id, status, executed_quantity) DO NOTHING;
  END IF;
  RETURN NEW;
END $$;

-- ---- positions follow the venue's events forward ------------------------------------------------
-- A position row remembers the venue time of the last event applied to it;
-- an older event (a resumed replay running through its past, a late
-- delivery) changes nothing, and never reopens a position that was closed later.
ALTER TABLE positions ADD COLUMN venue_time timestamptz;
ALTER TABLE positions ADD COLUMN venue_seq bigint;          -- the event's number within its millisecond, when the venue gives one
CREATE INDEX positions_key_time ON positions (account_id, symbol, position_side, venue_time);
