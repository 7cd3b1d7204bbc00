//! The `roundRobin` balancer: endpoints in turn, in proportion to their weights.
//!
//! The turns follow smooth weighted round robin (the scheme nginx uses): at each step
//! every endpoint's credit grows by its weight, the endpoint with the most credit (the
//! first listed, on a tie) is chosen and pays the total weight. With equal weights this
//! is plain cycling in the order of the endpoint set; with weights 3 and 1 it gives
//! `a a b a`, spreading each endpoint's turns evenly. Endpoints of weight zero get no
//! turn. A discovery update keeps the credit of surviving endpoints (new ones start at
//! zero, then all are re-centred on zero), so an update does not restart the cycle.
//!
//! Each step is one try of `maxEffort`: an endpoint the caller reports unavailable
//! loses its turn and the next step is tried; after `maxEffort` unavailable turns the
//! caller falls back to the least loaded of them.

use super::Endpoint;
use super::p2c::{Best, keep_lower};

/// The endpoints' credits, parallel to the endpoint set.
#[derive(Clone, Debug, Default)]
pub(super) struct RoundRobin {
    credit: Vec<f64>,
}

impl RoundRobin {
    /// Carries credits over to a new endpoint set: `previous[i]` is the old index of the
    /// new endpoint `i`, if it survived.
    pub(super) fn rebuild(&mut self, endpoints: &[Endpoint], previous: &[Option<usize>]) {
        let old = std::mem::take(&mut self.credit);
        self.credit = previous
            .iter()
            .map(|p| p.and_then(|i| old.get(i).copied()).unwrap_or(0.0))
            .collect();
        let eligible = endpoints.iter().filter(|e| e.weight > 0.0).count();
        if eligible > 0 {
            let sum: f64 = self
                .credit
                .iter()
                .zip(endpoints)
                .filter(|(_, e)| e.weight > 0.0)
                .map(|(c, _)| c)
                .sum();
            let mean = sum / eligible as f64;
            for (c, e) in self.credit.iter_mut().zip(endpoints) {
                *c = if e.weight > 0.0 { *c - mean } else { 0.0 };
            }
        }
    }

    /// The next turn: the index of the endpoint with the most credit after this step.
    fn step(&mut self, endpoints: &[Endpoint]) -> Option<usize> {
        let mut total = 0.0;
        let mut chosen: Option<usize> = None;
        for (i, e) in endpoints.iter().enumerate() {
            if e.weight <= 0.0 {
                continue;
            }
            total += e.weight;
            self.credit[i] += e.weight;
            if chosen.is_none_or(|c| self.credit[i] > self.credit[c]) {
                chosen = Some(i);
            }
        }
        let i = chosen?;
        self.credit[i] -= total;
        Some(i)
    }

    /// Up to `max_effort` turns (at least one) until an available endpoint; unavailable
    /// ones go to `fallback`, scored by `score`.
    pub(super) fn pick(
        &mut self,
        endpoints: &[Endpoint],
        max_effort: usize,
        score: impl Fn(usize) -> f64,
        available: impl Fn(usize) -> bool,
        fallback: &mut Best,
    ) -> Option<usize> {
        for _ in 0..max_effort.max(1) {
            let i = self.step(endpoints)?;
            if available(i) {
                return Some(i);
            }
            keep_lower(fallback, score(i), i);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn eps(weights: &[f64]) -> Vec<Endpoint> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| Endpoint::new(SocketAddr::from(([10, 0, 0, 1], i as u16 + 1)), w, 0))
            .collect()
    }

    fn turns(rr: &mut RoundRobin, set: &[Endpoint], n: usize) -> Vec<usize> {
        (0..n).map(|_| rr.step(set).unwrap()).collect()
    }

    #[test]
    fn equal_weights_cycle_in_order() {
        let set = eps(&[1.0, 1.0, 1.0]);
        let mut rr = RoundRobin::default();
        rr.rebuild(&set, &[None, None, None]);
        assert_eq!(turns(&mut rr, &set, 7), vec![0, 1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn weights_interleave() {
        let set = eps(&[3.0, 1.0, 0.0]);
        let mut rr = RoundRobin::default();
        rr.rebuild(&set, &[None, None, None]);
        assert_eq!(turns(&mut rr, &set, 8), vec![0, 0, 1, 0, 0, 0, 1, 0]);
    }
}
