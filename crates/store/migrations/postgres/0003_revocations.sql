-- Issue 3: the revocation stream. One row per revoked run and one per
-- ended task, written in the transaction that revokes or ends it, so an
-- enforcement point that follows `id` sees every revocation exactly once.
--
-- INVARIANT: rows are inserted after the transaction's audit append,
-- which serializes writers (the audit head), so ids become visible in
-- increasing order and a reader resuming after an id misses nothing.
CREATE TABLE revocations (
    id          BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind        TEXT    NOT NULL CHECK (kind IN ('run', 'task')),
    subject_id  UUID    NOT NULL,
    task_id     UUID    NOT NULL REFERENCES tasks (id),
    reason      TEXT    NOT NULL,
    revoked_at  BIGINT  NOT NULL
);
