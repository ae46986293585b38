//! The in-toto Statement v1 and Warrant's approval predicate.
//!
//! ```json
//! {"_type":"https://in-toto.io/Statement/v1",
//!  "subject":[{"name":"acme/api","digest":{"gitCommit":"<40 hex>"}}],
//!  "predicateType":"https://warrant.dev/attestation/approval/v1",
//!  "predicate":{"approval_id":"...","action":"deploy", ...}}
//! ```

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{AttestError, shown};

/// The in-toto Statement layer, version 1.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// Warrant's approval predicate, version 1.
pub const PREDICATE_TYPE: &str = "https://warrant.dev/attestation/approval/v1";

/// One subject of a statement: an in-toto v1 `ResourceDescriptor` with a
/// name and a digest set (`{"gitCommit": "<hex>"}`, `{"sha256": "<hex>"}`).
/// Other descriptor fields are ignored when reading.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceDescriptor {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub digest: BTreeMap<String, String>,
}

/// What was approved, by whom, when, for which task and run.
///
/// Times are RFC 3339 strings. Unknown fields are ignored when reading, so
/// later versions of the same predicate type may add fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalPredicate {
    pub approval_id: String,
    /// The action approved (`deploy`, `merge`, ...).
    pub action: String,
    pub resource: Resource,
    /// The lowercase hex SHA-256 the approval is bound to: action, resource
    /// and the decision-relevant context.
    pub request_hash: String,
    /// The decision-relevant context the request hash covers (commit,
    /// digest, environment, ...), when there is any.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub context: Map<String, Value>,
    /// The task's id.
    pub task: String,
    /// The run (agent session) that asked, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// The agent's name.
    pub agent: String,
    /// The user who delegated the task to the agent.
    pub delegator: String,
    /// Everyone who approved, in order; at least one.
    pub approvers: Vec<Approver>,
    pub requested_at: Timestamp,
    pub approved_at: Timestamp,
    /// Until when the approval could be used.
    pub expires_at: Timestamp,
    /// The policies that asked for the approval.
    #[serde(default)]
    pub policies: Vec<String>,
    /// How many distinct approvers were needed.
    pub quorum: u32,
}

/// The resource an action is on: `{"type": "environment", "id": "prod"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approver {
    pub name: String,
    pub reason: String,
    pub at: Timestamp,
}

/// An in-toto Statement v1 with Warrant's approval predicate. `_type` and
/// `predicateType` are fixed ([`STATEMENT_TYPE`], [`PREDICATE_TYPE`]) and
/// written on serialization.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    pub subject: Vec<ResourceDescriptor>,
    pub predicate: ApprovalPredicate,
}

#[derive(Serialize)]
struct WireOut<'a> {
    #[serde(rename = "_type")]
    statement_type: &'static str,
    subject: &'a [ResourceDescriptor],
    #[serde(rename = "predicateType")]
    predicate_type: &'static str,
    predicate: &'a ApprovalPredicate,
}

/// The two type fields, read before anything else so that a statement of
/// another kind is refused as such rather than as a bad predicate.
#[derive(Deserialize)]
struct WireTypes {
    #[serde(rename = "_type")]
    statement_type: String,
    #[serde(rename = "predicateType")]
    predicate_type: String,
}

#[derive(Deserialize)]
struct WireSubject {
    subject: Vec<ResourceDescriptor>,
}

#[derive(Deserialize)]
struct WirePredicate {
    predicate: ApprovalPredicate,
}

impl Statement {
    /// A statement that `predicate`'s approval was for `subject`.
    pub fn approval(subject: Vec<ResourceDescriptor>, predicate: ApprovalPredicate) -> Self {
        Self { subject, predicate }
    }

    /// The JSON that gets signed.
    pub(crate) fn to_payload(&self) -> Result<Vec<u8>, AttestError> {
        self.check()?;
        serde_json::to_vec(self)
            .map_err(|e| AttestError::Internal(format!("cannot serialize the statement: {e}")))
    }

    /// Reads a signed payload: the statement and predicate types first,
    /// then the subjects, then the predicate.
    pub(crate) fn from_payload(payload: &[u8]) -> Result<Self, AttestError> {
        let not_statement = |e: serde_json::Error| AttestError::Statement(e.to_string());
        let value: Value = serde_json::from_slice(payload).map_err(not_statement)?;
        if !value.is_object() {
            return Err(AttestError::Statement("not a JSON object".into()));
        }
        let types = WireTypes::deserialize(&value).map_err(not_statement)?;
        if types.statement_type != STATEMENT_TYPE {
            return Err(AttestError::StatementType {
                found: shown(&types.statement_type),
                expected: STATEMENT_TYPE,
            });
        }
        if types.predicate_type != PREDICATE_TYPE {
            return Err(AttestError::PredicateType {
                found: shown(&types.predicate_type),
                expected: PREDICATE_TYPE,
            });
        }
        let subject = WireSubject::deserialize(&value)
            .map_err(not_statement)?
            .subject;
        let predicate = WirePredicate::deserialize(&value)
            .map_err(|e| AttestError::Predicate(e.to_string()))?
            .predicate;
        let statement = Self { subject, predicate };
        statement.check()?;
        Ok(statement)
    }

    /// What both signing and verifying insist on: at least one subject,
    /// each with a digest, and at least one approver.
    fn check(&self) -> Result<(), AttestError> {
        if self.subject.is_empty() {
            return Err(AttestError::NoSubject);
        }
        if self.subject.iter().any(|s| s.digest.is_empty()) {
            return Err(AttestError::Statement(
                "a subject has an empty digest set".into(),
            ));
        }
        if self.predicate.approvers.is_empty() {
            return Err(AttestError::Predicate("it names no approver".into()));
        }
        Ok(())
    }
}

impl Serialize for Statement {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        WireOut {
            statement_type: STATEMENT_TYPE,
            subject: &self.subject,
            predicate_type: PREDICATE_TYPE,
            predicate: &self.predicate,
        }
        .serialize(serializer)
    }
}
