//! The ownership watchdog: a consumer that holds no partitions while its group has records
//! nobody consumes rejoins its group, then recreates its consumer, and at last gives up so that
//! its supervisor restarts the process.
//!
//! Why a watchdog and not trust in the group protocol: published tansu 0.6.0 could settle a
//! group with empty assignments for good. A member that joins while the member it replaces
//! (SIGKILLed, still within its session) leads the group is answered as a follower of the dead
//! leader; when the dead member's session ended before the follower's SyncGroup, the
//! coordinator dropped the leader and then took the follower's SyncGroup — which carries no
//! assignments, followers never send any — as the leader's: the group was formed with nobody
//! owning anything, and the live member's heartbeats were answered "all is well" from then on.
//! After a broker pause longer than the session it kept an evicted member as the group's leader,
//! and every rejoin followed that leader. The embedded broker is now built with
//! `scripts/tansu/tansu-broker-group-leader.patch`, which fixes both (`services/common/tests/
//! stage.rs`, `tests/tests/reliability.rs`); Apache Kafka never forms a group without a leader's
//! assignment. The watchdog stays: it costs nothing while a consumer holds partitions, and on
//! any broker it turns "silent forever" into a bounded stall.
//!
//! The decision is pure ([`Watchdog::observe`], clock passed in); the broker probe that feeds it
//! ([`probe_unowned`]) runs only while the consumer holds nothing.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

/// A group's committed offsets, (topic, partition) → offset (-1: none).
pub type Committed = BTreeMap<(String, i32), i64>;

/// What the group looks like from a consumer that holds no partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unowned {
    /// Records past the group's committed offsets (from the start where nothing is committed),
    /// summed over every partition of the subscribed topics.
    pub pending: i64,
    /// The group's committed offsets (topic, partition) → offset; a change means someone is
    /// consuming (another replica owns the partitions).
    pub committed: Committed,
}

/// What the stage does about a stall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// Leave the group and join again (unsubscribe + subscribe): a fresh member, a fresh
    /// rebalance with this member as a candidate leader.
    Rejoin,
    /// Close the consumer and create a new one (new client, new member id).
    Recreate,
    /// Nothing in the process helped: end the stage with an error so the supervisor restarts it.
    GiveUp,
}

impl Recovery {
    pub fn label(self) -> &'static str {
        match self {
            Recovery::Rejoin => "rejoin",
            Recovery::Recreate => "recreate",
            Recovery::GiveUp => "give_up",
        }
    }
}

/// The escalation, one step per stall that the previous step did not end.
const LADDER: [Recovery; 4] = [
    Recovery::Rejoin,
    Recovery::Rejoin,
    Recovery::Recreate,
    Recovery::GiveUp,
];

/// Tracks how long a consumer has held nothing while its group has pending records and nobody
/// commits, and says when to act.
#[derive(Debug)]
pub struct Watchdog {
    stall: Duration,
    /// Since when the current stall is observed, with the committed offsets seen then.
    since: Option<(Instant, Committed)>,
    /// Recoveries tried since the consumer last held a partition.
    attempts: usize,
    /// Whether the consumer has held a partition since it started.
    held_once: bool,
}

impl Watchdog {
    /// `stall`: how long to wait before the first recovery; each further one waits twice as
    /// long as the one before (a rebalance the previous step started gets time to settle).
    pub fn new(stall: Duration) -> Self {
        Watchdog {
            stall,
            since: None,
            attempts: 0,
            held_once: false,
        }
    }

    /// The bound in force for the next recovery.
    pub fn bound(&self) -> Duration {
        self.stall * 2u32.saturating_pow(self.attempts.min(8) as u32)
    }

    pub fn attempts(&self) -> usize {
        self.attempts
    }

    /// Since when the consumer is stalled (holds nothing while records wait), if it is.
    pub fn stalled_since(&self) -> Option<Instant> {
        self.since.as_ref().map(|(t, _)| *t)
    }

    /// The consumer holds partitions: all is well, forget the escalation.
    pub fn assigned(&mut self) {
        self.since = None;
        self.attempts = 0;
        self.held_once = true;
    }

