//! Ordered offset finalizer: records of one partition may finish out of order (concurrent work,
//! micro-batches), but an offset may only be stored once every earlier offset of that partition
//! is done. Otherwise a crash would skip the unfinished ones.

use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Default)]
pub struct Finalizer {
    partitions: HashMap<(String, i32), BTreeMap<i64, bool>>,
}

impl Finalizer {
    /// A record was taken for processing.
    pub fn begin(&mut self, topic: &str, partition: i32, offset: i64) {
        self.partitions
            .entry((topic.to_string(), partition))
            .or_default()
            .insert(offset, false);
    }

    /// A record is done. Returns the offset to store (the next one to consume) when the
    /// contiguous done prefix of the partition advanced.
    pub fn complete(&mut self, topic: &str, partition: i32, offset: i64) -> Option<i64> {
        let key = (topic.to_string(), partition);
        let pending = self.partitions.get_mut(&key)?;
        match pending.get_mut(&offset) {
            Some(done) => *done = true,
            None => return None, // partition revoked since: the new owner re-processes it
        }
        let mut next = None;
        while let Some((&first, &done)) = pending.iter().next() {
            if !done {
                break;
            }
            pending.remove(&first);
            next = Some(first + 1);
        }
        next
    }

    /// Forget a revoked partition; completions that arrive later are ignored.
    pub fn revoke(&mut self, topic: &str, partition: i32) {
        self.partitions.remove(&(topic.to_string(), partition));
    }

    pub fn pending(&self) -> usize {
        self.partitions.values().map(|p| p.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn stores_only_the_contiguous_prefix() {
        let mut f = Finalizer::default();
        for o in 10..14 {
            f.begin("t", 0, o);
        }
        assert_eq!(f.complete("t", 0, 12), None);
        assert_eq!(f.complete("t", 0, 10), Some(11));
        assert_eq!(f.complete("t", 0, 11), Some(13));
        assert_eq!(f.complete("t", 0, 13), Some(14));
        assert_eq!(f.pending(), 0);
    }

    #[test]
    fn revoked_partition_ignores_completions() {
        let mut f = Finalizer::default();
        f.begin("t", 1, 5);
        f.revoke("t", 1);
        assert_eq!(f.complete("t", 1, 5), None);
    }

    proptest! {
        #[test]
        fn stored_offset_never_passes_an_unfinished_record(order in Just((0i64..40).collect::<Vec<_>>()).prop_shuffle()) {
            let mut f = Finalizer::default();
            for o in 0..40 { f.begin("t", 0, o); }
            let mut done = std::collections::BTreeSet::new();
            let mut stored = 0;
            for o in order {
                done.insert(o);
                if let Some(s) = f.complete("t", 0, o) {
                    prop_assert!(s > stored);
                    stored = s;
                }
                // every offset below `stored` is done
                prop_assert!((0..stored).all(|x| done.contains(&x)));
            }
            prop_assert_eq!(stored, 40);
        }
    }
}
