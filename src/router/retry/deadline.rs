//! The request deadline and its header, `l5d-ctx-deadline`.
//!
//! A deadline is Finagle's pair of wall-clock instants: `timestamp`, when the deadline
//! was set, and `deadline`, when the request must be answered by. On the wire both are
//! nanoseconds since the Unix epoch in decimal, separated by a space:
//! `l5d-ctx-deadline: 1700000000000000000 1700000000250000000`.
//!
//! An inbound request may carry several deadlines (repeated headers, or values joined by
//! commas as proxies may fold them). They are combined the way Finagle combines
//! deadlines: the latest timestamp and the **earliest** deadline, so the strictest wins.
//! A configured `totalTimeoutMs` adds one more, `now + totalTimeout`, combined the same
//! way; the result is what the request may use and what Plexus forwards.
//!
//! The deadline is advisory context, so a value that does not parse is **ignored, not an
//! error**: the request goes on as if that value were absent. A value parses when it is
//! two runs of ASCII digits (each at most `i64::MAX`, Java's `long`) separated by spaces,
//! with optional surrounding spaces or tabs; signs, extra fields and anything else do
//! not.
//!
//! Nothing here reads a clock: `now` is a [`SystemTime`] the caller passes in.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The largest value Finagle (a Java `long`) can send or read.
const MAX_NANOS: u64 = i64::MAX as u64;

/// A deadline: when it was set and when the request must be answered by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Deadline {
    timestamp: SystemTime,
    deadline: SystemTime,
}

impl Deadline {
    /// A deadline set at `timestamp`, due at `deadline`.
    pub fn new(timestamp: SystemTime, deadline: SystemTime) -> Deadline {
        Deadline {
            timestamp,
            deadline,
        }
    }

    /// A deadline set `now`, due `timeout` later (a `totalTimeoutMs`).
    pub fn from_timeout(now: SystemTime, timeout: Duration) -> Deadline {
        let deadline = now
            .checked_add(timeout)
            .unwrap_or_else(|| from_nanos(MAX_NANOS));
        Deadline::new(now, deadline)
    }

    /// When the deadline was set.
    pub fn timestamp(&self) -> SystemTime {
        self.timestamp
    }

    /// When the request must be answered by.
    pub fn deadline(&self) -> SystemTime {
        self.deadline
    }

    /// The stricter of two deadlines (Finagle's `Deadline.combined`): the later timestamp
    /// and the earlier deadline.
    pub fn combine(self, other: Deadline) -> Deadline {
        Deadline {
            timestamp: self.timestamp.max(other.timestamp),
            deadline: self.deadline.min(other.deadline),
        }
    }

    /// This deadline tightened by a `totalTimeoutMs` starting `now`.
    pub fn with_timeout(self, now: SystemTime, timeout: Duration) -> Deadline {
        self.combine(Deadline::from_timeout(now, timeout))
    }

    /// The deadline of a request: the inbound one (if any) tightened by the configured
    /// total timeout (if any) starting `now`. `None` when there is neither.
    pub fn effective(
        inbound: Option<Deadline>,
        now: SystemTime,
        total_timeout: Option<Duration>,
    ) -> Option<Deadline> {
        let configured = total_timeout.map(|t| Deadline::from_timeout(now, t));
        match (inbound, configured) {
            (Some(a), Some(b)) => Some(a.combine(b)),
            (a, b) => a.or(b),
        }
    }

    /// A request's deadline as it starts, from the one it carries and the configured
    /// total timeout ([`Deadline::effective`]), with the time it has left
    /// ([`Deadline::remaining`]: `None` if it has passed). `None` when it has no
    /// deadline; only then is the wall clock not read, which is most requests.
    pub fn starting(
        inbound: Option<Deadline>,
        total_timeout: Option<Duration>,
    ) -> Option<(Deadline, Option<Duration>)> {
        if inbound.is_none() && total_timeout.is_none() {
            return None;
        }
        let now = SystemTime::now();
        Deadline::effective(inbound, now, total_timeout).map(|d| (d, d.remaining(now)))
    }

    /// Time left until the deadline; `None` once it has passed (at `now == deadline` too).
    pub fn remaining(&self, now: SystemTime) -> Option<Duration> {
        self.deadline
            .duration_since(now)
            .ok()
            .filter(|left| !left.is_zero())
    }

