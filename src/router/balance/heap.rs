//! The `heap` balancer: always the least loaded endpoint, deterministically.
//!
//! The load is the number of requests in flight divided by the endpoint's weight; ties
//! go to the endpoint listed first in the endpoint set. Endpoints the caller reports
//! unavailable are passed over; when none is available the least loaded endpoint is
//! returned anyway. `maxEffort` does not apply (Linkerd's `heap` has no such key): the
//! choice is deterministic, so every endpoint is considered once. The name is
//! Linkerd's; the choice is a linear scan, which for the endpoints of one service costs
//! less than keeping a heap ordered on every request's start and end.

use super::Endpoint;
use super::p2c::{Best, keep_lower};

/// The index of the least loaded available endpoint, else of the least loaded one;
/// `None` only when no endpoint has a positive weight.
pub(super) fn pick(endpoints: &[Endpoint], available: impl Fn(usize) -> bool) -> Option<usize> {
    let mut best: Best = None;
    let mut fallback: Best = None;
    for (i, e) in endpoints.iter().enumerate() {
        if e.weight <= 0.0 {
            continue;
        }
        let load = e.outstanding as f64 / e.weight;
        if available(i) {
            keep_lower(&mut best, load, i);
        } else {
            keep_lower(&mut fallback, load, i);
        }
    }
    best.or(fallback).map(|(_, i)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn eps(loads: &[(usize, f64)]) -> Vec<Endpoint> {
        loads
            .iter()
            .enumerate()
            .map(|(i, &(outstanding, weight))| {
                let mut e =
                    Endpoint::new(SocketAddr::from(([10, 0, 0, 1], i as u16 + 1)), weight, 0);
                e.outstanding = outstanding;
                e
            })
            .collect()
    }

    #[test]
    fn least_loaded_with_ties_by_order() {
        assert_eq!(
            pick(&eps(&[(2, 1.0), (1, 1.0), (1, 1.0)]), |_| true),
            Some(1)
        );
        assert_eq!(pick(&eps(&[(0, 1.0), (0, 1.0)]), |_| true), Some(0));
        // Weight divides the load: 3 in flight on weight 4 beats 1 on weight 1.
        assert_eq!(pick(&eps(&[(1, 1.0), (3, 4.0)]), |_| true), Some(1));
    }

    #[test]
    fn unavailable_endpoints_are_passed_over_unless_all_are() {
        let set = eps(&[(0, 1.0), (5, 1.0), (3, 1.0)]);
        assert_eq!(pick(&set, |i| i != 0), Some(2));
        assert_eq!(pick(&set, |_| false), Some(0));
        assert_eq!(pick(&[], |_| true), None);
    }
}
