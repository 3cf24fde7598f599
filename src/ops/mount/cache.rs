//! A small LRU of decoded chunks for `moat mount`, bounded in bytes: the
//! kernel reads a file in pieces of at most 128 KiB, so without it every
//! piece would decompress (and verify) its chunk again.
//!
//! Invariant: the bytes held never exceed the budget after an insert
//! (a chunk larger than the whole budget is handed out but not kept).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::format::id::ObjectId;

pub struct ChunkCache {
    budget: usize,
    held: usize,
    tick: u64,
    map: HashMap<ObjectId, (Arc<Vec<u8>>, u64)>,
    /// Last use → chunk, oldest first.
    order: BTreeMap<u64, ObjectId>,
}

impl ChunkCache {
    pub fn new(budget: usize) -> Self {
        ChunkCache {
            budget,
            held: 0,
            tick: 0,
            map: HashMap::new(),
            order: BTreeMap::new(),
        }
    }

    pub fn get(&mut self, id: &ObjectId) -> Option<Arc<Vec<u8>>> {
        self.tick += 1;
        let tick = self.tick;
        let (data, used) = self.map.get_mut(id)?;
        self.order.remove(used);
        *used = tick;
        self.order.insert(tick, *id);
        Some(data.clone())
    }

    pub fn insert(&mut self, id: ObjectId, data: Arc<Vec<u8>>) {
        if data.len() > self.budget || self.map.contains_key(&id) {
            return;
        }
        while self.held + data.len() > self.budget {
            let Some((_, old)) = self.order.pop_first() else {
                break;
            };
            if let Some((d, _)) = self.map.remove(&old) {
                self.held -= d.len();
            }
        }
        self.tick += 1;
        self.held += data.len();
        self.order.insert(self.tick, id);
        self.map.insert(id, (data, self.tick));
    }

    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ObjectId {
        ObjectId::hash(&[n])
    }

    #[test]
    fn evicts_the_least_recently_used_within_its_budget() {
        let mut c = ChunkCache::new(10);
        c.insert(id(1), Arc::new(vec![0; 4]));
        c.insert(id(2), Arc::new(vec![0; 4]));
        assert!(c.get(&id(1)).is_some());
        c.insert(id(3), Arc::new(vec![0; 4]));
        assert!(c.get(&id(2)).is_none(), "2 was the least recently used");
        assert!(c.get(&id(1)).is_some() && c.get(&id(3)).is_some());
        assert_eq!(c.held(), 8);
        c.insert(id(4), Arc::new(vec![0; 11]));
        assert!(c.get(&id(4)).is_none(), "larger than the budget: not kept");
        assert_eq!(c.held(), 8);
    }
}
