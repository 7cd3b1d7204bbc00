//! The aperture: balance over a subset of the endpoints, sized to the load, so a client
//! with little traffic talks to few endpoints (fewer connections, warmer ones) and a
//! busy client spreads out.
//!
//! The endpoints are ranked by a hash of their address and a seed (endpoints of weight
//! zero last), and the aperture is the first `size` of that ranking; a discovery update
//! keeps the ranking of the surviving endpoints, so the aperture keeps its members.
//! The load is the number of requests in flight on the balancer, smoothed over time as
//! an exponential moving average with time constant `smoothWindowMs` (default 5 s).
//! At each pick, if the smoothed load per endpoint in the aperture is above `highLoad`
//! (2.0) the aperture grows by one, if below `lowLoad` (0.5) it shrinks by one, between
//! `minAperture` (1) and the number of endpoints of positive weight. Within the
//! aperture the pick is P2C on least outstanding requests; when no endpoint of the
//! aperture is available within `maxEffort` rounds, the same rounds run over all the
//! endpoints before falling back to the least bad candidate.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::Endpoint;
use super::ewma::decay_factor;
use super::p2c::Sampler;

/// Parameters of the `aperture` balancer.
#[derive(Clone, Debug, PartialEq)]
pub struct ApertureConfig {
    /// `smoothWindowMs`: the time constant of the load average (default 5 s).
    pub smooth_window: Duration,
    /// `lowLoad`: below this load per endpoint the aperture shrinks (default 0.5).
    pub low_load: f64,
    /// `highLoad`: above this load per endpoint the aperture grows (default 2.0).
    pub high_load: f64,
    /// `minAperture`: the smallest aperture (default 1; 0 counts as 1).
    pub min_aperture: usize,
    /// Mixed into the ranking of endpoints (not a Linkerd key). Processes should use
    /// different seeds, so that their apertures cover different endpoints; the workers
    /// of one process may share one, so that they share connections' endpoints.
    pub seed: u64,
}

impl Default for ApertureConfig {
    fn default() -> Self {
        ApertureConfig {
            smooth_window: Duration::from_secs(5),
            low_load: 0.5,
            high_load: 2.0,
            min_aperture: 1,
            seed: 0,
        }
    }
}

/// The aperture's state: the ranking, the size and the smoothed load.
#[derive(Clone, Debug)]
pub(super) struct Aperture {
    config: ApertureConfig,
    /// The endpoints in rank order.
    ranking: Sampler,
    /// How many endpoints have a positive weight (they rank first).
    eligible: usize,
    /// The current aperture, within `[min_aperture, eligible]` (0 when none).
    size: usize,
    /// The smoothed number of requests in flight, at `stamp`.
    load: f64,
    /// The number in flight since `stamp`.
    in_flight: f64,
    stamp: Option<Instant>,
}

impl Aperture {
    /// An aperture over no endpoints.
    pub(super) fn new(config: ApertureConfig) -> Self {
        Aperture {
            config,
            ranking: Sampler::default(),
            eligible: 0,
            size: 0,
            load: 0.0,
            in_flight: 0.0,
            stamp: None,
        }
    }

    /// Ranks a new endpoint set and clamps the size to it.
    pub(super) fn rebuild(&mut self, endpoints: &[Endpoint]) {
        let seed = self.config.seed;
        let mut order: Vec<usize> = (0..endpoints.len()).collect();
        order.sort_by_key(|&i| {
            let e = &endpoints[i];
            (e.weight <= 0.0, rank(seed, e.addr), e.addr)
        });
        self.eligible = endpoints.iter().filter(|e| e.weight > 0.0).count();
        self.ranking.rebuild(order, |i| endpoints[i].weight);
        self.size = self.size.clamp(self.min_size(), self.eligible);
    }

    fn min_size(&self) -> usize {
        self.config.min_aperture.max(1).min(self.eligible)
    }

