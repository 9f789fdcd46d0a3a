-- 0002_journal: writes made while the database was away are journaled to a
-- local file and replayed; each carries an id, recorded here in the same
-- transaction as the write itself, so a replay after a crash (or a write
-- whose answer was lost) never applies anything twice.
CREATE TABLE journal_applied (
  journal_id  text PRIMARY KEY,
  applied_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX journal_applied_at ON journal_applied (applied_at);
