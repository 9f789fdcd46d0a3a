-- 0006_live_trading: one vocabulary for orders, fills and positions (DESIGN.md
-- "One vocabulary": executed_quantity, average_price; side buy/sell; status
-- new/partially_filled/filled/canceled/expired/rejected, plus vibex's own
-- pending (recorded, not yet answered) and unknown (sent, outcome not known
-- yet)), and what the live path needs to prove every order: what it is for,
-- the entry it protects, the risk gate's verdict, when it was sent and when
-- its outcome became known.
--
-- Existing rows are rewritten in place with the change triggers off: the
-- spelling changes, not the history.

ALTER TABLE orders DISABLE TRIGGER USER;
ALTER TABLE fills DISABLE TRIGGER USER;
ALTER TABLE positions DISABLE TRIGGER USER;

ALTER TABLE orders RENAME COLUMN executed_qty TO executed_quantity;
ALTER TABLE orders RENAME COLUMN avg_price TO average_price;
ALTER TABLE order_events RENAME COLUMN executed_qty TO executed_quantity;
ALTER TABLE order_events RENAME COLUMN avg_price TO average_price;

ALTER TABLE orders DROP CONSTRAINT orders_side_check;
ALTER TABLE orders DROP CONSTRAINT orders_position_side_check;
UPDATE orders SET side = lower(side), position_side = lower(position_side), status = lower(status), type = lower(type),
                  working_type = lower(working_type);
UPDATE orders SET status = 'rejected' WHERE status NOT IN ('pending', 'new', 'partially_filled', 'filled', 'canceled',
                                                            'expired', 'rejected', 'unknown');
ALTER TABLE orders ALTER COLUMN status SET DEFAULT 'pending';
ALTER TABLE orders ALTER COLUMN position_side SET DEFAULT 'both';
ALTER TABLE orders ADD CONSTRAINT orders_side_check CHECK (side IN ('buy', 'sell'));
ALTER TABLE orders ADD CONSTRAINT orders_position_side_check CHECK (position_side IN ('both', 'long', 'short'));
ALTER TABLE orders ADD CONSTRAINT orders_status_check CHECK (status IN ('pending', 'new', 'partially_filled', 'filled',
                                                                      'canceled', 'expired', 'rejected', 'unknown'));
UPDATE order_events SET status = lower(status);

ALTER TABLE orders ADD COLUMN kind text;                    -- entry, exit, stop, take_profit, manual
ALTER TABLE orders ADD COLUMN parent_client_order_id text;  -- the entry a stop or target protects
ALTER TABLE orders ADD COLUMN risk jsonb;                   -- the risk gate's verdict (rules passed, limits then)
ALTER TABLE orders ADD COLUMN sent_at timestamptz;          -- when the request left
ALTER TABLE orders ADD COLUMN resolved_at timestamptz;      -- when an unknown outcome became known
ALTER TABLE orders ADD COLUMN origin text NOT NULL DEFAULT 'agent' CHECK (origin IN ('agent', 'manual', 'recovery'));
CREATE INDEX orders_parent ON orders (parent_client_order_id) WHERE parent_client_order_id IS NOT NULL;
CREATE INDEX orders_unresolved ON orders (account_id) WHERE status IN ('pending', 'new', 'partially_filled', 'unknown');

ALTER TABLE fills DROP CONSTRAINT fills_side_check;
UPDATE fills SET side = lower(side);
ALTER TABLE fills ADD CONSTRAINT fills_side_check CHECK (side IN ('buy', 'sell'));

ALTER TABLE positions DROP CONSTRAINT positions_position_side_check;
UPDATE positions SET position_side = lower(position_side);
ALTER TABLE positions ALTER COLUMN position_side SET DEFAULT 'both';
ALTER TABLE positions ADD CONSTRAINT positions_position_side_check CHECK (position_side IN ('both', 'long', 'short'));

ALTER TABLE orders ENABLE TRIGGER USER;
ALTER TABLE fills ENABLE TRIGGER USER;
ALTER TABLE positions ENABLE TRIGGER USER;

CREATE OR REPLACE FUNCTION vibex_order_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' OR NEW.status IS DISTINCT FROM OLD.status
     OR NEW.executed_quantity IS DISTINCT FROM OLD.executed_quantity THEN
    INSERT INTO order_events (order_id, status, executed_quantity, average_price, venue_time)
    VALUES (NEW.order_id, NEW.status, NEW.executed_quantity, NEW.average_price, NEW.venue_updated_at);
  END IF;
  RETURN NEW;
END $$;

-- what reconciliation found and did, per account and run
CREATE TABLE reconciliations (
  reconciliation_id bigserial PRIMARY KEY,
  account_id    bigint NOT NULL REFERENCES accounts,
  reason        text NOT NULL,            -- start, reconnect, periodic
  orders_checked integer NOT NULL DEFAULT 0,
  orders_updated integer NOT NULL DEFAULT 0,
  fills_recorded integer NOT NULL DEFAULT 0,
  positions_corrected integer NOT NULL DEFAULT 0,
  foreign_orders integer NOT NULL DEFAULT 0,
  details       jsonb NOT NULL DEFAULT '{}',
  created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX reconciliations_account ON reconciliations (account_id, created_at);