    /// Folds the time since the last change into the smoothed load; `in_flight` is the
    /// number of requests in flight from now on.
    pub(super) fn record(&mut self, now: Instant, in_flight: usize) {
        if let Some(stamp) = self.stamp {
            let elapsed = now.saturating_duration_since(stamp);
            let w = decay_factor(elapsed, self.config.smooth_window.as_secs_f64());
            self.load = self.load * w + self.in_flight * (1.0 - w);
        }
        self.in_flight = in_flight as f64;
        self.stamp = Some(self.stamp.map_or(now, |s| s.max(now)));
    }

    /// Updates the smoothed load and moves the size by at most one step.
    pub(super) fn adjust(&mut self, now: Instant, in_flight: usize) {
        self.record(now, in_flight);
        if self.size == 0 {
            return;
        }
        let per_endpoint = self.load / self.size as f64;
        if per_endpoint > self.config.high_load && self.size < self.eligible {
            self.size += 1;
        } else if per_endpoint < self.config.low_load && self.size > self.min_size() {
            self.size -= 1;
        }
    }

    /// The endpoints in rank order.
    pub(super) fn ranking(&self) -> &Sampler {
        &self.ranking
    }

    /// The current aperture size.
    pub(super) fn size(&self) -> usize {
        self.size
    }

    /// The smoothed number of requests in flight at the last update.
    #[cfg(test)]
    pub(super) fn smoothed_load(&self) -> f64 {
        self.load
    }
}

/// The rank of an address under a seed (splitmix64 over the address's bits).
fn rank(seed: u64, addr: SocketAddr) -> u64 {
    let ip = match addr.ip() {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    };
    let h = mix(seed ^ ip as u64);
    let h = mix(h ^ (ip >> 64) as u64);
    mix(h ^ u64::from(addr.port()))
}

fn mix(z: u64) -> u64 {
    let z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(ports: &[u16]) -> Vec<Endpoint> {
        ports
            .iter()
            .map(|&p| Endpoint::new(SocketAddr::from(([10, 0, 0, 1], p)), 1.0, 0))
            .collect()
    }

    fn ranked(a: &Aperture, eps: &[Endpoint]) -> Vec<u16> {
        (0..a.ranking().len())
            .map(|p| eps[a.ranking().index(p)].addr.port())
            .collect()
    }

    #[test]
    fn ranking_survives_updates_and_depends_on_the_seed() {
        let mut a = Aperture::new(ApertureConfig::default());
        let all = endpoints(&[1, 2, 3, 4, 5, 6, 7, 8]);
        a.rebuild(&all);
        let before = ranked(&a, &all);
        let fewer = endpoints(&[2, 4, 6, 8, 9]);
        a.rebuild(&fewer);
        let after = ranked(&a, &fewer);
        let kept: Vec<u16> = before
            .into_iter()
            .filter(|p| [2, 4, 6, 8].contains(p))
            .collect();
        let kept_after: Vec<u16> = after.into_iter().filter(|p| *p != 9).collect();
        assert_eq!(kept, kept_after);

        let mut b = Aperture::new(ApertureConfig {
            seed: 7,
            ..ApertureConfig::default()
        });
        b.rebuild(&all);
        assert_ne!(
            ranked(&b, &all),
            ranked(
                &{
                    let mut a = Aperture::new(ApertureConfig::default());
                    a.rebuild(&all);
                    a
                },
                &all
            )
        );
    }

    #[test]
    fn zero_weights_rank_last_and_bound_the_size() {
        let mut eps = endpoints(&[1, 2, 3]);
        eps[0].weight = 0.0;
        let mut a = Aperture::new(ApertureConfig {
            min_aperture: 5,
            ..ApertureConfig::default()
        });
        a.rebuild(&eps);
        assert_eq!(a.size(), 2);
        assert_eq!(ranked(&a, &eps)[2], 1);
    }

    #[test]
    fn the_load_is_a_time_average() {
        let t0 = Instant::now();
        let mut a = Aperture::new(ApertureConfig::default());
        a.rebuild(&endpoints(&[1, 2, 3, 4]));
        a.record(t0, 4);
        a.record(t0 + Duration::from_secs(5), 4);
        let expected = 4.0 * (1.0 - (-1.0f64).exp());
        assert!((a.smoothed_load() - expected).abs() < 1e-9);
    }
}
