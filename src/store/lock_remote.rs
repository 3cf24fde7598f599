//! The store lock of a store in a bucket, where there is no flock: lock
//! objects with leases (store-format.md, "Remote stores: the lock").
//!
//! A hold is an object `locks/shared-<u>` or `locks/exclusive-<u>` (`u`
//! unique to the hold), created with a conditional create and rewritten
//! every `lease / 6` by a thread of the holding process. An object whose
//! last-modified time (the server's clock) is more than `lease` older
//! than the newest lock object is stale: its holder died or lost touch,
//! and nobody waits for it. Every judgement uses the server's clock only
//! (the newest lock object, normally the judge's own, just written), so
//! the machines' clocks never matter.
//!
//! The Lock doc's points, and how they are kept:
//! 1. a shared holder creates its object, then lists: if a live exclusive
//!    object exists it deletes its own and waits. An exclusive candidate
//!    creates its object, then lists: if another live exclusive exists it
//!    deletes its own and waits (retrying after a random pause); else it
//!    waits until no live shared object is left. S3 is strongly
//!    consistent: of a shared and an exclusive that each create and then
//!    list, at least one sees the other, so they never both proceed;
//! 2. waits are polls of the listing, never failures; `on_wait` once;
//! 3. a dropped hold deletes its object; a dead process's object goes
//!    stale after `lease`. A holder whose renewals fail considers its
//!    lease lost `lease / 2` after the start of its last successful
//!    renewal, and every publish and delete of the store checks that
//!    first (`RemoteLock::check`): it stops well before anybody else
//!    may take its object for stale (requests are bounded in time);
//!    A process already holding the lock gets a further shared hold at
//!    once (as with flock(2): the same process never waits for itself);
//! 4. `try_exclusive` creates an exclusive object and keeps it only if
//!    the listing shows no other live holder.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::store::backend::remote::Remote;
use crate::store::lock::{Held, Hold, Lock};

/// The lease when `MOAT_LOCK_LEASE_SECS` does not say.
const LEASE_SECS: u64 = 60;
const DIR: &str = "locks";

fn guard<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What one hold owns and how long its lease surely lasts.
struct State {
    /// Its lock objects, relative to the store's prefix.
    objects: Mutex<Vec<String>>,
    valid_until: Mutex<Instant>,
    stop: Mutex<bool>,
    wake: Condvar,
}

#[derive(Clone)]
pub struct RemoteLock {
    remote: Arc<Remote>,
    lease: Duration,
    holds: Arc<Mutex<Vec<Weak<State>>>>,
}

/// The lock objects a listing found, judged by the server's clock.
struct View {
    live_shared: Vec<String>,
    live_exclusive: Vec<String>,
}

impl RemoteLock {
    pub fn new(remote: Arc<Remote>) -> Self {
        let secs = std::env::var("MOAT_LOCK_LEASE_SECS")
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(LEASE_SECS)
            .clamp(2, 3600);
        Self::with_lease(remote, Duration::from_secs(secs))
    }

    pub fn with_lease(remote: Arc<Remote>, lease: Duration) -> Self {
        RemoteLock {
            remote,
            lease,
            holds: Arc::default(),
        }
    }

    /// Fails when a hold of this process may have lost its lease: a
    /// publish or delete now could race a gc that took the lock over.
    pub fn check(&self, what: &std::path::Path) -> Result<()> {
        let now = Instant::now();
        let mut holds = guard(&self.holds);
        holds.retain(|w| w.strong_count() > 0);
        for st in holds.iter().filter_map(Weak::upgrade) {
            if now > *guard(&st.valid_until) {
                return Err(Error::store_write(
                    what,
                    std::io::Error::other(format!(
                        "the lease on the store's lock at {} could not be renewed in time; \
                         stopped before writing, so no concurrent gc can lose what this \
                         writes (try again)",
                        self.remote.location.display()
                    )),
                ));
            }
        }
        Ok(())
    }

    /// Makes the leases of this process's holds count as lost (tests of
    /// `check`).
    #[cfg(test)]
    pub(crate) fn expire_all(&self) {
        for st in guard(&self.holds).iter().filter_map(Weak::upgrade) {
            *guard(&st.valid_until) = Instant::now() - Duration::from_millis(1);
        }
    }

    fn new_object(&self, kind: &str) -> Result<(String, Instant)> {
        let rel = format!("{DIR}/{kind}-{}", hex::encode(crate::util::unique_id16()));
        let t0 = Instant::now();
        self.remote.put(&rel, self.body(), true)?;
        Ok((rel, t0))
    }

    fn body(&self) -> Vec<u8> {
        let host = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_default();
        format!("{host} {}\n", std::process::id()).into_bytes()
    }

    /// Lists the lock objects; deletes those stale for two leases (their
    /// holders are gone or have stopped).
    fn scan(&self, mine: &[String]) -> Result<View> {
        let all = self.remote.list(DIR)?;
        let now = all.iter().map(|(_, _, t)| *t).max().unwrap_or(0);
        let lease = i64::try_from(self.lease.as_nanos()).unwrap_or(i64::MAX);
        let mut view = View {
            live_shared: Vec::new(),
            live_exclusive: Vec::new(),
        };
        for (rel, _, t) in all {
            if mine.contains(&rel) {
                continue;
            }
            let age = now.saturating_sub(t);
            if age > lease.saturating_mul(2) {
                let _ = self.remote.delete(&rel);
            } else if age <= lease {
                let name = rel.rsplit('/').next().unwrap_or("");
                if name.starts_with("exclusive-") {
                    view.live_exclusive.push(rel);
                } else if name.starts_with("shared-") {
                    view.live_shared.push(rel);
                }
            }
        }
        Ok(view)
    }

