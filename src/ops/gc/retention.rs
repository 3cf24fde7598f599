//! Which snapshots a retention policy keeps (like restic's `forget`).
//!
//! A snapshot is kept when any rule keeps it; with no rule at all, every
//! snapshot is kept. Pinned snapshots are always kept. Calendar buckets
//! (hour, day, ISO week) are in UTC. Pure functions, so the rules are
//! table-tested on fixed timelines.

use std::collections::{BTreeSet, HashSet};

use crate::format::id::ObjectId;

const NS: i64 = 1_000_000_000;
const HOUR: i64 = 3600 * NS;
const DAY: i64 = 24 * HOUR;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    pub keep_last: Option<usize>,
    /// Keep everything newer than this many ns before `now`.
    pub keep_within_ns: Option<i64>,
    pub keep_hourly: Option<usize>,
    pub keep_daily: Option<usize>,
    pub keep_weekly: Option<usize>,
    /// The workspace config's `retention.max_count`: the newest N.
    pub max_count: Option<usize>,
    /// The workspace config's `retention.delete_initial`: when false, the
    /// first snapshot of each run (or of the workspace, outside runs) stays.
    pub delete_initial: bool,
}

impl Policy {
    pub fn is_empty(&self) -> bool {
        self.keep_last.is_none()
            && self.keep_within_ns.is_none()
            && self.keep_hourly.is_none()
            && self.keep_daily.is_none()
            && self.keep_weekly.is_none()
            && self.max_count.is_none()
    }
}

/// What the rules need to know of a snapshot.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub id: ObjectId,
    pub time_ns: i64,
    pub run_id: Option<String>,
    pub pinned: bool,
}

/// Ids of `snaps` (one workspace's) that the policy removes.
pub fn to_remove(snaps: &[Candidate], policy: &Policy, now_ns: i64) -> Vec<ObjectId> {
    if policy.is_empty() {
        return Vec::new();
    }
    let mut order: Vec<&Candidate> = snaps.iter().collect();
    order.sort_by_key(|c| std::cmp::Reverse((c.time_ns, c.id)));
    let mut keep: HashSet<ObjectId> = order.iter().filter(|c| c.pinned).map(|c| c.id).collect();
    let newest = |n: Option<usize>| {
        order
            .iter()
            .take(n.unwrap_or(0))
            .map(|c| c.id)
            .collect::<Vec<_>>()
    };
    keep.extend(newest(policy.keep_last));
    keep.extend(newest(policy.max_count));
    if let Some(w) = policy.keep_within_ns {
        keep.extend(order.iter().filter(|c| c.time_ns >= now_ns - w).map(|c| c.id));
    }
    for (n, bucket) in [
        (policy.keep_hourly, hour_of as fn(i64) -> i64),
        (policy.keep_daily, day_of),
        (policy.keep_weekly, week_of),
    ] {
        keep.extend(per_bucket(&order, n.unwrap_or(0), bucket));
    }
    if !policy.delete_initial {
        keep.extend(initials(&order));
    }
    order
        .iter()
        .filter(|c| !keep.contains(&c.id))
        .map(|c| c.id)
        .collect()
}

/// The newest snapshot of each of the `n` most recent buckets.
fn per_bucket(newest_first: &[&Candidate], n: usize, bucket: fn(i64) -> i64) -> Vec<ObjectId> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for c in newest_first {
        if seen.len() == n {
            break;
        }
        if seen.insert(bucket(c.time_ns)) {
            out.push(c.id);
        }
    }
    out
}

/// The first snapshot of every run, and the first one taken outside runs.
fn initials(newest_first: &[&Candidate]) -> Vec<ObjectId> {
    let mut seen = HashSet::new();
    newest_first
        .iter()
        .rev()
        .filter(|c| seen.insert(c.run_id.clone()))
        .map(|c| c.id)
        .collect()
}

fn hour_of(t: i64) -> i64 {
    t.div_euclid(HOUR)
}

fn day_of(t: i64) -> i64 {
    t.div_euclid(DAY)
}

/// ISO weeks start on Monday; 1970-01-01 was a Thursday.
fn week_of(t: i64) -> i64 {
    (day_of(t) + 3).div_euclid(7)
}

