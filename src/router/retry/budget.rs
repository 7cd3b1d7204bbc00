//! The retry budget of Finagle and Linkerd 1.x (`retries.budget`, `requeueBudget`).
//!
//! Every request *deposits* into the budget and every retry *withdraws* from it. A
//! withdrawal succeeds only while the withdrawals of the last `ttl` stay within
//! `percentCanRetry` of the deposits of the last `ttl`, plus a reserve of
//! `minRetriesPerSec × ttl` retries that lets a quiet or just-started client retry at
//! all. Over any window of `ttl` the budget therefore allows at most
//! `deposits × percentCanRetry + minRetriesPerSec × ttlSecs` retries: retries add at most
//! that share of load, however badly the servers fail.
//!
//! The window slides in ten slots of `ttl / 10` (one second with the default ten-second
//! ttl), as Finagle's windowed adder does: deposits and withdrawals older than the ten
//! most recent slots are forgotten together, so the window covers between `0.9 × ttl`
//! and `ttl` of history. The arithmetic is exact integers: `percentCanRetry` is kept in
//! parts per million, where Finagle rounds `1000 / percentCanRetry` to whole tokens.
//!
//! [`RetryBudget`] is a plain single-owner struct (`&mut self`); a budget shared by the
//! workers of a service goes behind the caller's lock. No method reads the clock: each
//! takes `now`, and the first call fixes where the slots start.

use std::fmt;
use std::time::{Duration, Instant};

/// Number of slots the window is cut into.
const SLOTS: usize = 10;
/// `percentCanRetry` is stored in millionths.
const PPM: u64 = 1_000_000;

/// Why a budget configuration was refused.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BudgetError {
    /// `ttlSecs` outside 1..=60 seconds (Finagle's bounds).
    Ttl(Duration),
    /// `percentCanRetry` not a number in 0..=1000.
    PercentCanRetry(f64),
}

impl fmt::Display for BudgetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BudgetError::Ttl(ttl) => write!(f, "ttl must be between 1 and 60 seconds: {ttl:?}"),
            BudgetError::PercentCanRetry(p) => {
                write!(f, "percentCanRetry must be between 0 and 1000: {p}")
            }
        }
    }
}

impl std::error::Error for BudgetError {}

/// One slot of the window: what happened during one `ttl / 10`.
#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    /// Which slot period (counted from the budget's origin) these counts belong to.
    period: u64,
    deposits: u64,
    withdrawals: u64,
}

/// Deposits and withdrawals summed over the live slots.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Totals {
    deposits: u64,
    withdrawals: u64,
}

/// A retry budget: requests deposit, retries withdraw, over a sliding window of `ttl`.
///
/// ```
/// use std::time::{Duration, Instant};
/// use plexus::router::retry::RetryBudget;
///
/// // No reserve, one retry per two requests.
/// let mut budget = RetryBudget::new(Duration::from_secs(10), 0, 0.5).unwrap();
/// let now = Instant::now();
/// budget.deposit(now);
/// assert!(!budget.try_withdraw(now)); // half a retry is not a retry
/// budget.deposit(now);
/// assert!(budget.try_withdraw(now));
/// assert!(!budget.try_withdraw(now));
/// ```
#[derive(Clone, Debug)]
pub struct RetryBudget {
    ttl: Duration,
    min_retries_per_sec: u32,
    percent_can_retry: f64,
    /// `percent_can_retry` in millionths (at most 10⁹).
    percent_ppm: u64,
    /// Retries allowed on top of the deposits: `min_retries_per_sec × ttl` (whole seconds).
    reserve: u64,
    /// `ttl / SLOTS`, in nanoseconds.
    slot_nanos: u64,
    /// Where slot period 0 starts; set by the first call.
    origin: Option<Instant>,
    /// The most recent period seen, so an older `now` never rewinds the window.
    latest: u64,
    /// When the latest period ends. Every request deposits and most read the balance:
    /// a `now` before this is in the latest period, found without a division.
    latest_end: Option<Instant>,
    /// The slots' sum over the window that ends with the latest period, kept as
    /// deposits and withdrawals come, and summed again when the window moves: the
    /// balance is read without going over the slots.
    window: Totals,
    slots: [Slot; SLOTS],
}

impl Default for RetryBudget {
    /// Linkerd's default: ttl 10 s, 10 retries per second in reserve, 20 % of requests.
    fn default() -> Self {
        RetryBudget::new(Duration::from_secs(10), 10, 0.2).expect("default budget is valid")
    }
}

