-- Issue 5: who approved or denied an approval request, and why. One vote
-- per approver and approval; an approval is `approved` once it has
-- `quorum` distinct approving votes, `denied` at the first denying one.
CREATE TABLE approval_votes (
    approval_id UUID    NOT NULL REFERENCES approvals (id),
    approver    TEXT    NOT NULL REFERENCES users (name),
    verdict     TEXT    NOT NULL CHECK (verdict IN ('approve', 'deny')),
    reason      TEXT    NOT NULL,
    at          BIGINT  NOT NULL,
    PRIMARY KEY (approval_id, approver)
);

-- When the approval left `pending` (approved, denied, expired, revoked)
-- and when it was consumed.
ALTER TABLE approvals ADD COLUMN decided_at BIGINT;
ALTER TABLE approvals ADD COLUMN consumed_at BIGINT;
