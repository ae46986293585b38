-- Issue 3: agent runs and the one-time task claims that start them.

-- A claim is shown once, when its task is created; only its SHA-256 is
-- kept. Redeeming sets `used_at` with `UPDATE ... WHERE used_at IS NULL`,
-- so a claim starts at most one run however many redeem it at once.
CREATE TABLE task_claims (
    claim_hash  BLOB    NOT NULL PRIMARY KEY CHECK (length(claim_hash) = 32),
    task_id     TEXT    NOT NULL REFERENCES tasks (id),
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER
) STRICT;

CREATE INDEX task_claims_task ON task_claims (task_id);

-- One agent run: what a run token names in its `sub`. `jkt` is the RFC 7638
-- thumbprint of the run's DPoP key; `parent_run_id` and `depth` record a
-- delegation chain (token exchange).
CREATE TABLE runs (
    id            TEXT    NOT NULL PRIMARY KEY,
    task_id       TEXT    NOT NULL REFERENCES tasks (id),
    agent         TEXT    NOT NULL REFERENCES agents (name),
    jkt           TEXT    NOT NULL,
    parent_run_id TEXT    REFERENCES runs (id),
    depth         INTEGER NOT NULL DEFAULT 0 CHECK (depth >= 0),
    state         TEXT    NOT NULL CHECK (state IN ('live', 'revoked')),
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL
) STRICT;

CREATE INDEX runs_task ON runs (task_id, state);
