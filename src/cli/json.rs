//! The one JSON convention for names (README, "JSON output"): a name
//! field `X` (a path, link target or workspace) is a string, exact when the
//! name's bytes are UTF-8; when they are not, `X` holds the lossy text
//! (U+FFFD for each bad sequence) and `X_bytes` the raw bytes as an array
//! of integers 0–255, so a script can always recover the exact name.

use serde_json::{Map, Value};

/// Sets name field `key` of object `v` to `bytes` by the convention.
pub fn put_name(v: &mut Value, key: &str, bytes: &[u8]) {
    if let Value::Object(m) = v {
        insert_name(m, key, bytes);
    }
}

fn insert_name(m: &mut Map<String, Value>, key: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(s) => {
            m.insert(key.into(), s.into());
            m.remove(&format!("{key}_bytes"));
        }
        Err(_) => {
            m.insert(key.into(), String::from_utf8_lossy(bytes).into_owned().into());
            m.insert(
                format!("{key}_bytes"),
                bytes.iter().map(|&b| Value::from(b)).collect(),
            );
        }
    }
}

/// Sets an optional name field: `null` when absent.
pub fn put_opt_name(v: &mut Value, key: &str, bytes: Option<&[u8]>) {
    match bytes {
        Some(b) => put_name(v, key, b),
        None => {
            if let Value::Object(m) = v {
                m.insert(key.into(), Value::Null);
            }
        }
    }
}

/// `{"path": …}` (with `path_bytes` when needed): one name as an object,
/// for lists of names.
pub fn path_object(bytes: &[u8]) -> Value {
    let mut v = Value::Object(Map::new());
    put_name(&mut v, "path", bytes);
    v
}

/// A path's bytes (Unix paths are bytes).
pub fn path_bytes(p: &std::path::Path) -> &[u8] {
    use std::os::unix::ffi::OsStrExt;
    p.as_os_str().as_bytes()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn names_are_exact_or_carry_their_bytes() {
        let mut v = json!({});
        super::put_name(&mut v, "path", b"a/b.txt");
        assert_eq!(v, json!({"path": "a/b.txt"}));
        super::put_name(&mut v, "path", b"caf\xe9");
        assert_eq!(
            v,
            json!({"path": "caf\u{fffd}", "path_bytes": [99, 97, 102, 233]})
        );
        super::put_name(&mut v, "path", "\u{1b}é".as_bytes());
        assert_eq!(v, json!({"path": "\u{1b}é"}));
        super::put_opt_name(&mut v, "from", None);
        assert_eq!(v["from"], json!(null));
    }
}
