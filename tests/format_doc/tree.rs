//! Items 30 and "Object encoding": a tree reader written from the
//! document's postcard description and its list of refusals accepts
//! exactly what `Tree::decode` accepts; every bullet of that list has a
//! case here; zstd frames must declare their content size.

use super::*;

/// Which of the document's refusals ("Readers refuse a tree object
/// that:") a tree breaks: the bullets, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rule {
    Version,
    TooLarge,
    Undecodable,
    Trailing,
    BadName,
    Unsorted,
    BadSymlink,
    BadSize,
    NotCanonical,
}

const MIB16: u64 = 16 << 20;

struct R<'a> {
    d: &'a [u8],
    at: usize,
}

impl R<'_> {
    fn byte(&mut self) -> Result<u8, Rule> {
        let b = *self.d.get(self.at).ok_or(Rule::Undecodable)?;
        self.at += 1;
        Ok(b)
    }

    /// "unsigned LEB128 varints (7 bits per byte, low group first, high
    /// bit = more follows; at most 3/5/10 bytes, and the value must fit
    /// the type)".
    fn varint(&mut self, max_bytes: u32, bits: u32) -> Result<u64, Rule> {
        let mut v: u64 = 0;
        for i in 0..max_bytes {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                let fits = (bits == 64 && (i < 9 || b <= 1)) || (bits < 64 && v >> bits == 0);
                return if fits { Ok(v) } else { Err(Rule::Undecodable) };
            }
        }
        Err(Rule::Undecodable)
    }

    fn u32(&mut self) -> Result<u64, Rule> {
        self.varint(5, 32)
    }

    fn u64(&mut self) -> Result<u64, Rule> {
        self.varint(10, 64)
    }

    /// zigzag: `(n << 1) ^ (n >> 63)`, inverted.
    fn i64(&mut self) -> Result<i64, Rule> {
        let u = self.u64()?;
        Ok((u >> 1) as i64 ^ -((u & 1) as i64))
    }

    fn take(&mut self, n: u64) -> Result<&[u8], Rule> {
        let n = usize::try_from(n).map_err(|_| Rule::Undecodable)?;
        let end = self.at.checked_add(n).ok_or(Rule::Undecodable)?;
        let s = self.d.get(self.at..end).ok_or(Rule::Undecodable)?;
        self.at = end;
        Ok(s)
    }

    /// "`bytes` ... a varint length then that many bytes" (a length is a
    /// u64 varint).
    fn bytes(&mut self) -> Result<Vec<u8>, Rule> {
        let n = self.u64()?;
        Ok(self.take(n)?.to_vec())
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// The document's encoding of entries (the canonical one).
fn doc_encode(entries: &[Entry]) -> Vec<u8> {
    let mut out = vec![1];
    put_varint(&mut out, entries.len() as u64);
    for e in entries {
        put_bytes(&mut out, &e.name);
        put_varint(&mut out, u64::from(e.mode));
        put_varint(&mut out, ((e.mtime_ns << 1) ^ (e.mtime_ns >> 63)) as u64);
        put_varint(&mut out, e.size);
        match &e.content {
            Content::File(ids) => {
                put_varint(&mut out, 0);
                put_varint(&mut out, ids.len() as u64);
                for id in ids {
                    out.extend_from_slice(&id.0);
                }
            }
            Content::Dir(id) => {
                put_varint(&mut out, 1);
                out.extend_from_slice(&id.0);
            }
            Content::Symlink(t) => {
                put_varint(&mut out, 2);
                put_bytes(&mut out, t);
            }
        }
    }
    out
}

fn reserved(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b".git") || name.starts_with(b".moat-tmp-")
}

