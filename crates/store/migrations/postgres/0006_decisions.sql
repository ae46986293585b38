-- Issue 4: what a run has done (for policies reading its history and
-- taint), and the approvals a decision asks for.

-- One row per fact about a run: `class:<risk class>` once it has been
-- allowed an action of that class, `tainted` once it has ingested
-- untrusted content. Facts are only ever added.
CREATE TABLE run_marks (
    run_id      UUID    NOT NULL REFERENCES runs (id),
    mark        TEXT    NOT NULL,
    at          BIGINT  NOT NULL,
    PRIMARY KEY (run_id, mark)
);

-- A request for a human approval, created by an `approval_required`
-- decision and bound to `request_hash` (SHA-256 over the canonical action,
-- resource and decision-relevant context). Issue 5 adds who approves.
CREATE TABLE approvals (
    id           UUID    NOT NULL PRIMARY KEY,
    task_id      UUID    NOT NULL REFERENCES tasks (id),
    run_id       UUID    NOT NULL REFERENCES runs (id),
    action       TEXT    NOT NULL,
    request      TEXT    NOT NULL,
    request_hash BYTEA   NOT NULL CHECK (octet_length(request_hash) = 32),
    quorum       BIGINT  NOT NULL DEFAULT 1 CHECK (quorum >= 1),
    policies     TEXT    NOT NULL DEFAULT '[]',
    reasons      TEXT    NOT NULL DEFAULT '[]',
    state        TEXT    NOT NULL CHECK (state IN ('pending', 'approved', 'denied', 'expired', 'revoked', 'consumed')),
    created_at   BIGINT  NOT NULL,
    expires_at   BIGINT  NOT NULL
);

CREATE INDEX approvals_run_request ON approvals (run_id, request_hash, state);
CREATE INDEX approvals_state ON approvals (state, expires_at);
