//! Which snapshots a retention policy keeps (like restic's `forget`), and
//! the policy a workspace gets when nobody names one.
//!
//! A snapshot is kept when any rule keeps it; with no rule at all, every
//! snapshot is kept. Pinned snapshots are always kept. Calendar buckets
//! (hour, day, ISO week) are in UTC. Pure functions, so the rules are
//! table-tested on fixed timelines.
//!
//! The default (no `retention.max_count` in `moat.yaml`) is time-based like
//! Time Machine, never "the last N", which an agent burns through in
//! minutes: every snapshot of the last 24 hours, then the newest of each
//! hour for 7 days, then of each day for 30 days. Every policy a workspace
//! gets from its configuration (default or `moat.yaml`) also keeps the
//! pre-run and post-run snapshots of every run of the last 30 days, so the
//! state before and after any recent run can be restored.

use std::collections::{BTreeSet, HashSet};

use crate::format::id::ObjectId;
use crate::format::snapshot::Trigger;
use crate::worktree::config::Retention;

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
    /// The newest snapshot of every UTC hour within this many ns before now.
    pub hourly_within_ns: Option<i64>,
    /// The newest snapshot of every UTC day within this many ns before now.
    pub daily_within_ns: Option<i64>,
    /// The pre-run and post-run snapshots newer than this many ns. Only
    /// protects: on its own it removes nothing.
    pub run_bounds_within_ns: Option<i64>,
}

/// How long the default and configured policies keep the pre-run and
/// post-run state of a run.
pub const RUN_WINDOW_NS: i64 = 30 * DAY;

impl Policy {
    /// True when no rule removes anything (the protecting rules alone do not).
    pub fn is_empty(&self) -> bool {
        self.keep_last.is_none()
            && self.keep_within_ns.is_none()
            && self.keep_hourly.is_none()
            && self.keep_daily.is_none()
            && self.keep_weekly.is_none()
            && self.max_count.is_none()
            && self.hourly_within_ns.is_none()
            && self.daily_within_ns.is_none()
    }

    /// The default: every snapshot of the last 24 hours, then hourly for 7
    /// days, then daily for 30 days; run bounds for 30 days.
    pub fn time_machine() -> Policy {
        Policy {
            keep_within_ns: Some(DAY),
            hourly_within_ns: Some(7 * DAY),
            daily_within_ns: Some(30 * DAY),
            run_bounds_within_ns: Some(RUN_WINDOW_NS),
            ..Policy::default()
        }
    }

    /// The policy of a workspace's configuration: `retention.max_count` when
    /// set, else the time-based default; run bounds for 30 days either way.
    pub fn for_workspace(r: &Retention) -> Policy {
        let mut p = match r.max_count {
            Some(n) => Policy {
                max_count: Some(usize::try_from(n).unwrap_or(usize::MAX)),
                ..Policy::default()
            },
            None => Policy::time_machine(),
        };
        p.delete_initial = r.delete_initial;
        p.run_bounds_within_ns = Some(RUN_WINDOW_NS);
        p
    }

    /// One line saying what the policy keeps (`moat gc --dry-run`).
    pub fn describe(&self) -> String {
        let mut rules = Vec::new();
        if let Some(n) = self.keep_last {
            rules.push(format!("the last {n}"));
        }
        if let Some(n) = self.max_count {
            rules.push(format!("the newest {n} (moat.yaml max_count)"));
        }
        if let Some(w) = self.keep_within_ns {
            rules.push(format!("every snapshot of the last {}", span(w)));
        }
        for (n, what) in [
            (self.keep_hourly, "hours"),
            (self.keep_daily, "days"),
            (self.keep_weekly, "weeks"),
        ] {
            if let Some(n) = n {
                rules.push(format!("the newest of each of the last {n} {what} that have one"));
            }
        }
        if let Some(w) = self.hourly_within_ns {
            rules.push(format!("hourly for {}", span(w)));
        }
        if let Some(w) = self.daily_within_ns {
            rules.push(format!("daily for {}", span(w)));
        }
        let mut always = vec!["pinned snapshots".to_string()];
        if !self.delete_initial {
            always.push("the first snapshot of each run".into());
        }
        if let Some(w) = self.run_bounds_within_ns {
            always.push(format!(
                "the pre-run and post-run snapshots of the last {}",
                span(w)
            ));
        }
        let keeps = match rules.is_empty() {
            true => "every snapshot (no rule removes any)".to_string(),
            false => rules.join(", then "),
        };
        format!("keeps {keeps}; always {}", always.join(", "))
    }
}

/// `86400 s` → `24 hours`, `7 d` → `7 days`.
fn span(ns: i64) -> String {
    let s = ns / NS;
    match s {
        s if s % 86_400 == 0 && s > 86_400 => format!("{} days", s / 86_400),
        s if s % 3600 == 0 => format!("{} hours", s / 3600),
        s if s % 60 == 0 => format!("{} minutes", s / 60),
        s => format!("{s} seconds"),
    }
}