/// A tree read as the document says, or the first rule it breaks.
fn doc_decode(data: &[u8]) -> Result<Vec<Entry>, Rule> {
    if data.len() > 64 << 20 {
        return Err(Rule::TooLarge);
    }
    if data.first() != Some(&1) {
        return Err(Rule::Version);
    }
    let mut r = R { d: data, at: 1 };
    let n = r.u64()?;
    let mut entries = Vec::new();
    for _ in 0..n {
        let name = r.bytes()?;
        let mode = r.u32()? as u32;
        let mtime_ns = r.i64()?;
        let size = r.u64()?;
        let content = match r.u32()? {
            0 => {
                let k = r.u64()?;
                let raw = r.take(k.checked_mul(32).ok_or(Rule::Undecodable)?)?;
                Content::File(raw.chunks(32).map(|c| ObjectId(c.try_into().unwrap())).collect())
            }
            1 => Content::Dir(ObjectId(r.take(32)?.try_into().unwrap())),
            2 => Content::Symlink(r.bytes()?),
            _ => return Err(Rule::Undecodable),
        };
        entries.push(Entry {
            name,
            mode,
            mtime_ns,
            size,
            content,
        });
    }
    if r.at != data.len() {
        return Err(Rule::Trailing);
    }
    if entries.len() > 1 << 20 {
        return Err(Rule::TooLarge);
    }
    for (i, e) in entries.iter().enumerate() {
        let n = &e.name;
        if n.is_empty() || n == b"." || n == b".." || n.contains(&b'/') || n.contains(&0) || reserved(n) {
            return Err(Rule::BadName);
        }
        let size_ok = match &e.content {
            Content::File(c) => (c.len() as u64..=c.len() as u64 * MIB16).contains(&e.size),
            Content::Symlink(t) => e.size == t.len() as u64,
            Content::Dir(_) => e.size == 0,
        };
        if !size_ok {
            return Err(Rule::BadSize);
        }
        if i > 0 && entries[i - 1].name >= e.name {
            return Err(Rule::Unsorted);
        }
        if let Content::Symlink(t) = &e.content
            && (t.is_empty() || t.contains(&0))
        {
            return Err(Rule::BadSymlink);
        }
    }
    if doc_encode(&entries) != data {
        return Err(Rule::NotCanonical);
    }
    Ok(entries)
}

fn entry(name: &[u8], content: Content) -> Entry {
    let size = match &content {
        Content::File(c) => c.len() as u64 * 3,
        Content::Symlink(t) => t.len() as u64,
        Content::Dir(_) => 0,
    };
    Entry {
        name: name.to_vec(),
        mode: 0o644,
        mtime_ns: -5,
        size,
        content,
    }
}

fn good() -> Vec<Entry> {
    vec![
        entry(
            b"a",
            Content::File(vec![ObjectId::hash(b"1"), ObjectId::hash(b"2")]),
        ),
        entry(b"d", Content::Dir(ObjectId::hash(b"t"))),
        entry(b"l\xff", Content::Symlink(b"a".to_vec())),
    ]
}

fn enc(entries: Vec<Entry>) -> Vec<u8> {
    Tree { entries }.encode()
}

