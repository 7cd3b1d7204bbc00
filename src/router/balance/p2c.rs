//! Power of two choices: draw two distinct endpoints at random, weighted by the namer's
//! weights, and take the one with the lower score (`cost / weight`); `p2c`, `ewma` and
//! `aperture` share it and differ only in the cost and in which endpoints they draw from.
//!
//! Weighting is in the draw: the first candidate is drawn with probability
//! `weight / total`, the second likewise among the others (without replacement). A tie
//! goes to the first candidate, so with equal costs (an idle set) traffic splits exactly
//! by weight; dividing the cost by the weight makes a heavier endpoint also hold
//! proportionally more requests in flight before it loses comparisons. Endpoints of
//! weight zero are never drawn.
//!
//! `maxEffort` bounds the rounds: a candidate the caller reports unavailable is set
//! aside, and a round whose two candidates are both unavailable is drawn again, at most
//! `maxEffort` rounds in all (at least one). The caller falls back to the lowest-scoring
//! candidate seen, so a pick fails only when there is nothing to draw from.

/// Weighted draws over an ordered list of endpoint indices, by cumulative weights.
#[derive(Clone, Debug, Default)]
pub(super) struct Sampler {
    /// Endpoint indices, in draw order.
    order: Vec<usize>,
    /// `cum[k]` is the total weight of `order[..k]`; one longer than `order`.
    cum: Vec<f64>,
}

impl Sampler {
    /// Replaces the list: `order` holds endpoint indices, `weight` gives an endpoint's
    /// weight (finite and non-negative).
    pub(super) fn rebuild(
        &mut self,
        order: impl IntoIterator<Item = usize>,
        weight: impl Fn(usize) -> f64,
    ) {
        self.order.clear();
        self.cum.clear();
        self.cum.push(0.0);
        let mut total = 0.0;
        for i in order {
            total += weight(i);
            self.order.push(i);
            self.cum.push(total);
        }
    }

    /// The number of entries.
    pub(super) fn len(&self) -> usize {
        self.order.len()
    }

    /// The endpoint index at a position.
    pub(super) fn index(&self, pos: usize) -> usize {
        self.order[pos]
    }

    /// The weight at a position.
    fn weight(&self, pos: usize) -> f64 {
        self.cum[pos + 1] - self.cum[pos]
    }

    /// A position among the first `len`, drawn by weight with `u` in `[0, 1)`, never
    /// `skip`; `None` when no other entry there has a positive weight.
    pub(super) fn draw(&self, len: usize, u: f64, skip: Option<usize>) -> Option<usize> {
        let len = len.min(self.order.len());
        let (skip_lo, skip_w) = match skip {
            Some(p) if p < len => (self.cum[p], self.weight(p)),
            _ => (f64::INFINITY, 0.0),
        };
        let span = self.cum[len] - skip_w;
        if span.is_nan() || span <= 0.0 {
            return None;
        }
        let mut x = u * span;
        if x >= skip_lo {
            x += skip_w;
        }
        // The first position whose interval ends after x: cum[p] <= x < cum[p + 1].
        let pos = self.cum[1..=len].partition_point(|&c| c <= x);
        if pos < len && Some(pos) != skip && self.weight(pos) > 0.0 {
            return Some(pos);
        }
        // Rounding put x at an edge: take the last eligible entry.
        (0..len)
            .rev()
            .find(|&p| Some(p) != skip && self.weight(p) > 0.0)
    }
}

/// The lowest score seen so far and its endpoint index.
pub(super) type Best = Option<(f64, usize)>;

/// Keeps `(score, index)` in `best` if it scores lower (ties keep the earlier one).
pub(super) fn keep_lower(best: &mut Best, score: f64, index: usize) {
    if best.is_none_or(|(s, _)| score < s) {
        *best = Some((score, index));
    }
}

/// Power of two choices among the first `len` entries of `sampler`: returns the endpoint
/// index of an available winner, or `None` after `max_effort` rounds without one (then
/// `fallback` holds the lowest-scoring unavailable candidate seen).
pub(super) fn pick(
    sampler: &Sampler,
    len: usize,
    max_effort: usize,
    rand: &mut dyn FnMut() -> f64,
    score: impl Fn(usize) -> f64,
    available: impl Fn(usize) -> bool,
    fallback: &mut Best,
) -> Option<usize> {
    for _ in 0..max_effort.max(1) {
        let first = sampler.draw(len, rand(), None)?;
        let second = sampler.draw(len, rand(), Some(first));
        let mut best: Best = None;
        for pos in std::iter::once(first).chain(second) {
            let i = sampler.index(pos);
            let s = score(i);
            if available(i) {
                keep_lower(&mut best, s, i);
            } else {
                keep_lower(fallback, s, i);
            }
        }
        if let Some((_, i)) = best {
            return Some(i);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampler(weights: &[f64]) -> Sampler {
        let mut s = Sampler::default();
        s.rebuild(0..weights.len(), |i| weights[i]);
        s
    }

    #[test]
    fn draws_map_uniform_values_onto_weight_intervals() {
        let s = sampler(&[1.0, 0.0, 3.0]);
        assert_eq!(s.draw(3, 0.0, None), Some(0));
        assert_eq!(s.draw(3, 0.24, None), Some(0));
        assert_eq!(s.draw(3, 0.25, None), Some(2));
        assert_eq!(s.draw(3, 0.999_999, None), Some(2));
        // Without replacement: skipping 2 leaves only 0.
        assert_eq!(s.draw(3, 0.9, Some(2)), Some(0));
        assert_eq!(s.draw(3, 0.1, Some(0)), Some(2));
        // A prefix: only the first two entries, of which one has weight.
        assert_eq!(s.draw(2, 0.7, None), Some(0));
        assert_eq!(s.draw(2, 0.7, Some(0)), None);
    }

    #[test]
    fn nothing_to_draw() {
        assert_eq!(sampler(&[]).draw(0, 0.5, None), None);
        assert_eq!(sampler(&[0.0, 0.0]).draw(2, 0.5, None), None);
        assert_eq!(sampler(&[2.0]).draw(1, 0.5, Some(0)), None);
    }

    #[test]
    fn a_value_of_one_does_not_overrun() {
        let s = sampler(&[1.0, 1.0, 0.0]);
        assert_eq!(s.draw(3, 1.0, None), Some(1));
        assert_eq!(s.draw(3, 1.0, Some(1)), Some(0));
    }

    #[test]
    fn unavailable_winner_yields_to_the_other_candidate() {
        let s = sampler(&[1.0, 1.0]);
        let mut r = || 0.0;
        let mut fallback = None;
        // Endpoint 0 scores lower but is unavailable.
        let got = pick(&s, 2, 5, &mut r, |i| i as f64, |i| i == 1, &mut fallback);
        assert_eq!(got, Some(1));
        assert_eq!(fallback, Some((0.0, 0)));
    }
}