/// What the rules need to know of a snapshot.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub id: ObjectId,
    pub time_ns: i64,
    pub run_id: Option<String>,
    pub trigger: Trigger,
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
        keep.extend(
            order
                .iter()
                .filter(|c| c.time_ns >= now_ns.saturating_sub(w))
                .map(|c| c.id),
        );
    }
    for (n, bucket) in [
        (policy.keep_hourly, hour_of as fn(i64) -> i64),
        (policy.keep_daily, day_of),
        (policy.keep_weekly, week_of),
    ] {
        keep.extend(per_bucket(&order, n.unwrap_or(0), bucket));
    }
    for (within, bucket) in [
        (policy.hourly_within_ns, hour_of as fn(i64) -> i64),
        (policy.daily_within_ns, day_of),
    ] {
        if let Some(w) = within {
            let recent: Vec<&Candidate> = order
                .iter()
                .copied()
                .filter(|c| c.time_ns >= now_ns.saturating_sub(w))
                .collect();
            keep.extend(per_bucket(&recent, usize::MAX, bucket));
        }
    }
    if let Some(w) = policy.run_bounds_within_ns {
        keep.extend(
            order
                .iter()
                .filter(|c| matches!(c.trigger, Trigger::PreRun | Trigger::PostRun))
                .filter(|c| c.run_id.is_some() && c.time_ns >= now_ns.saturating_sub(w))
                .map(|c| c.id),
        );
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
                trigger: Trigger::Manual,
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

    /// (hours before `now`, trigger, run) → a candidate, in that order.
    fn at(now_h: i64, spec: &[(i64, Trigger, Option<&str>)]) -> Vec<Candidate> {
        let monday = 1_704_067_200 * NS;
        spec.iter()
            .enumerate()
            .map(|(i, (ago, trigger, run))| Candidate {
                id: ObjectId::hash(&[i as u8, 7]),
                time_ns: monday + (now_h - ago) * HOUR + i as i64,
                run_id: run.map(String::from),
                trigger: *trigger,
                pinned: false,
            })
            .collect()
    }

    #[test]
    fn the_default_policy_keeps_a_day_then_hours_for_a_week_then_days_for_a_month() {
        use Trigger::*;
        // now: 40 days after a Monday midnight, at noon
        let now_h = 40 * 24 + 12;
        let snaps = at(
            now_h,
            &[
                (2000, Manual, None), // 0: first of the workspace: initial
                (900, Manual, None),  // 1: 37.5 days ago: too old
                (500, Manual, None),  // 2: day 19.2 ago, two in that day ...
                (499, Manual, None),  // 3: ... the newer one stays
                (100, Manual, None),  // 4: 4 days ago, hour A: two ...
                (100, Manual, None),  // 5: ... the newer stays
                (99, Manual, None),   // 6: hour A+1: stays
                (23, Manual, None),   // 7: within 24 h: all stay
                (23, Manual, None),   // 8
                (1, Manual, None),    // 9
            ],
        );
        let p = Policy::for_workspace(&Retention::default());
        assert_eq!(p, Policy::time_machine());
        assert_eq!(kept(&snaps, &p, now_h), vec![0, 3, 5, 6, 7, 8, 9]);
        assert!(
            p.describe().contains(
                "every snapshot of the last 24 hours, then hourly for 7 days, then daily for 30 days"
            )
        );
    }

    #[test]
    fn runs_keep_their_pre_run_and_post_run_state_for_thirty_days() {
        use Trigger::*;
        let now_h = 60 * 24;
        let snaps = at(
            now_h,
            &[
                (40 * 24, PreRun, Some("old")),    // 0: beyond the window
                (40 * 24, GitCommit, Some("old")), // 1
                (40 * 24, PostRun, Some("old")),   // 2
                (20 * 24, PreRun, Some("r1")),     // 3: kept: run bound
                (20 * 24, GitCommit, Some("r1")),  // 4: same day, older than the post-run
                (20 * 24, PostRun, Some("r1")),    // 5: kept: run bound (and daily)
                (20 * 24, PreRun, Some("r2")),     // 6: a run that changed nothing
                (20 * 24, PostRun, Some("r2")),    // 7
            ],
        );
        let p = Policy {
            delete_initial: true,
            ..Policy::for_workspace(&Retention::default())
        };
        assert_eq!(kept(&snaps, &p, now_h), vec![3, 5, 6, 7]);
        // A configured max_count keeps them too.
        let p = Policy::for_workspace(&Retention {
            max_count: Some(1),
            delete_initial: true,
        });
        assert_eq!(kept(&snaps, &p, now_h), vec![3, 5, 6, 7]);
        // Explicit command-line rules do not add the protection.
        let p = Policy {
            keep_last: Some(1),
            delete_initial: true,
            ..Policy::default()
        };
        assert_eq!(kept(&snaps, &p, now_h), vec![7]);
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
