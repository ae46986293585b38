-- Issue 6: leases (one issued downstream credential each) and the sealed
-- static secrets of `kv` engines.

-- A lease is recorded (`issuing`, with the handle naming what the engine
-- will create) BEFORE the engine creates anything, so a crash in between
-- still leaves a row the reaper revokes. States: issuing -> active ->
-- revoking -> revoked, or -> irrevocable when revocation keeps failing.
CREATE TABLE leases (
    id              UUID    NOT NULL PRIMARY KEY,
    engine          TEXT    NOT NULL,
    role            TEXT    NOT NULL,
    task_id         UUID    NOT NULL REFERENCES tasks (id),
    run_id          UUID    NOT NULL REFERENCES runs (id),
    handle          TEXT    NOT NULL,
    public          TEXT    NOT NULL DEFAULT '{}',
    state           TEXT    NOT NULL CHECK (state IN ('issuing', 'active', 'revoking', 'revoked', 'irrevocable')),
    issued_at       BIGINT  NOT NULL,
    expires_at      BIGINT  NOT NULL,
    revoke_reason   TEXT,
    attempts        BIGINT  NOT NULL DEFAULT 0,
    last_error      TEXT,
    next_attempt_at BIGINT,
    revoked_at      BIGINT
);

CREATE INDEX leases_due ON leases (state, expires_at);
CREATE INDEX leases_task ON leases (task_id);
CREATE INDEX leases_run ON leases (run_id);

-- A `kv` engine's static secret, sealed (XChaCha20-Poly1305 under the
-- master key `key_id`, bound to engine and name): never in clear here.
CREATE TABLE kv_secrets (
    engine      TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    key_id      TEXT    NOT NULL,
    nonce       BYTEA   NOT NULL,
    ciphertext  BYTEA   NOT NULL,
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL,
    PRIMARY KEY (engine, name)
);
