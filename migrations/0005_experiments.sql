-- A/B experiments: each version of an experiment's definition, and which
-- variant every unit (an account, or one decision cycle) was given — so
-- assignment survives restarts and reloads, and a changed experiment starts
-- a new version instead of reshuffling the old one.

CREATE TABLE experiments (
  experiment_id bigserial PRIMARY KEY,
  name          text NOT NULL,
  version       integer NOT NULL,
  hash          text NOT NULL,                -- SHA-256 of the definition that decides assignment
  definition    jsonb NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now(),
  UNIQUE (name, version),
  UNIQUE (name, hash)
);

CREATE TABLE experiment_assignments (
  experiment_assignment_id bigserial PRIMARY KEY,
  experiment_id bigint NOT NULL REFERENCES experiments,
  unit          text NOT NULL,                -- account name, or account/cycle key
  variant       text NOT NULL,
  reward        numeric,                      -- the outcome Thompson sampling learns from (1/0), once known
  assigned_at   timestamptz NOT NULL DEFAULT now(),
  UNIQUE (experiment_id, unit)
);
CREATE INDEX experiment_assignments_variant ON experiment_assignments (experiment_id, variant);

-- what the reports read per cycle: the version, and the equity the cycle started from
ALTER TABLE decisions ADD COLUMN experiment_version integer;
ALTER TABLE decisions ADD COLUMN equity numeric;
CREATE INDEX decisions_experiment ON decisions (experiment, experiment_version, variant) WHERE experiment IS NOT NULL;