/// Parses `90s`, `30m`, `2h`, `7d`, `2w` (or a bare number of seconds).
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: i64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a duration like 30m, 2h, 7d"))?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(format!("'{s}': unknown unit '{unit}' (use s, m, h, d or w)")),
    };
    n.checked_mul(mult * NS)
        .ok_or_else(|| format!("'{s}' is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Snapshots at the given hours after a Monday midnight (2024-01-01).
    fn timeline(hours: &[i64]) -> Vec<Candidate> {
        let monday = 1_704_067_200 * NS;
        hours
            .iter()
            .enumerate()
            .map(|(i, h)| Candidate {
                id: ObjectId::hash(&[i as u8]),
                time_ns: monday + h * HOUR + i as i64,
                run_id: None,
                pinned: false,
            })
            .collect()
    }

    fn kept(snaps: &[Candidate], p: &Policy, now_h: i64) -> Vec<usize> {
        let gone = to_remove(snaps, p, 1_704_067_200 * NS + now_h * HOUR);
        (0..snaps.len())
            .filter(|i| !gone.contains(&snaps[*i].id))
            .collect()
    }

    #[test]
    fn rules_on_fixed_timelines() {
        let d = true;
        // hours: two per hour on day 0, then one a day for 20 days
        let mut hours = vec![0, 0, 1, 1, 2, 2];
        hours.extend((1..=20).map(|day| day * 24 + 12));
        let snaps = timeline(&hours);
        let n = snaps.len();
        let cases: Vec<(Policy, Vec<usize>)> = vec![
            (
                Policy {
                    delete_initial: d,
                    ..Policy::default()
                },
                (0..n).collect(),
            ),
            (
                Policy {
                    keep_last: Some(3),
                    delete_initial: d,
                    ..Policy::default()
                },
                vec![n - 3, n - 2, n - 1],
            ),
            (
                Policy {
                    max_count: Some(1),
                    delete_initial: d,
                    ..Policy::default()
                },
                vec![n - 1],
            ),
            // within 2 days of hour 20*24+12: the last three daily ones
            (
                Policy {
                    keep_within_ns: Some(2 * DAY),
                    delete_initial: d,
                    ..Policy::default()
                },
                vec![n - 3, n - 2, n - 1],
            ),
            // hourly 3: the newest of the three newest hours
            (
                Policy {
                    keep_hourly: Some(3),
                    delete_initial: d,
                    ..Policy::default()
                },
                vec![n - 3, n - 2, n - 1],
            ),
            // daily 22: one per day; day 0 keeps its newest (index 5)
            (
                Policy {
                    keep_daily: Some(22),
                    delete_initial: d,
                    ..Policy::default()
                },
                (5..n).collect(),
            ),
            // weekly 2: newest of week 3 (days 14-20) and of week 2 (days 7-13)
            (
                Policy {
                    keep_weekly: Some(2),
                    delete_initial: d,
                    ..Policy::default()
                },
                vec![6 + 12, n - 1],
            ),
            // delete_initial false keeps the first snapshot too
            (
                Policy {
                    keep_last: Some(1),
                    ..Policy::default()
                },
                vec![0, n - 1],
            ),
        ];
        for (p, want) in cases {
            assert_eq!(kept(&snaps, &p, 20 * 24 + 12), want, "{p:?}");
        }
    }

    #[test]
    fn pins_and_runs() {
        let mut snaps = timeline(&[0, 1, 2, 3, 4, 5]);
        snaps[1].pinned = true;
        for s in &mut snaps[2..] {
            s.run_id = Some("r1".into());
        }
        let p = Policy {
            keep_last: Some(1),
            ..Policy::default()
        };
        // first outside runs (0), pinned (1), first of run r1 (2), newest (5)
        assert_eq!(kept(&snaps, &p, 6), vec![0, 1, 2, 5]);
        let p = Policy {
            keep_last: Some(1),
            delete_initial: true,
            ..Policy::default()
        };
        assert_eq!(kept(&snaps, &p, 6), vec![1, 5]);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2h"), Ok(2 * HOUR));
        assert_eq!(parse_duration("7d"), Ok(7 * DAY));
        assert_eq!(parse_duration("45"), Ok(45 * NS));
        assert!(parse_duration("2y").is_err());
        assert!(parse_duration("h").is_err());
    }
}
