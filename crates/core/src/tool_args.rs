//! Tool arguments every enforcement point lifts into a decision's context
//! (the MCP gateway for `tools/call`, the agent hooks for MCP tools), so a
//! policy written for shells, files and the web reads a tool call alike,
//! whichever enforcement point asked.

use serde_json::Value;

/// Context field and the argument names it is taken from, first match wins.
const LIFTED: [(&str, &[&str]); 3] = [
    ("path", &["path"]),
    ("url", &["url", "uri"]),
    ("command", &["command", "cmd"]),
];

/// The `(context field, value)` pairs to lift from `args`: a string `path`,
/// `url` (else `uri`) and `command` (else `cmd`). Values are as given; the
/// caller normalises paths its own way.
pub fn lifted(args: &Value) -> Vec<(&'static str, &str)> {
    LIFTED
        .iter()
        .filter_map(|(field, names)| {
            names
                .iter()
                .find_map(|n| args.get(n).and_then(Value::as_str))
                .map(|v| (*field, v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn string_arguments_are_lifted_first_name_first() {
        assert_eq!(
            lifted(&json!({"path": "/a", "uri": "u", "url": "v", "cmd": "ls", "x": 1})),
            [("path", "/a"), ("url", "v"), ("command", "ls")]
        );
        assert!(lifted(&json!({"path": 7, "command": ["ls"]})).is_empty());
        assert!(lifted(&json!("not an object")).is_empty());
    }
}
