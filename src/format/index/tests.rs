//! The index codec: round trips, lookups in place in both versions,
//! hostile tables.

use super::layout::Fanout;
use super::*;
use crate::format::header::HEADER_LEN;
use crate::format::pack::PackEntry;

fn sample(packs: u8, per_pack: u32) -> IndexFile {
    let packs: Vec<FinishedPack> = (0..packs)
        .map(|p| FinishedPack {
            id: ObjectId::hash(&[p]),
            bytes: 0,
            entries: (0..per_pack)
                .map(|i| PackEntry {
                    id: ObjectId::hash(&[&[p][..], &i.to_le_bytes()].concat()),
                    kind: if i % 3 == 0 {
                        ObjectKind::Tree
                    } else {
                        ObjectKind::Chunk
                    },
                    compression: Compression::Zstd,
                    offset: 12 + i * 10,
                    stored_len: 10,
                    raw_len: 20 + i,
                })
                .collect(),
        })
        .collect();
    IndexFile::from_packs(&packs)
}

#[test]
fn round_trip_and_truncation() {
    let f = sample(3, 5);
    let (_, bytes) = f.encode();
    assert_eq!(bytes.len() as u64, encoded_len(3, 15));
    let big = sample(2, 3000);
    assert_eq!(big.encode().1.len() as u64, encoded_len(2, 6000));
    let p = Path::new("i");
    assert_eq!(IndexFile::decode(&bytes, p).unwrap(), f);
    for n in 0..bytes.len() {
        assert!(IndexFile::decode(&bytes[..n], p).is_err());
    }
    let mut flipped = bytes.clone();
    flipped[40] ^= 1;
    assert!(IndexFile::decode(&flipped, p).is_err());
}

#[test]
fn every_entry_is_found_in_place_in_both_versions() {
    for (packs, per) in [(1, 0), (1, 1), (2, 9), (3, 700), (5, 3000)] {
        let f = sample(packs, per);
        for bytes in [f.encode().1, encode_v1(&f)] {
            let l = Layout::parse(&bytes, Path::new("i"), &mut |_| {}).unwrap();
            assert_eq!(l.len(), f.entries.len());
            for (i, e) in f.entries.iter().enumerate() {
                assert_eq!(l.find(&bytes, &e.id), i..i + 1);
                assert_eq!(&l.entry(&bytes, i), e);
            }
            assert!(l.find(&bytes, &ObjectId::hash(b"absent")).is_empty());
            assert!(l.find(&bytes, &ObjectId([0; 32])).is_empty());
            assert!(l.find(&bytes, &ObjectId([0xff; 32])).is_empty());
        }
    }
}

#[test]
fn copies_are_adjacent_and_all_found() {
    let mut f = sample(2, 50);
    let dup = IndexEntry {
        pack: 1,
        offset: 999,
        ..f.entries[7].clone()
    };
    f.entries.insert(8, dup);
    let (_, bytes) = f.encode();
    let l = Layout::parse(&bytes, Path::new("i"), &mut |_| {}).unwrap();
    assert_eq!(l.find(&bytes, &f.entries[7].id), 7..9);
}

#[test]
fn hostile_tables_are_refused_with_a_valid_checksum() {
    let p = Path::new("i");
    let reseal = |mut b: Vec<u8>| {
        let n = b.len() - 32;
        let sum = ObjectId::hash(&b[..n]);
        b[n..].copy_from_slice(&sum.0);
        b
    };
    let f = sample(2, 40);
    let (_, good) = f.encode();
    let l = Layout::parse(&good, p, &mut |_| {}).unwrap();
    let ids = l.ids_off;
    // Unsorted ids.
    let mut b = good.clone();
    b[ids..ids + 32].copy_from_slice(&[0xff; 32]);
    let err = Layout::parse(&reseal(b), p, &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("sorted"), "{err}");
    // A fan-out entry off by one.
    let mut b = good.clone();
    if let Fanout::InFile(off) = l.fanout {
        b[off] ^= 1;
    }
    let err = Layout::parse(&reseal(b), p, &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("fan-out"), "{err}");
    // A pack number out of the table, a bad kind.
    let mut b = good.clone();
    b[l.rec_off + 2] = 9;
    let err = Layout::parse(&reseal(b), p, &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("names pack #9 of 2"), "{err}");
    let mut b = good.clone();
    b[l.rec_off] = 7;
    assert!(Layout::parse(&reseal(b), p, &mut |_| {}).is_err());
    // Fan-out bits beyond the limit.
    let mut b = good.clone();
    b[HEADER_LEN + 4 + 64 + 4] = 17;
    assert!(Layout::parse(&reseal(b), p, &mut |_| {}).is_err());
}

#[test]
fn parse_releases_every_byte_it_read() {
    let f = sample(2, 100);
    let (_, bytes) = f.encode();
    let mut seen = vec![false; bytes.len()];
    Layout::parse(&bytes, Path::new("i"), &mut |r| {
        seen[r].iter_mut().for_each(|s| *s = true)
    })
    .unwrap();
    let l = Layout::parse(&bytes, Path::new("i"), &mut |_| {}).unwrap();
    assert!(seen[l.ids_off..bytes.len() - 32].iter().all(|s| *s));
}
