//! Finding and redacting values Warrant issued in MCP messages.
//!
//! Exact substring match on every JSON string (object keys too) of a
//! message, after JSON decoding, so escapes do not hide a value. Encoded
//! forms (base64 blobs, URL-encoding) are not decoded.

use std::collections::BTreeSet;

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// What replaces an issued value in a result.
pub const REDACTED: &str = "[REDACTED by Warrant]";

/// Values shorter than this are not scanned for: a short value would match
/// ordinary text everywhere and revoke on noise. Credentials Warrant mints
/// are far longer.
pub const MIN_SCANNED_LEN: usize = 8;

/// The issued values to look for, longest first so that a value containing
/// another one is replaced whole.
pub(crate) struct Needles(Vec<(String, SecretString)>);

impl Needles {
    pub(crate) fn new(values: Vec<(String, SecretString)>) -> Self {
        let mut values: Vec<_> = values
            .into_iter()
            .filter(|(_, v)| v.expose_secret().len() >= MIN_SCANNED_LEN)
            .collect();
        values.sort_by_key(|(_, v)| std::cmp::Reverse(v.expose_secret().len()));
        Self(values)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn scan_str(&self, s: &str, found: &mut BTreeSet<String>) {
        for (id, v) in &self.0 {
            if s.contains(v.expose_secret()) {
                found.insert(id.clone());
            }
        }
    }

    fn redact_str(&self, s: &mut String, found: &mut BTreeSet<String>) {
        for (id, v) in &self.0 {
            let v = v.expose_secret();
            if s.contains(v) {
                found.insert(id.clone());
                *s = s.replace(v, REDACTED);
            }
        }
    }

    /// Ids of the values that occur anywhere in `value`.
    pub(crate) fn find(&self, value: &Value) -> BTreeSet<String> {
        let mut found = BTreeSet::new();
        if !self.is_empty() {
            self.find_in(value, &mut found);
        }
        found
    }

    fn find_in(&self, value: &Value, found: &mut BTreeSet<String>) {
        match value {
            Value::String(s) => self.scan_str(s, found),
            Value::Array(items) => items.iter().for_each(|v| self.find_in(v, found)),
            Value::Object(map) => {
                for (k, v) in map {
                    self.scan_str(k, found);
                    self.find_in(v, found);
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }

    /// Replace every occurrence in `value`; the ids found.
    pub(crate) fn redact(&self, value: &mut Value) -> BTreeSet<String> {
        let mut found = BTreeSet::new();
        if !self.is_empty() {
            self.redact_in(value, &mut found);
        }
        found
    }

    fn redact_in(&self, value: &mut Value, found: &mut BTreeSet<String>) {
        match value {
            Value::String(s) => self.redact_str(s, found),
            Value::Array(items) => items.iter_mut().for_each(|v| self.redact_in(v, found)),
            Value::Object(map) => {
                let mut keys = BTreeSet::new();
                for k in map.keys() {
                    self.scan_str(k, &mut keys);
                }
                if keys.is_empty() {
                    map.values_mut().for_each(|v| self.redact_in(v, found));
                } else {
                    let old = std::mem::take(map);
                    for (mut k, mut v) in old {
                        self.redact_str(&mut k, found);
                        self.redact_in(&mut v, found);
                        map.insert(k, v);
                    }
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }

    /// Redact a typed MCP message through its JSON form.
    pub(crate) fn redact_typed<T: Serialize + DeserializeOwned>(
        &self,
        message: T,
    ) -> Result<(T, BTreeSet<String>), serde_json::Error> {
        if self.is_empty() {
            return Ok((message, BTreeSet::new()));
        }
        let mut value = serde_json::to_value(&message)?;
        let found = self.redact(&mut value);
        if found.is_empty() {
            return Ok((message, found));
        }
        Ok((serde_json::from_value(value)?, found))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn needles(pairs: &[(&str, &str)]) -> Needles {
        Needles::new(
            pairs
                .iter()
                .map(|(id, v)| ((*id).to_owned(), SecretString::from((*v).to_owned())))
                .collect(),
        )
    }

    #[test]
    fn redacts_every_string_and_reports_each_id_once() {
        let n = needles(&[
            ("lease-1", "s3cr3t-token-value"),
            ("secret-2", "hunter2hunter2"),
        ]);
        let mut v = json!({
            "content": [{"type": "text", "text": "got s3cr3t-token-value and s3cr3t-token-value"}],
            "structuredContent": {"s3cr3t-token-value": ["hunter2hunter2"]},
            "isError": false
        });
        let found = n.redact(&mut v);
        assert_eq!(
            found.into_iter().collect::<Vec<_>>(),
            ["lease-1", "secret-2"]
        );
        let text = v.to_string();
        assert!(!text.contains("s3cr3t"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert_eq!(
            v["content"][0]["text"],
            format!("got {REDACTED} and {REDACTED}")
        );
        assert_eq!(v["structuredContent"][REDACTED][0], REDACTED);
    }

    #[test]
    fn longest_value_wins_when_one_contains_another() {
        let n = needles(&[("short", "abcdefgh"), ("long", "abcdefgh-ijklmnop")]);
        let mut v = json!("x abcdefgh-ijklmnop y");
        let found = n.redact(&mut v);
        assert_eq!(v, json!(format!("x {REDACTED} y")));
        assert!(found.contains("long"));
    }

    #[test]
    fn short_values_are_not_scanned_and_clean_input_is_untouched() {
        let n = needles(&[("tiny", "abc")]);
        assert!(n.is_empty());
        let n = needles(&[("id", "0123456789")]);
        let mut v = json!({"a": ["nothing here", 1, null, true]});
        let before = v.clone();
        assert!(n.redact(&mut v).is_empty());
        assert_eq!(v, before);
        assert!(n.find(&json!({"path": "/tmp/0123456789/x"})).contains("id"));
        assert!(n.find(&json!({"0123456789": 1})).contains("id"));
    }

    #[test]
    fn escaped_json_does_not_hide_a_value() {
        let n = needles(&[("id", "quote\"d-secret")]);
        let v: Value = serde_json::from_str(r#"{"t": "x quote\"d-secret y"}"#).unwrap();
        assert!(n.find(&v).contains("id"));
    }
}
