//! Who gets a connection slot: at most `max_connections` open on a listener, and at most
//! `max_connections_per_peer` of them from one remote address, so one peer cannot starve others.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

#[derive(Default)]
struct Open {
    total: usize,
    by_peer: HashMap<IpAddr, usize>,
}

/// The open connections of one listener.
pub(crate) struct Admission {
    max_total: usize,
    max_per_peer: usize,
    open: watch::Sender<Open>,
}

/// Why a connection was closed at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    ListenerFull,
    PeerFull,
}

/// A connection's slot, given back when dropped.
pub(crate) struct Slot {
    admission: Arc<Admission>,
    peer: IpAddr,
}

impl Admission {
    pub(crate) fn new(max_total: usize, max_per_peer: usize) -> Arc<Admission> {
        Arc::new(Admission { max_total, max_per_peer, open: watch::Sender::new(Open::default()) })
    }

    pub(crate) fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Slot, Refused> {
        let mut outcome = Ok(());
        self.open.send_if_modified(|open| {
            let of_peer = open.by_peer.get(&peer).copied().unwrap_or(0);
            outcome = if open.total >= self.max_total {
                Err(Refused::ListenerFull)
            } else if of_peer >= self.max_per_peer {
                Err(Refused::PeerFull)
            } else {
                open.total += 1;
                open.by_peer.insert(peer, of_peer + 1);
                Ok(())
            };
            outcome.is_ok()
        });
        outcome.map(|()| Slot { admission: self.clone(), peer })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.admission.open.send_modify(|open| {
            open.total = open.total.saturating_sub(1);
            if let Some(count) = open.by_peer.get_mut(&self.peer) {
                *count -= 1;
                if *count == 0 {
                    open.by_peer.remove(&self.peer);
                }
            }
        });
    }
}

/// A warning logged at most once per interval, with how many times it was held back: an attack
/// that trips it thousands of times a second must not flood the log too.
pub(crate) struct RateLimitedWarning {
    interval: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl RateLimitedWarning {
    pub(crate) const fn new(interval: Duration) -> Self {
        RateLimitedWarning { interval, state: Mutex::new((None, 0)) }
    }

    /// Calls `log` with the number of occurrences held back since the last one logged, if it is time.
    pub(crate) fn warn(&self, log: impl FnOnce(u64)) {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (last, held_back) = &mut *state;
        if last.is_some_and(|at| at.elapsed() < self.interval) {
            *held_back += 1;
            return;
        }
        let skipped = std::mem::take(held_back);
        *last = Some(Instant::now());
        drop(state);
        log(skipped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_gets_its_share_and_the_listener_its_cap() {
        let admission = Admission::new(3, 2);
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.2".parse().unwrap(), "127.0.0.1".parse().unwrap());
        let first = admission.admit(a).unwrap();
        let _second = admission.admit(a).unwrap();
        assert_eq!(admission.admit(a).err(), Some(Refused::PeerFull));
        let _third = admission.admit(b).unwrap();
        assert_eq!(admission.admit(b).err(), Some(Refused::ListenerFull));
        drop(first);
        assert!(admission.admit(a).is_ok(), "a slot given back is free again");
    }
}