impl RetryBudget {
    /// A budget with Linkerd's `ttlSecs`, `minRetriesPerSec` and `percentCanRetry`.
    ///
    /// `ttl` must be 1 to 60 seconds and `percent_can_retry` 0 to 1000 (both Finagle's
    /// bounds); the reserve counts whole seconds of `ttl`. With both `min_retries_per_sec`
    /// and `percent_can_retry` zero the budget never allows a retry.
    pub fn new(
        ttl: Duration,
        min_retries_per_sec: u32,
        percent_can_retry: f64,
    ) -> Result<RetryBudget, BudgetError> {
        if ttl < Duration::from_secs(1) || ttl > Duration::from_secs(60) {
            return Err(BudgetError::Ttl(ttl));
        }
        if !(0.0..=1000.0).contains(&percent_can_retry) {
            // Also refuses NaN.
            return Err(BudgetError::PercentCanRetry(percent_can_retry));
        }
        Ok(RetryBudget {
            ttl,
            min_retries_per_sec,
            percent_can_retry,
            percent_ppm: (percent_can_retry * PPM as f64).round() as u64,
            reserve: u64::from(min_retries_per_sec) * ttl.as_secs(),
            slot_nanos: u64::try_from((ttl / SLOTS as u32).as_nanos()).unwrap_or(u64::MAX),
            origin: None,
            latest: 0,
            latest_end: None,
            window: Totals::default(),
            slots: [Slot::default(); SLOTS],
        })
    }

    /// How long deposits and withdrawals count.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The configured `minRetriesPerSec`.
    pub fn min_retries_per_sec(&self) -> u32 {
        self.min_retries_per_sec
    }

    /// The configured `percentCanRetry`.
    pub fn percent_can_retry(&self) -> f64 {
        self.percent_can_retry
    }

    /// `percentCanRetry` in millionths, as the budget computes with it.
    pub fn percent_can_retry_ppm(&self) -> u64 {
        self.percent_ppm
    }

    /// Retries allowed without any deposit: `minRetriesPerSec × ttl` in whole seconds.
    pub fn reserve(&self) -> u64 {
        self.reserve
    }

    /// Records a request. Call once per request, not per attempt.
    pub fn deposit(&mut self, now: Instant) {
        let slot = self.current_slot(now);
        slot.deposits = slot.deposits.saturating_add(1);
        self.window.deposits = self.window.deposits.saturating_add(1);
    }

    /// Takes one retry out of the budget if the budget allows it; returns whether it did.
    /// A refused withdrawal leaves the budget unchanged.
    pub fn try_withdraw(&mut self, now: Instant) -> bool {
        self.current_slot(now);
        if self.allowance(self.window) < 1 {
            return false;
        }
        let slot = self.current_slot(now);
        slot.withdrawals += 1;
        self.window.withdrawals += 1;
        true
    }

    /// How many retries the budget would allow now (the `retries/budget` gauge).
    pub fn balance(&self, now: Instant) -> u64 {
        let period = match self.origin {
            Some(origin) => self.period_at(origin, now),
            None => 0,
        };
        let totals = if period == self.latest {
            self.window
        } else {
            self.totals(period)
        };
        self.allowance(totals)
    }

    /// Whole retries left: `⌊deposits × percent + reserve⌋ − withdrawals`, at least 0.
    /// The reserve and the withdrawals are whole retries, so only the deposits' share
    /// is rounded down.
    fn allowance(&self, totals: Totals) -> u64 {
        let earned = match totals.deposits.checked_mul(self.percent_ppm) {
            Some(millionths) => millionths / PPM,
            None => {
                let exact = u128::from(totals.deposits) * u128::from(self.percent_ppm);
                u64::try_from(exact / u128::from(PPM)).unwrap_or(u64::MAX)
            }
        };
        earned
            .saturating_add(self.reserve)
            .saturating_sub(totals.withdrawals)
    }

    /// The slot period `now` falls in, counted from `origin`, and never before the
    /// latest one seen: without a division while `now` is before the latest period's
    /// end.
    fn period_at(&self, origin: Instant, now: Instant) -> u64 {
        if self.in_latest_period(now) {
            self.latest
        } else {
            self.period_of(origin, now)
        }
    }

    /// Whether `now` is before the latest period's end (then it counts in that period).
    fn in_latest_period(&self, now: Instant) -> bool {
        self.latest_end.is_some_and(|end| now < end)
    }