/// One example of each bullet of the document's list, in its order.
fn examples() -> Vec<(Rule, Vec<u8>)> {
    let with = |f: &dyn Fn(&mut Vec<Entry>)| {
        let mut e = good();
        f(&mut e);
        enc(e)
    };
    // The entry count 3 with a redundant zero group (03 -> 83 00): postcard
    // reads it as 3, the document refuses it.
    let mut overlong = enc(good());
    assert_eq!(overlong[1], 3);
    overlong.splice(1..2, [0x83, 0x00]);
    let mut trailing = enc(good());
    trailing.push(0);
    let mut unknown_variant = enc(vec![entry(b"d", Content::Dir(ObjectId::hash(b"t")))]);
    let at = unknown_variant.len() - 33;
    unknown_variant[at] = 3;
    let mut u32_overflow = enc(vec![entry(b"d", Content::Dir(ObjectId::hash(b"t")))]);
    // mode 0o644 = a4 03 -> five bytes whose value exceeds u32.
    let m = u32_overflow.iter().position(|&b| b == 0xa4).unwrap();
    u32_overflow.splice(m..m + 2, [0xa4, 0x83, 0x80, 0x80, 0x7f]);
    vec![
        (Rule::Version, Vec::new()),
        (Rule::Version, [&[2u8][..], &enc(good())[1..]].concat()),
        (Rule::TooLarge, vec![1; (64 << 20) + 1]),
        (
            Rule::TooLarge,
            enc(vec![entry(b"x", Content::File(Vec::new())); (1 << 20) + 1]),
        ),
        (Rule::Undecodable, enc(good())[..20].to_vec()),
        (Rule::Undecodable, unknown_variant),
        (Rule::Undecodable, u32_overflow),
        (Rule::Trailing, trailing),
        (Rule::BadName, with(&|e| e[0].name = b"".to_vec())),
        (Rule::BadName, with(&|e| e[0].name = b"..".to_vec())),
        (Rule::BadName, with(&|e| e[0].name = b"a/b".to_vec())),
        (Rule::BadName, with(&|e| e[0].name = b"a\0".to_vec())),
        (Rule::BadName, with(&|e| e[0].name = b".Git".to_vec())),
        (Rule::BadName, with(&|e| e[0].name = b".moat-tmp-x".to_vec())),
        (Rule::Unsorted, with(&|e| e.swap(0, 1))),
        (Rule::Unsorted, with(&|e| e[1].name = b"a".to_vec())),
        (
            Rule::BadSymlink,
            with(&|e| {
                e[2].content = Content::Symlink(b"a\0".to_vec());
                e[2].size = 2;
            }),
        ),
        (
            Rule::BadSymlink,
            with(&|e| {
                e[2].content = Content::Symlink(Vec::new());
                e[2].size = 0;
            }),
        ),
        (Rule::BadSize, with(&|e| e[0].size = 1)),
        (Rule::BadSize, with(&|e| e[0].size = 2 * MIB16 + 1)),
        (Rule::BadSize, with(&|e| e[1].size = 1)),
        (Rule::BadSize, with(&|e| e[2].size = 2)),
        (Rule::NotCanonical, overlong),
    ]
}

/// The bullets of "Readers refuse a tree object that:" in the document.
fn doc_bullets() -> Vec<String> {
    let start = DOC
        .find("Readers refuse a tree object that:")
        .expect("the list is in the document");
    let mut out: Vec<String> = Vec::new();
    for l in DOC[start..].lines().skip(2) {
        match (l.strip_prefix("- "), l.strip_prefix("  "), out.last_mut()) {
            (Some(b), _, _) => out.push(b.to_string()),
            (None, Some(more), Some(last)) => *last = format!("{last} {more}"),
            _ => break,
        }
    }
    out
}

#[test]
fn every_refusal_the_document_lists_is_the_decoders_and_has_a_case() {
    let bullets = doc_bullets();
    let rules = [
        (Rule::Version, "is empty, or whose first byte is not `1`"),
        (
            Rule::TooLarge,
            "is larger than 64 MiB, or holds more than 1,048,576 entries",
        ),
        (Rule::Undecodable, "does not decode as postcard"),
        (Rule::Trailing, "has bytes left after the entries"),
        (Rule::BadName, "has an entry whose name is empty"),
        (Rule::Unsorted, "has names not strictly increasing"),
        (
            Rule::BadSymlink,
            "has a symlink whose target is empty or contains NUL",
        ),
        (Rule::BadSize, "has an entry whose size cannot be real"),
        (Rule::NotCanonical, "is not the canonical encoding"),
    ];
    assert_eq!(
        bullets.len(),
        rules.len(),
        "the document's list changed: {bullets:#?}"
    );
    for ((_, phrase), bullet) in rules.iter().zip(&bullets) {
        assert!(bullet.contains(phrase), "{bullet:?} is not {phrase:?}");
    }
    assert!(bullets[8].contains("over-long varints"), "{}", bullets[8]);
    let ex = examples();
    for (rule, _) in rules {
        assert!(ex.iter().any(|(r, _)| *r == rule), "no case for {rule:?}");
    }
    for (rule, bytes) in ex {
        assert_eq!(doc_decode(&bytes).err(), Some(rule), "{rule:?}");
        assert!(
            Tree::decode(&bytes).is_err(),
            "moat accepts a tree breaking {rule:?}"
        );
    }
    let ok = enc(good());
    assert_eq!(Tree::decode(&ok).unwrap().entries, doc_decode(&ok).unwrap());
}

