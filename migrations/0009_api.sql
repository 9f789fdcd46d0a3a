-- The control plane: API tokens per user (stored hashed), and the audit log
-- learns who made a change through the API.

CREATE TABLE api_tokens (
  api_token_id  bigserial PRIMARY KEY,
  name          text NOT NULL,                       -- who it is for
  scope         text NOT NULL CHECK (scope IN ('read', 'trade')),
  token_hash    text NOT NULL UNIQUE,                -- sha256 hex of the token; the token itself is shown once
  prefix        text NOT NULL,                       -- the first characters, to tell tokens apart
  created_by    text NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now(),
  expires_at    timestamptz,
  last_used_at  timestamptz,
  revoked_at    timestamptz
);

-- API mutations: one row each (action 'API', table_name the route), with the actor.
ALTER TABLE audit_log DROP CONSTRAINT IF EXISTS audit_log_action_check;
ALTER TABLE audit_log ADD CONSTRAINT audit_log_action_check CHECK (action IN ('INSERT', 'UPDATE', 'DELETE', 'API'));
ALTER TABLE audit_log ADD COLUMN actor text;
CREATE INDEX audit_log_actor ON audit_log (actor, audit_log_id) WHERE actor IS NOT NULL;

-- A user's diary entries can be edited: the edit keeps who and when.
ALTER TABLE diary_entries ADD COLUMN edited_by text;