    /// The slot period `now` falls in, by division, and never before the latest one.
    fn period_of(&self, origin: Instant, now: Instant) -> u64 {
        let elapsed = u64::try_from(now.saturating_duration_since(origin).as_nanos());
        (elapsed.unwrap_or(u64::MAX) / self.slot_nanos).max(self.latest)
    }

    /// The slot for `now`, cleared if it last held an older period. A `now` earlier than
    /// one already seen counts in the latest period.
    fn current_slot(&mut self, now: Instant) -> &mut Slot {
        let origin = *self.origin.get_or_insert(now);
        if !self.in_latest_period(now) {
            let period = self.period_of(origin, now);
            self.latest = period;
            let slot = &mut self.slots[(period % SLOTS as u64) as usize];
            if slot.period != period {
                *slot = Slot {
                    period,
                    ..Slot::default()
                };
            }
            self.window = self.totals(period);
            let end = self.slot_nanos.saturating_mul(period.saturating_add(1));
            self.latest_end = origin.checked_add(Duration::from_nanos(end));
        }
        &mut self.slots[(self.latest % SLOTS as u64) as usize]
    }

    /// Sums the slots still inside the window that ends with `period`.
    fn totals(&self, period: u64) -> Totals {
        self.slots
            .iter()
            .filter(|s| s.period <= period && period - s.period < SLOTS as u64)
            .fold(Totals::default(), |t, s| Totals {
                deposits: t.deposits.saturating_add(s.deposits),
                withdrawals: t.withdrawals.saturating_add(s.withdrawals),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn ms(m: u64) -> Duration {
        Duration::from_millis(m)
    }

    /// Withdraws until refused; returns how many succeeded.
    fn drain(b: &mut RetryBudget, now: Instant) -> u64 {
        let mut n = 0;
        while b.try_withdraw(now) {
            n += 1;
            assert!(n < 1_000_000, "budget never ran out");
        }
        n
    }

    #[test]
    fn config_bounds() {
        assert!(RetryBudget::new(secs(1), 0, 0.0).is_ok());
        assert!(RetryBudget::new(secs(60), 0, 1000.0).is_ok());
        assert_eq!(
            RetryBudget::new(ms(999), 10, 0.2).unwrap_err(),
            BudgetError::Ttl(ms(999))
        );
        assert!(RetryBudget::new(secs(61), 10, 0.2).is_err());
        assert!(RetryBudget::new(secs(10), 10, -0.1).is_err());
        assert!(RetryBudget::new(secs(10), 10, 1000.5).is_err());
        assert!(RetryBudget::new(secs(10), 10, f64::NAN).is_err());
        let d = RetryBudget::default();
        assert_eq!(
            (d.ttl(), d.min_retries_per_sec(), d.percent_can_retry()),
            (secs(10), 10, 0.2)
        );
        assert_eq!(d.reserve(), 100);
        assert_eq!(d.percent_can_retry_ppm(), 200_000);
    }

    #[test]
    fn reserve_alone_on_a_fresh_budget() {
        let t0 = Instant::now();
        let mut b = RetryBudget::default();
        assert_eq!(b.balance(t0), 100);
        assert_eq!(drain(&mut b, t0), 100);
        assert_eq!(b.balance(t0), 0);
    }

    #[test]
    fn deposits_add_percent_on_top_of_reserve() {
        let t0 = Instant::now();
        // Reserve 2 × 10 = 20, plus 20 % of 50 deposits = 10.
        let mut b = RetryBudget::new(secs(10), 2, 0.2).unwrap();
        for _ in 0..50 {
            b.deposit(t0);
        }
        assert_eq!(b.balance(t0), 30);
        assert_eq!(drain(&mut b, t0), 30);
        // Four more deposits are 0.8 of a retry: not enough; the fifth makes one.
        for _ in 0..4 {
            b.deposit(t0);
        }
        assert!(!b.try_withdraw(t0));
        b.deposit(t0);
        assert!(b.try_withdraw(t0));
        assert!(!b.try_withdraw(t0));
    }

    #[test]
    fn percent_above_one_allows_several_retries_per_request() {
        let t0 = Instant::now();
        let mut b = RetryBudget::new(secs(10), 0, 2.5).unwrap();
        b.deposit(t0);
        b.deposit(t0);
        assert_eq!(b.balance(t0), 5);
        assert_eq!(drain(&mut b, t0), 5);
    }

    #[test]
    fn percent_zero_leaves_only_the_reserve() {
        let t0 = Instant::now();
        let mut b = RetryBudget::new(secs(10), 1, 0.0).unwrap();
        for _ in 0..1000 {
            b.deposit(t0);
        }
        assert_eq!(drain(&mut b, t0), 10);
        for _ in 0..1000 {
            b.deposit(t0 + ms(500));
        }
        assert!(!b.try_withdraw(t0 + ms(500)));
    }

    #[test]
    fn empty_budget_never_retries() {
        let t0 = Instant::now();
        let mut b = RetryBudget::new(secs(10), 0, 0.0).unwrap();
        for _ in 0..100 {
            b.deposit(t0);
        }
        assert_eq!(b.balance(t0), 0);
        assert!(!b.try_withdraw(t0));
    }

    #[test]
    fn deposits_expire_after_ttl() {
        let t0 = Instant::now();
        let mut b = RetryBudget::new(secs(10), 0, 1.0).unwrap();
        for _ in 0..10 {
            b.deposit(t0);
        }
        // Still inside the window just before the tenth slot after t0 begins.
        assert_eq!(b.balance(t0 + ms(9_999)), 10);
        // Once t0's slot leaves the window, so do its deposits.
        assert_eq!(b.balance(t0 + secs(10)), 0);
        assert!(!b.try_withdraw(t0 + secs(10)));
    }

    #[test]
    fn window_slides_slot_by_slot() {
        let t0 = Instant::now();
        let mut b = RetryBudget::new(secs(10), 0, 1.0).unwrap();
        for s in 0..10 {
            b.deposit(t0 + secs(s));
        }
        assert_eq!(b.balance(t0 + secs(9)), 10);
        assert_eq!(b.balance(t0 + secs(12)), 7);
        assert_eq!(b.balance(t0 + secs(19)), 0);
    }

    #[test]
    fn withdrawals_expire_and_the_reserve_refills() {
        let t0 = Instant::now();
        let mut b = RetryBudget::new(secs(10), 1, 0.2).unwrap();
        assert_eq!(drain(&mut b, t0), 10);
        assert!(!b.try_withdraw(t0 + secs(9)));
        assert_eq!(b.balance(t0 + secs(10)), 10);
        assert_eq!(drain(&mut b, t0 + secs(10)), 10);
    }

    #[test]
    fn withdrawals_outlive_older_deposits() {
        let t0 = Instant::now();
        // Deposits at t0 pay for retries at t0 + 5 s; when the deposits expire the
        // withdrawals still count until their own slot leaves the window.
        let mut b = RetryBudget::new(secs(10), 0, 1.0).unwrap();
        for _ in 0..5 {
            b.deposit(t0);
        }
        assert_eq!(drain(&mut b, t0 + secs(5)), 5);
        for _ in 0..5 {
            b.deposit(t0 + secs(11));
        }
        assert_eq!(b.balance(t0 + secs(11)), 0);
        assert_eq!(b.balance(t0 + secs(15)), 5);
    }

    #[test]
    fn an_earlier_now_counts_in_the_latest_slot() {
        let t0 = Instant::now();
        let mut b = RetryBudget::new(secs(10), 0, 1.0).unwrap();
        b.deposit(t0);
        b.deposit(t0 + secs(20));
        // A caller that read the clock before another one took the lock: its deposit
        // lands in the latest slot instead of an expired one.
        b.deposit(t0 + secs(5));
        assert_eq!(b.balance(t0 + secs(20)), 2);
        assert_eq!(b.balance(t0 + secs(29)), 2);
        assert_eq!(b.balance(t0 + secs(30)), 0);
    }

    #[test]
    fn fractional_percent_is_exact() {
        let t0 = Instant::now();
        let mut b = RetryBudget::new(secs(10), 0, 0.3).unwrap();
        for _ in 0..10 {
            b.deposit(t0);
        }
        assert_eq!(b.balance(t0), 3);
        for _ in 0..3 {
            b.deposit(t0);
        }
        assert_eq!(b.balance(t0), 3); // 3.9
        b.deposit(t0);
        assert_eq!(b.balance(t0), 4); // 4.2
    }

    #[derive(Clone, Debug)]
    enum Op {
        Deposit,
        Withdraw,
    }

    /// The balance summed afresh from the slots, with the period found by division and
    /// the allowance in 128 bits: what the kept window, the latest period's end and the
    /// 64-bit allowance must agree with.
    fn summed_balance(b: &RetryBudget, now: Instant) -> u64 {
        let period = match b.origin {
            Some(origin) => {
                let elapsed = now.saturating_duration_since(origin).as_nanos();
                let period = elapsed / (b.ttl / SLOTS as u32).as_nanos();
                u64::try_from(period).unwrap().max(b.latest)
            }
            None => 0,
        };
        let totals = b.totals(period);
        let unit = u128::from(PPM);
        let credit =
            u128::from(totals.deposits) * u128::from(b.percent_ppm) + u128::from(b.reserve) * unit;
        let debit = u128::from(totals.withdrawals) * unit;
        u64::try_from(credit.saturating_sub(debit) / unit).unwrap()
    }

    /// Budget settings for the property tests: ttl 1 to 5 s, 0 to 3 retries per
    /// second in reserve, 0 to 300 % of requests.
    fn settings() -> impl Strategy<Value = (Duration, u32, f64)> {
        (1u64..=5, 0u32..=3, 0u32..=300)
            .prop_map(|(ttl, min, pct)| (secs(ttl), min, f64::from(pct) / 100.0))
    }

    proptest! {
        /// The balance read from the kept window equals the slots summed afresh, now
        /// and later, whatever the order of the clock readings; a withdrawal succeeds
        /// exactly when that balance is at least one.
        #[test]
        fn the_kept_window_is_the_sum_of_the_slots(
            (ttl, min_retries, percent) in settings(),
            ops in prop::collection::vec(
                (-300i64..1200, prop_oneof![Just(Op::Deposit), Just(Op::Withdraw)]),
                1..300,
            ),
        ) {
            let mut b = RetryBudget::new(ttl, min_retries, percent).unwrap();
            let t0 = Instant::now() + secs(60);
            let mut t = t0;
            for (step_ms, op) in ops {
                // Mostly forward; sometimes a reading older than one already seen.
                t = if step_ms < 0 {
                    t.checked_sub(ms(step_ms.unsigned_abs())).unwrap_or(t0)
                } else {
                    t + ms(step_ms.unsigned_abs())
                };
                match op {
                    Op::Deposit => b.deposit(t),
                    Op::Withdraw => {
                        let allowed = summed_balance(&b, t) >= 1;
                        prop_assert_eq!(b.try_withdraw(t), allowed);
                    }
                }
                for later in [0, 90, 950, 4_000, 12_000] {
                    let at = t + ms(later);
                    prop_assert_eq!(b.balance(at), summed_balance(&b, at), "{} ms on", later);
                }
            }
        }

        /// Whenever a withdrawal succeeds at `t`, the withdrawals of the last
        /// `ttl − ttl/10` (all still in the window) are within `percent` of the deposits
        /// of the last `ttl`, plus the reserve.
        #[test]
        fn never_more_retries_than_deposits_times_percent_plus_reserve(
            (ttl, min_retries, percent) in settings(),
            ops in prop::collection::vec(
                (0u64..1500, prop_oneof![Just(Op::Deposit), Just(Op::Withdraw)]),
                1..400,
            ),
        ) {
            let mut b = RetryBudget::new(ttl, min_retries, percent).unwrap();
            let ppm = u128::from(b.percent_can_retry_ppm());
            let reserve = u128::from(b.reserve());
            let unit = u128::from(PPM);
            let slot = ttl / 10;
            let t0 = Instant::now();
            let mut t = t0;
            let mut deposits: Vec<Instant> = Vec::new();
            let mut withdrawals: Vec<Instant> = Vec::new();
            for (advance_ms, op) in ops {
                t += ms(advance_ms);
                match op {
                    Op::Deposit => {
                        b.deposit(t);
                        deposits.push(t);
                    }
                    Op::Withdraw => {
                        if b.try_withdraw(t) {
                            withdrawals.push(t);
                            let recent_w = withdrawals
                                .iter()
                                .filter(|&&w| t.duration_since(w) <= ttl - slot)
                                .count() as u128;
                            let recent_d = deposits
                                .iter()
                                .filter(|&&d| t.duration_since(d) < ttl)
                                .count() as u128;
                            prop_assert!(
                                recent_w * unit <= recent_d * ppm + reserve * unit,
                                "{} withdrawals against {} deposits", recent_w, recent_d
                            );
                        }
                    }
                }
            }
        }
    }
}