    /// A hold on `objects`, renewed from now on.
    fn hold(&self, objects: Vec<String>, t0: Instant) -> RemoteHold {
        let st = Arc::new(State {
            objects: Mutex::new(objects),
            valid_until: Mutex::new(t0 + self.lease / 2),
            stop: Mutex::new(false),
            wake: Condvar::new(),
        });
        guard(&self.holds).push(Arc::downgrade(&st));
        let (remote, lease, body, st2) = (self.remote.clone(), self.lease, self.body(), st.clone());
        let renewer = std::thread::Builder::new()
            .name("moat-lease".into())
            .spawn(move || renew(&remote, lease, &body, &st2))
            .ok();
        RemoteHold {
            lock: self.clone(),
            st,
            renewer,
        }
    }

    fn pause(&self, round: u32) {
        // 100 ms doubling to 2 s, with jitter so racing candidates part.
        let base = 100u64.saturating_mul(1 << round.min(5)).min(2000);
        let jitter = u64::from(crate::util::unique_id16()[0]) * base / 512;
        std::thread::sleep(Duration::from_millis(base + jitter));
    }
}

/// Rewrites the hold's objects every `lease / 6` until it is dropped.
fn renew(remote: &Remote, lease: Duration, body: &[u8], st: &State) {
    let mut stop = guard(&st.stop);
    loop {
        // Checked before each wait too: a hold dropped before this thread
        // first got here must not wait a whole period.
        if *stop {
            return;
        }
        stop = st
            .wake
            .wait_timeout(stop, lease / 6)
            .map(|(g, _)| g)
            .unwrap_or_else(|p| p.into_inner().0);
        if *stop {
            return;
        }
        drop(stop);
        let t0 = Instant::now();
        let objects = guard(&st.objects).clone();
        if objects
            .iter()
            .all(|o| remote.put(o, body.to_vec(), false).is_ok())
        {
            *guard(&st.valid_until) = t0 + lease / 2;
        }
        stop = guard(&st.stop);
    }
}

impl Lock for RemoteLock {
    fn shared(&self) -> Result<Held> {
        // A process that holds the lock already gets another shared hold
        // at once, as flock(2) gives it: an exclusive candidate waits for
        // the held one anyway, and waiting for the candidate would
        // deadlock (a writer session starts its successor before it ends).
        if guard(&self.holds).iter().any(|w| w.strong_count() > 0) {
            let (rel, t0) = self.new_object("shared")?;
            return Ok(Box::new(self.hold(vec![rel], t0)));
        }
        let mut round = 0;
        loop {
            let (rel, t0) = self.new_object("shared")?;
            let view = self.scan(std::slice::from_ref(&rel))?;
            if view.live_exclusive.is_empty() {
                return Ok(Box::new(self.hold(vec![rel], t0)));
            }
            self.remote.delete(&rel)?;
            self.pause(round);
            round = round.saturating_add(1);
        }
    }

    fn exclusive(&self, on_wait: &mut dyn FnMut()) -> Result<Held> {
        let mut waited = false;
        let mut wait = |round: u32| {
            if !waited {
                waited = true;
                on_wait();
            }
            self.pause(round);
        };
        let mut round = 0;
        loop {
            let (rel, t0) = self.new_object("exclusive")?;
            let view = self.scan(std::slice::from_ref(&rel))?;
            if !view.live_exclusive.is_empty() {
                self.remote.delete(&rel)?;
                wait(round);
                round = round.saturating_add(1);
                continue;
            }
            // Ours: new shared holders now back off; wait for the
            // running ones, renewing ours meanwhile.
            let hold = self.hold(vec![rel.clone()], t0);
            let mut drain = 0;
            loop {
                let view = self.scan(std::slice::from_ref(&rel))?;
                if view.live_shared.is_empty() {
                    return Ok(Box::new(hold));
                }
                wait(drain);
                drain = drain.saturating_add(1);
            }
        }
    }
}

pub struct RemoteHold {
    lock: RemoteLock,
    st: Arc<State>,
    renewer: Option<JoinHandle<()>>,
}

impl Hold for RemoteHold {
    fn try_exclusive(&self) -> bool {
        let Ok((rel, _)) = self.lock.new_object("exclusive") else {
            return false;
        };
        let mut mine = guard(&self.st.objects).clone();
        mine.push(rel.clone());
        let alone = self
            .lock
            .scan(&mine)
            .is_ok_and(|v| v.live_shared.is_empty() && v.live_exclusive.is_empty());
        match alone {
            true => guard(&self.st.objects).push(rel),
            false => {
                let _ = self.lock.remote.delete(&rel);
            }
        }
        alone
    }
}

impl Drop for RemoteHold {
    fn drop(&mut self) {
        *guard(&self.st.stop) = true;
        self.st.wake.notify_all();
        if let Some(t) = self.renewer.take() {
            let _ = t.join();
        }
        for rel in guard(&self.st.objects).drain(..) {
            let _ = self.lock.remote.delete(&rel);
        }
    }
}

#[cfg(test)]
#[path = "lock_remote_tests.rs"]
mod tests;