    /// The consumer holds nothing and the probe says `unowned` at `now`. Returns the recovery
    /// to run now, if any.
    pub fn observe(&mut self, now: Instant, unowned: &Unowned) -> Option<Recovery> {
        // Nothing to consume: holding nothing is fine (more replicas than partitions, or an idle
        // topic) — once the consumer has held something. A consumer that never held anything
        // may sit in a group formed with nothing assigned (the next record would wait a whole
        // stall bound): it rejoins, but never escalates, since an extra replica looks the same.
        let idle = unowned.pending <= 0;
        if idle && self.held_once {
            self.since = None;
            return None;
        }
        match &self.since {
            Some((_, committed)) if *committed == unowned.committed => {}
            // First sight of the stall, or someone committed since: another member consumes,
            // so this one holding nothing is the group's choice. Start counting again.
            _ => {
                self.since = Some((now, unowned.committed.clone()));
                return None;
            }
        }
        let (since, _) = self.since.as_ref()?;
        if now.duration_since(*since) < self.bound() {
            return None;
        }
        let step = if idle {
            Recovery::Rejoin
        } else {
            LADDER[self.attempts.min(LADDER.len() - 1)]
        };
        self.attempts += 1;
        self.since = Some((now, unowned.committed.clone()));
        Some(step)
    }
}

/// Asks the broker, for the consumer's group and subscribed `topics`, how many records lie past
/// the committed offsets. Blocking (several broker round trips of at most `timeout` each): call
/// it from a blocking thread.
pub fn probe_unowned<C: ConsumerContext>(
    consumer: &impl Consumer<C>,
    topics: &[String],
    timeout: Duration,
) -> Result<Unowned, KafkaError> {
    let mut tpl = TopicPartitionList::new();
    for t in topics {
        let md = consumer.fetch_metadata(Some(t), timeout)?;
        for topic in md.topics() {
            for p in topic.partitions() {
                tpl.add_partition(topic.name(), p.id());
            }
        }
    }
    let committed_tpl = consumer.committed_offsets(tpl.clone(), timeout)?;
    let mut committed = BTreeMap::new();
    let mut pending = 0i64;
    for e in tpl.elements() {
        let (low, high) = consumer.fetch_watermarks(e.topic(), e.partition(), timeout)?;
        let c = committed_tpl
            .find_partition(e.topic(), e.partition())
            .and_then(|c| match c.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            });
        let from = c.unwrap_or(low).max(low);
        pending += (high - from).max(0);
        committed.insert((e.topic().to_string(), e.partition()), c.unwrap_or(-1));
    }
    Ok(Unowned { pending, committed })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unowned(pending: i64, committed: i64) -> Unowned {
        Unowned {
            pending,
            committed: BTreeMap::from([(("t".to_string(), 0), committed)]),
        }
    }

    #[test]
    fn escalates_rejoin_rejoin_recreate_give_up_with_doubling_bounds() {
        let t0 = Instant::now();
        let s = Duration::from_secs(10);
        let mut w = Watchdog::new(s);
        let u = unowned(5, 3);
        assert_eq!(w.observe(t0, &u), None, "first sight starts the clock");
        assert_eq!(w.observe(t0 + s - Duration::from_millis(1), &u), None);
        assert_eq!(w.observe(t0 + s, &u), Some(Recovery::Rejoin));
        // the next one waits 2 × the bound from the previous action
        assert_eq!(
            w.observe(t0 + s + 2 * s - Duration::from_millis(1), &u),
            None
        );
        assert_eq!(w.observe(t0 + 3 * s, &u), Some(Recovery::Rejoin));
        assert_eq!(w.observe(t0 + 7 * s, &u), Some(Recovery::Recreate));
        assert_eq!(w.observe(t0 + 15 * s, &u), Some(Recovery::GiveUp));
    }

    #[test]
    fn an_assignment_resets_the_escalation() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut w = Watchdog::new(s);
        let u = unowned(5, 3);
        w.observe(t0, &u);
        assert_eq!(w.observe(t0 + s, &u), Some(Recovery::Rejoin));
        w.assigned();
        assert_eq!(w.attempts(), 0);
        assert_eq!(w.observe(t0 + 2 * s, &u), None);
        assert_eq!(w.observe(t0 + 3 * s, &u), Some(Recovery::Rejoin));
    }

    #[test]
    fn never_holding_anything_rejoins_without_escalating_even_when_idle() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut w = Watchdog::new(s);
        let idle = unowned(0, 3);
        assert_eq!(w.observe(t0, &idle), None);
        let mut t = t0;
        for _ in 0..6 {
            t += w.bound();
            assert_eq!(w.observe(t, &idle), Some(Recovery::Rejoin));
        }
    }

    #[test]
    fn no_pending_records_or_moving_commits_is_not_a_stall() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut w = Watchdog::new(s);
        w.assigned();
        // nothing to consume
        for i in 0..10 {
            assert_eq!(w.observe(t0 + i * s, &unowned(0, 3)), None);
        }
        // another replica consumes: the committed offset moves every time
        for i in 0..10 {
            assert_eq!(w.observe(t0 + i * s, &unowned(5, i as i64)), None);
        }
        assert!(w.stalled_since().is_some());
        assert_eq!(w.attempts(), 0);
    }
}