    /// Time left until the deadline, zero once it has passed.
    pub fn time_left(&self, now: SystemTime) -> Duration {
        self.remaining(now).unwrap_or(Duration::ZERO)
    }

    /// Whether the deadline has passed at `now`.
    pub fn is_expired(&self, now: SystemTime) -> bool {
        self.remaining(now).is_none()
    }

    /// The header value to forward: `<timestamp_ns> <deadline_ns>`.
    ///
    /// Both instants are written as they are, as Finagle forwards the deadline context
    /// unchanged; the downstream computes what is left from its own clock. Instants
    /// before the epoch are written as 0 and ones past `i64::MAX` ns (year 2262) as that.
    pub fn encode(&self) -> String {
        format!("{} {}", to_nanos(self.timestamp), to_nanos(self.deadline))
    }
}

/// The strictest deadline among header values; values that do not parse are ignored.
/// `None` when no value parses.
pub fn parse<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Option<Deadline> {
    values
        .into_iter()
        .flat_map(|value| value.split(|&b| b == b','))
        .filter_map(parse_one)
        .reduce(Deadline::combine)
}

/// One deadline, `<timestamp_ns> <deadline_ns>`; `None` when it does not parse.
pub fn parse_one(value: &[u8]) -> Option<Deadline> {
    let value = trim_ows(value);
    let mut fields = value.split(|&b| b == b' ').filter(|f| !f.is_empty());
    let timestamp = nanos(fields.next()?)?;
    let deadline = nanos(fields.next()?)?;
    if fields.next().is_some() {
        return None;
    }
    Some(Deadline::new(from_nanos(timestamp), from_nanos(deadline)))
}

/// Strips spaces and tabs (HTTP's optional whitespace) from both ends.
fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// Decimal digits only, at most `i64::MAX`.
fn nanos(field: &[u8]) -> Option<u64> {
    if field.is_empty() || !field.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(field).ok()?.parse().ok()?;
    (n <= MAX_NANOS).then_some(n)
}

fn from_nanos(n: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(n)
}

