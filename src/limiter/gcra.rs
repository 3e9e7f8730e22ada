//! The Generic Cell Rate Algorithm: a smooth limiter with a burst.
//!
//! A policy allows `requests` per `window` as a steady rate (one every `T = window / requests`)
//! and up to `capacity = requests + burst` at once. The state is one number per key, the
//! theoretical arrival time (TAT). A request at `now` with cost `c` is allowed when
//! `max(TAT, now) + c·T − now ≤ τ + T` with `τ = (capacity − 1)·T`; it then moves the TAT to
//! `max(TAT, now) + c·T`. Unlike a fixed window there is no boundary at which twice the budget
//! gets through: spent capacity comes back continuously, one request every `T`.
//! The same steps run in Rust (memory store) and in Lua (Redis store).

/// Times are microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    pub emission_us: i64,
    pub tolerance_us: i64,
    pub capacity: u32,
}

impl Gcra {
    pub fn new(requests: u32, window_secs: u64, burst: u32) -> Gcra {
        let requests = requests.max(1);
        let emission_us = ((window_secs as i64) * 1_000_000 / requests as i64).max(1);
        let capacity = requests + burst;
        Gcra {
            emission_us,
            tolerance_us: emission_us * (capacity as i64 - 1),
            capacity,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub allowed: bool,
    /// The TAT to store (allowed) or the unchanged one (denied).
    pub tat: i64,
    /// The cost the request was charged (allowed) or would have been (denied), in units of
    /// one plain request: more than 1 while the client is penalized.
    pub cost: i64,
}

/// One decision; `stored` is the key's TAT, if any.
pub fn step(g: &Gcra, stored: Option<i64>, now: i64, cost: i64) -> Step {
    let tat = stored.unwrap_or(now).max(now);
    let new_tat = tat + g.emission_us * cost;
    let allow_at = new_tat - g.tolerance_us - g.emission_us;
    if now < allow_at {
        Step {
            allowed: false,
            tat,
            cost,
        }
    } else {
        Step {
            allowed: true,
            tat: new_tat,
            cost,
        }
    }
}

/// What the client is told about its budget after a step, in requests at the cost the step was
/// charged: a client penalized to cost 4 sees a quarter of the limit, and `Retry-After` is the
/// time after which a request *at that cost* is allowed (so waiting it out is enough).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the full capacity is back.
    pub reset_secs: u64,
    /// Seconds until a request would be allowed (0 when allowed).
    pub retry_after_secs: u64,
    basis: Basis,
}

/// The step a quota was computed from, to compute it again at another cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Basis {
    g: Gcra,
    step: Step,
    now: i64,
}

fn ceil_secs(us: i64) -> u64 {
    if us <= 0 {
        0
    } else {
        ((us + 999_999) / 1_000_000) as u64
    }
}

pub fn quota(g: &Gcra, s: Step, now: i64) -> Quota {
    let cost = s.cost.max(1);
    let unit = g.emission_us * cost;
    let limit = (i64::from(g.capacity) / cost).max(1);
    let ahead = (s.tat - now).max(0);
    let remaining = ((g.tolerance_us + g.emission_us - ahead) / unit).clamp(0, limit) as u32;
    let retry_after_secs = if s.allowed {
        0
    } else {
        ceil_secs(s.tat.max(now) + unit - g.tolerance_us - g.emission_us - now).max(1)
    };
    Quota {
        limit: limit as u32,
        remaining: if s.allowed { remaining } else { 0 },
        reset_secs: ceil_secs(ahead),
        retry_after_secs,
        basis: Basis {
            g: *g,
            step: s,
            now,
        },
    }
}

impl Quota {
    /// The same budget told at another cost per request (a penalty that starts with this
    /// very refusal applies to the request that follows it).
    pub fn at_cost(&self, cost: i64) -> Quota {
        let b = self.basis;
        quota(&b.g, Step { cost, ..b.step }, b.now)
    }

