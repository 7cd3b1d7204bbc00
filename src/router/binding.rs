//! Phase 4, bind: the name tree a (dtab, name) pair binds to, cached per worker.
//!
//! Binding is a pure function of the dtab, the name and the namers' snapshots, so each
//! worker keeps its own cache (no lock on the hot path) and re-binds an entry only when
//! the discovery [`Epoch`](crate::discovery::Epoch) has moved since it was computed:
//! once per discovery change, never per request. Entries idle for the router's idle TTL
//! are dropped.

use std::rc::Rc;
use std::time::{Duration, Instant};

use super::Router;
use super::error::{ErrorKind, ProxyError};
use crate::naming::{Activity, Addr, Bound, Dtab, NameTree, Path, transform_all};

type Bound_ = Result<Rc<NameTree<Bound>>, ProxyError>;

struct Entry {
    epoch: u64,
    result: Bound_,
    last_used: Instant,
}

/// One worker's bindings for one router, keyed by local dtab (its text, empty for
/// requests without one: the common case, looked up without allocating) then name.
#[derive(Default)]
pub struct BindingCache {
    /// foldhash (randomly seeded): looked up on every request.
    entries: foldhash::HashMap<String, foldhash::HashMap<Path, Entry>>,
    last_sweep: Option<Instant>,
}

/// The 502 message Linkerd gives when nothing can take the request.
pub fn no_hosts(name: &Path, base: &Dtab, local: &Dtab) -> ProxyError {
    ProxyError::new(
        ErrorKind::NoHosts,
        format!(
            "No hosts are available for {name}, Dtab.base=[{base}], Dtab.local=[{local}]. Remote Info: Not Available"
        ),
    )
}

impl BindingCache {
    /// The bound tree for `name` under `base ++ local`.
    pub fn bind(&mut self, router: &Router, local: &Dtab, name: &Path, now: Instant) -> Bound_ {
        self.sweep(router.idle_ttl, now);
        let epoch = router.epoch.current();
        let local_text = if local.is_empty() {
            std::borrow::Cow::Borrowed("")
        } else {
            std::borrow::Cow::Owned(local.show())
        };
        if let Some(entry) = self
            .entries
            .get_mut(local_text.as_ref())
            .and_then(|names| names.get_mut(name))
            && entry.epoch == epoch
        {
            entry.last_used = now;
            return entry.result.clone();
        }
        let dtab = router.base_dtab.concat(local);
        let bound = match router.namers.bind(&dtab, name) {
            Activity::Ok(tree) => Activity::Ok(transform_all(tree, &router.transformers)),
            other => other,
        };
        let result = match bound {
            Activity::Ok(NameTree::Neg | NameTree::Fail | NameTree::Empty) => {
                Err(no_hosts(name, &router.base_dtab, local))
            }
            // A leaf whose endpoints are still being discovered (a transformer waiting
            // for its own lookup) makes the whole binding pending, as Finagle waits for
            // a pending address.
            Activity::Ok(tree) if tree.leaves().iter().any(|b| b.addr == Addr::Pending) => {
                Err(ProxyError::new(
                    ErrorKind::Pending,
                    format!("{name} is bound but its endpoints are still being discovered"),
                ))
            }
            Activity::Ok(tree) => {
                router.clients.record(&tree);
                Ok(Rc::new(tree))
            }
            Activity::Pending => Err(ProxyError::new(
                ErrorKind::Pending,
                format!("{name} is not bound yet: discovery is pending"),
            )),
            Activity::Failed(e) => Err(ProxyError::new(
                ErrorKind::Binding,
                format!("binding {name} failed: {e}"),
            )),
        };
        self.entries
            .entry(local_text.into_owned())
            .or_default()
            .insert(
                name.clone(),
                Entry {
                    epoch,
                    result: result.clone(),
                    last_used: now,
                },
            );
        result
    }

    /// Drops entries idle for longer than `ttl`, at most once per tenth of it.
    fn sweep(&mut self, ttl: Duration, now: Instant) {
        if !sweep_due(self.last_sweep, ttl, now) {
            return;
        }
        self.last_sweep = Some(now);
        for names in self.entries.values_mut() {
            names.retain(|_, e| now.duration_since(e.last_used) <= ttl);
        }
        self.entries.retain(|_, names| !names.is_empty());
    }
}

/// Whether a cache last swept at `last` (never: `None`) is due to drop its entries idle
/// for `ttl`: at most once per tenth of it, so that a stream of new names does not scan
/// every kept one for each.
pub(super) fn sweep_due(last: Option<Instant>, ttl: Duration, now: Instant) -> bool {
    last.is_none_or(|t| now.saturating_duration_since(t) >= ttl / 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sweep_is_due_first_then_once_per_tenth_of_the_ttl() {
        let (ttl, t0) = (Duration::from_secs(600), Instant::now());
        assert!(sweep_due(None, ttl, t0));
        assert!(!sweep_due(Some(t0), ttl, t0 + Duration::from_secs(59)));
        assert!(sweep_due(Some(t0), ttl, t0 + Duration::from_secs(60)));
    }
}
