//! Paths inside a snapshot: `/`-separated byte strings relative to the
//! workspace root, as users type them and as trees nest them.

/// Splits a user path (`a/b/`, `./a`) into its components.
pub fn components(path: &[u8]) -> Vec<&[u8]> {
    path.split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .collect()
}