fn to_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| {
            u64::try_from(d.as_nanos())
                .unwrap_or(MAX_NANOS)
                .min(MAX_NANOS)
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixed "now": 2023-11-14T22:13:20Z.
    const NOW_NS: u64 = 1_700_000_000_000_000_000;

    fn at(ns: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(ns)
    }

    fn ms(m: u64) -> Duration {
        Duration::from_millis(m)
    }

    fn header(ts: u64, dl: u64) -> String {
        format!("{ts} {dl}")
    }

    fn parse_strs(values: &[&str]) -> Option<Deadline> {
        parse(values.iter().map(|v| v.as_bytes()))
    }

    #[test]
    fn parses_one_value() {
        let d = parse_strs(&["1700000000000000000 1700000000250000000"]).unwrap();
        assert_eq!(d.timestamp(), at(NOW_NS));
        assert_eq!(d.deadline(), at(NOW_NS + 250_000_000));
        assert_eq!(parse_one(b" \t1 2\t "), Some(Deadline::new(at(1), at(2))));
        assert_eq!(parse_one(b"1   2"), Some(Deadline::new(at(1), at(2))));
    }

    #[test]
    fn the_strictest_of_several_wins() {
        let values = [
            header(NOW_NS, NOW_NS + 900),
            header(NOW_NS + 5, NOW_NS + 300),
            header(NOW_NS - 5, NOW_NS + 600),
        ];
        let d = parse(values.iter().map(|v| v.as_bytes())).unwrap();
        assert_eq!(d, Deadline::new(at(NOW_NS + 5), at(NOW_NS + 300)));
        // Comma-folded values count the same as repeated headers.
        let folded = format!("{}, {}", values[0], values[1]);
        assert_eq!(
            parse_strs(&[&folded]),
            Some(Deadline::new(at(NOW_NS + 5), at(NOW_NS + 300)))
        );
    }

    #[test]
    fn garbage_is_ignored() {
        for bad in [
            "",
            " ",
            "1",
            "1 2 3",
            "a b",
            "1 b",
            "-1 2",
            "+1 2",
            "1.0 2",
            "1\t2",
            "1 99999999999999999999",
            "1 9223372036854775808",
        ] {
            assert_eq!(parse_one(bad.as_bytes()), None, "{bad:?}");
            assert_eq!(parse_strs(&[bad]), None, "{bad:?}");
        }
        assert_eq!(parse_one(b"\xff\xfe 1"), None);
        // A good value survives bad ones around it.
        let good = header(NOW_NS, NOW_NS + 100);
        assert_eq!(
            parse_strs(&["junk", &good, "1 2 3", "x,"]),
            Some(Deadline::new(at(NOW_NS), at(NOW_NS + 100)))
        );
        assert_eq!(parse_strs(&[]), None);
        assert_eq!(
            parse_one(b"0 9223372036854775807"),
            Some(Deadline::new(at(0), at(i64::MAX as u64)))
        );
    }

    #[test]
    fn combine_with_a_total_timeout() {
        let now = at(NOW_NS);
        let inbound = Deadline::new(at(NOW_NS - 1_000), now + ms(300));
        // The configured timeout is tighter.
        let d = inbound.with_timeout(now, ms(100));
        assert_eq!(d, Deadline::new(now, now + ms(100)));
        // The inbound deadline is tighter.
        let d = inbound.with_timeout(now, ms(500));
        assert_eq!(d, Deadline::new(now, now + ms(300)));
        assert_eq!(
            Deadline::effective(Some(inbound), now, Some(ms(100))),
            Some(Deadline::new(now, now + ms(100)))
        );
        assert_eq!(Deadline::effective(Some(inbound), now, None), Some(inbound));
        assert_eq!(
            Deadline::effective(None, now, Some(ms(100))),
            Some(Deadline::new(now, now + ms(100)))
        );
        assert_eq!(Deadline::effective(None, now, None), None);
        // Combining is symmetric.
        let other = Deadline::from_timeout(now, ms(100));
        assert_eq!(inbound.combine(other), other.combine(inbound));
    }

    #[test]
    fn a_request_starts_with_its_deadline_and_the_time_left() {
        assert_eq!(Deadline::starting(None, None), None);
        let (d, left) = Deadline::starting(None, Some(ms(60_000))).expect("a deadline");
        let left = left.expect("time left");
        assert!(left > ms(0) && left <= ms(60_000), "{left:?}");
        assert!(d.deadline() > SystemTime::now());
        let late = parse_one(header(NOW_NS - 10, NOW_NS - 5).as_bytes()).unwrap();
        assert_eq!(
            Deadline::starting(Some(late), None),
            Some((late, None)),
            "passed on arrival"
        );
        // The stricter of the two.
        let (d, _) = Deadline::starting(Some(late), Some(ms(60_000))).expect("a deadline");
        assert_eq!(d.deadline(), late.deadline());
    }

    #[test]
    fn remaining_time() {
        let now = at(NOW_NS);
        let d = Deadline::from_timeout(now, ms(250));
        assert_eq!(d.remaining(now), Some(ms(250)));
        assert_eq!(d.remaining(now + ms(200)), Some(ms(50)));
        assert_eq!(d.remaining(now + ms(250)), None);
        assert_eq!(d.remaining(now + ms(900)), None);
        assert_eq!(d.time_left(now + ms(900)), Duration::ZERO);
        assert_eq!(d.time_left(now + ms(100)), ms(150));
        assert!(!d.is_expired(now + ms(249)));
        assert!(d.is_expired(now + ms(250)));
        // Already expired on arrival.
        let late = parse_one(header(NOW_NS - 10, NOW_NS - 5).as_bytes()).unwrap();
        assert!(late.is_expired(now));
    }

    #[test]
    fn encode_parse_round_trip() {
        let now = at(NOW_NS + 123);
        let d = Deadline::new(now, now + ms(250));
        assert_eq!(d.encode(), "1700000000000000123 1700000000250000123");
        assert_eq!(parse_one(d.encode().as_bytes()), Some(d));
        for (ts, dl) in [(0, 0), (1, u64::MAX >> 1), (NOW_NS, NOW_NS - 1)] {
            let d = Deadline::new(at(ts), at(dl));
            assert_eq!(parse_one(d.encode().as_bytes()), Some(d));
        }
    }

    #[test]
    fn encode_clamps_out_of_range_instants() {
        let before_epoch = UNIX_EPOCH - Duration::from_secs(1);
        let d = Deadline::new(before_epoch, at(5));
        assert_eq!(d.encode(), "0 5");
        if let Some(far) = UNIX_EPOCH.checked_add(Duration::from_secs(400 * 365 * 86_400)) {
            let d = Deadline::new(at(1), far);
            assert_eq!(d.encode(), format!("1 {}", i64::MAX));
        }
    }
}