    /// The cost per request the figures are given in.
    pub fn cost(&self) -> i64 {
        self.basis.step.cost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_then_steady_rate() {
        let g = Gcra::new(10, 60, 0); // one every 6 s, 10 at once
        let mut tat = None;
        let now = 1_000_000_000;
        for i in 0..10 {
            let s = step(&g, tat, now, 1);
            assert!(s.allowed, "request {i}");
            assert_eq!(quota(&g, s, now).remaining, 9 - i);
            tat = Some(s.tat);
        }
        let denied = step(&g, tat, now, 1);
        assert!(!denied.allowed);
        let q = quota(&g, denied, now);
        assert_eq!((q.remaining, q.retry_after_secs, q.reset_secs), (0, 6, 60));
        // 6 s later exactly one more is allowed.
        assert!(step(&g, tat, now + 6_000_000, 1).allowed);
        assert!(!step(&g, tat, now + 5_999_999, 1).allowed);
        // After a whole window everything is back.
        let s = step(&g, tat, now + 60_000_000, 1);
        assert_eq!(quota(&g, s, now + 60_000_000).remaining, 9);
    }

    #[test]
    fn no_double_budget_at_any_boundary() {
        // Whatever the request times, no 60 s span admits more than capacity + 60/T.
        let g = Gcra::new(10, 60, 0);
        let mut tat = None;
        let mut allowed = Vec::new();
        let start = 0i64;
        for i in 0..2000 {
            let now = start + i * 250_000; // every 0.25 s for 500 s
            let s = step(&g, tat, now, 1);
            if s.allowed {
                tat = Some(s.tat);
                allowed.push(now);
            }
        }
        for (i, &t) in allowed.iter().enumerate() {
            let in_window = allowed[i..]
                .iter()
                .take_while(|&&u| u < t + 60_000_000)
                .count();
            assert!(
                in_window <= 20,
                "at most capacity plus one window's refill, got {in_window}"
            );
        }
    }

    #[test]
    fn burst_adds_capacity_and_cost_multiplies() {
        let g = Gcra::new(100, 900, 50);
        assert_eq!(g.capacity, 150);
        let mut tat = None;
        let mut n = 0;
        while step(&g, tat, 0, 1).allowed {
            tat = Some(step(&g, tat, 0, 1).tat);
            n += 1;
        }
        assert_eq!(n, 150);
        let g = Gcra::new(8, 80, 0);
        let mut tat = None;
        let mut n = 0;
        while step(&g, tat, 0, 4).allowed {
            tat = Some(step(&g, tat, 0, 4).tat);
            n += 1;
        }
        assert_eq!(n, 2, "cost 4 leaves a quarter of the budget");
    }

    #[test]
    fn quotas_are_told_at_the_cost_charged() {
        // 10 per 30 s (one every 3 s); the budget spent at once, then a refusal.
        let g = Gcra::new(10, 30, 0);
        let mut tat = None;
        for _ in 0..10 {
            tat = Some(step(&g, tat, 0, 1).tat);
        }
        let at_one = quota(&g, step(&g, tat, 0, 1), 0);
        assert_eq!(at_one.retry_after_secs, 3);
        let at_four = quota(&g, step(&g, tat, 0, 4), 0);
        assert_eq!(
            (at_four.limit, at_four.retry_after_secs),
            (2, 12),
            "a penalized client waits for four units"
        );
        assert_eq!(at_one.at_cost(4), at_four);
        // Waiting exactly Retry-After is enough, one microsecond less is not.
        assert!(step(&g, tat, 12_000_000, 4).allowed);
        assert!(!step(&g, tat, 11_999_999, 4).allowed);
        // Remaining is counted in requests at the cost charged.
        let fresh = step(&g, None, 0, 4);
        assert_eq!(quota(&g, fresh, 0).remaining, 1);
    }
}