/// Entries of every kind with names and sizes near the rules' edges.
fn arb_entries() -> impl Strategy<Value = Vec<Entry>> {
    let name = prop::sample::select(vec![
        &b"a"[..],
        b"b",
        b"",
        b".",
        b"..",
        b"x/y",
        b"n\0",
        b".git",
        b".GIT",
        b".gitignore",
        b".moat-tmp-1",
        b".moat-tmp",
        b"\xff",
    ]);
    let content = prop_oneof![
        (0usize..3).prop_map(|n| Content::File((0..n).map(|i| ObjectId::hash(&[i as u8])).collect())),
        Just(Content::Dir(ObjectId::hash(b"t"))),
        prop::sample::select(vec![&b""[..], b"t", b"a\0b", b"../x"])
            .prop_map(|t| Content::Symlink(t.to_vec())),
    ];
    let size = prop_oneof![
        0u64..4,
        Just(MIB16),
        Just(MIB16 + 1),
        Just(2 * MIB16),
        any::<u64>()
    ];
    let e =
        (name, any::<u32>(), any::<i64>(), size, content).prop_map(|(n, mode, mtime_ns, size, content)| {
            Entry {
                name: n.to_vec(),
                mode,
                mtime_ns,
                size,
                content,
            }
        });
    prop::collection::vec(e, 0..4)
}

/// `base` with a few bytes changed, inserted or removed.
fn mutate(base: Vec<u8>, edits: Vec<(u8, usize, u8)>) -> Vec<u8> {
    let mut d = base;
    for (op, at, b) in edits {
        let i = if d.is_empty() { 0 } else { at % d.len() };
        match op {
            0 if !d.is_empty() => d[i] ^= b | 1,
            1 => d.insert(i, b),
            _ if !d.is_empty() => {
                d.remove(i);
            }
            _ => {}
        }
    }
    d
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The document's reader and moat's accept the same trees, and read
    /// the same entries from them.
    #[test]
    fn the_documents_tree_reader_agrees_with_moats(
        entries in arb_entries(),
        sort in any::<bool>(),
        edits in prop::collection::vec((0u8..3, any::<usize>(), any::<u8>()), 0..3),
    ) {
        let mut t = Tree { entries };
        if sort {
            t.sort();
        }
        let data = mutate(t.encode(), edits);
        let ours = Tree::decode(&data);
        let doc = doc_decode(&data);
        prop_assert_eq!(ours.is_ok(), doc.is_ok(), "moat {:?}, document {:?}", ours.err(), doc.err());
        if let (Ok(t), Ok(d)) = (ours, doc) {
            prop_assert_eq!(t.entries, d);
        }
    }
}

/// "Object encoding": a zstd frame must declare its content size, and
/// exactly `raw_len`; one without it is refused before decompressing.
/// (`tests/hostile_store.rs` covers frames claiming more than the limits.)
#[test]
fn zstd_frames_must_declare_their_content_size() {
    let raw = b"fn main() { println!(\"hello\"); }\n".repeat(50);
    let id = ObjectId::hash(&raw);
    let mut c = zstd::bulk::Compressor::new(3).unwrap();
    c.set_parameter(zstd::zstd_safe::CParameter::ContentSizeFlag(false))
        .unwrap();
    let undeclared = c.compress(&raw).unwrap();
    assert_eq!(
        zstd::bulk::decompress(&undeclared, raw.len()).unwrap(),
        raw,
        "a valid frame"
    );
    let err = compress::decode(&id, Compression::Zstd, raw.len() as u32, &undeclared).unwrap_err();
    assert!(err.contains("does not declare its size"), "{err}");
    let declared = zstd::bulk::compress(&raw, 3).unwrap();
    assert_eq!(
        compress::decode(&id, Compression::Zstd, raw.len() as u32, &declared).unwrap(),
        raw
    );
    let err = compress::decode(&id, Compression::Zstd, raw.len() as u32 - 1, &declared).unwrap_err();
    assert!(err.contains("declares"), "{err}");
}
