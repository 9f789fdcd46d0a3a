--- db.diary — the agent's and the user's notes, with tags.
local pg = require "vibex.db.pg"

local R = {}
R.__index = R

--- e: account (name, optional), author ("agent" | "user"), body, tags {…},
-- cycle_key and run_id (link the entry to the account's decision of that
-- cycle in that run). The agent's entry of a cycle is written once: again
-- (a resumed run, a replayed journal) changes nothing.
function R:add(e)
  return self.write([[
    INSERT INTO diary_entries (account_id, decision_id, author, body, tags, cycle_key, run_id)
    VALUES ((SELECT account_id FROM accounts WHERE name = $1 AND deleted_at IS NULL),
            (SELECT d.decision_id FROM decisions d JOIN accounts a USING (account_id)
              WHERE a.name = $1 AND a.deleted_at IS NULL AND d.cycle_key = $5 AND COALESCE(d.run_id, 0) = COALESCE($6, 0)),
            $2, $3, $4::text[], $5, $6)
    ON CONFLICT (account_id, (COALESCE(run_id, 0)), cycle_key) WHERE author = 'agent' AND cycle_key IS NOT NULL
    DO NOTHING]],
    e.account, e.author or "user", e.body, pg.text_array(e.tags), e.cycle_key, e.run_id)
end

--- Entries, newest first; o.tag filters; soft-deleted entries are hidden.
function R:list(account, o)
  o = o or {}
  return self.pool:query([[SELECT e.diary_entry_id, e.author, e.body, array_to_string(e.tags, ',') AS tags, e.created_at
    FROM diary_entries e LEFT JOIN accounts a USING (account_id)
    WHERE e.deleted_at IS NULL AND ($1::text IS NULL OR a.name = $1) AND ($2::text IS NULL OR $2 = ANY (e.tags))
    ORDER BY e.created_at DESC, e.diary_entry_id DESC LIMIT $3]], account, o.tag, o.limit or 50)
end

function R:delete(id)
  return self.write("UPDATE diary_entries SET deleted_at = now() WHERE diary_entry_id = $1 AND deleted_at IS NULL", id)
end

return R
