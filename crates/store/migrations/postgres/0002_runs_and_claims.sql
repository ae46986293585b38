-- Issue 3: agent runs and the one-time task claims that start them.

-- A claim is shown once, when its task is created; only its SHA-256 is
-- kept. Redeeming sets `used_at` with `UPDATE ... WHERE used_at IS NULL`,
-- so a claim starts at most one run however many redeem it at once.
CREATE TABLE task_claims (
    claim_hash  BYTEA   NOT NULL PRIMARY KEY CHECK (octet_length(claim_hash) = 32),
    task_id     UUID    NOT NULL REFERENCES tasks (id),
    created_at  BIGINT  NOT NULL,
    expires_at  BIGINT  NOT NULL,
    used_at     BIGINT
);

CREATE INDEX task_claims_task ON task_claims (task_id);

-- One agent run: what a run token names in its `sub`. `jkt` is the RFC 7638
-- thumbprint of the run's DPoP key; `parent_run_id` and `depth` record a
-- delegation chain (token exchange).
CREATE TABLE runs (
    id            UUID    NOT NULL PRIMARY KEY,
    task_id       UUID    NOT NULL REFERENCES tasks (id),
    agent         TEXT    NOT NULL REFERENCES agents (name),
    jkt           TEXT    NOT NULL,
    parent_run_id UUID    REFERENCES runs (id),
    depth         BIGINT  NOT NULL DEFAULT 0 CHECK (depth >= 0),
    state         TEXT    NOT NULL CHECK (state IN ('live', 'revoked')),
    created_at    BIGINT  NOT NULL,
    expires_at    BIGINT  NOT NULL
);

CREATE INDEX runs_task ON runs (task_id, state);
