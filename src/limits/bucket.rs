//! One limit's bucket, wherever it is kept: its local GCRA (the memory
//! store) and its Redis key (the Redis store), until when Redis last
//! called it over, and what Redis's last answer left in it (for
//! `rate_limits.headroom`).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use super::local::{Debt, Limiter};
use super::shared::Ask;
use super::{RateState, Refusal, Refused, Scope};
use crate::config::{RateLimit, SpendLimits};

/// What a bucket counts.
enum Local {
    /// Requests per second: one taken on admission.
    Requests(Limiter),
    /// Tokens per minute: checked on admission, charged after the answer.
    Tokens(Debt),
}

pub(super) struct Bucket {
    pub(super) scope: Scope,
    local: Local,
    /// Its Redis key (hash-tagged), or its name when the store is memory.
    pub(super) key: String,
    /// Nanoseconds after the limits' epoch until which Redis said it is
    /// over; 0: not known to be.
    over_until: AtomicU64,
    /// Units Redis's last answer left in it; [`NO_NOTE`] before one.
    noted: AtomicU32,
    /// Units taken by requests that went ahead on that note and whose
    /// charge Redis has not answered yet.
    pending: AtomicU32,
}

/// No answer from Redis is noted yet: a request waits for one.
const NO_NOTE: u32 = u32::MAX;

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bucket").field("key", &self.key).finish()
    }
}

impl Bucket {
    pub(super) fn requests(scope: Scope, limit: RateLimit, key: String) -> Self {
        Self::new(scope, Local::Requests(Limiter::new(limit)), key)
    }

    pub(super) fn tokens(scope: Scope, per_minute: u32, key: String) -> Self {
        Self::new(scope, Local::Tokens(Debt::new(per_minute)), key)
    }

    fn new(scope: Scope, local: Local, key: String) -> Self {
        Self {
            scope,
            local,
            key,
            over_until: AtomicU64::new(0),
            noted: AtomicU32::new(NO_NOTE),
            pending: AtomicU32::new(0),
        }
    }

    pub(super) fn counts_tokens(&self) -> bool {
        matches!(self.local, Local::Tokens(_))
    }

    /// The most it holds: a burst of requests, or a minute's tokens.
    fn burst(&self) -> u32 {
        match &self.local {
            Local::Requests(l) => l.limit().burst,
            Local::Tokens(d) => d.burst(),
        }
    }

    /// Units refilled per second.
    fn per_second(&self) -> f64 {
        match &self.local {
            Local::Requests(l) => l.limit().per_second,
            Local::Tokens(d) => f64::from(d.burst()) / 60.0,
        }
    }

    pub(super) fn refusal(&self, wait: Duration) -> Refused {
        Refused::Over(Refusal {
            scope: self.scope,
            limit: self.burst(),
            retry_after: wait,
        })
    }

    /// The state for the `x-ratelimit-*` headers: only request buckets,
    /// whose units those headers count.
    pub(super) fn state(&self, remaining: u32) -> Option<RateState> {
        if self.counts_tokens() {
            return None;
        }
        let limit = self.burst();
        let missing = f64::from(limit.saturating_sub(remaining));
        Some(RateState {
            limit,
            remaining,
            reset: Duration::from_secs_f64(missing / self.per_second()),
        })
    }

    /// Admission in this process: the units left, or a refusal.
    pub(super) fn check_locally(&self) -> Result<u32, Refused> {
        let checked = match &self.local {
            Local::Requests(l) => l.check(),
            Local::Tokens(d) => d.check(),
        };
        checked.map_err(|wait| self.refusal(wait))
    }

    /// Charges `tokens` in this process.
    pub(super) fn charge_locally(&self, tokens: u64) {
        if let Local::Tokens(d) = &self.local {
            d.charge(tokens);
        }
    }

    /// What an admission takes: a request, or nothing (tokens are only
    /// checked, and charged after the answer).
    fn admit_cost(&self) -> u32 {
        u32::from(!self.counts_tokens())
    }

    /// Its part of a Redis call: admission (a request, or a check of the
    /// tokens), or `cost` units to charge or refund.
    pub(super) fn ask(&self, cost: Option<u64>) -> Ask<'_> {
        Ask {
            key: &self.key,
            interval_us: 1e6 / self.per_second(),
            burst: self.burst(),
            cost: cost.unwrap_or(u64::from(self.admit_cost())),
        }
    }

    /// Notes what Redis's answer left in it.
    pub(super) fn note(&self, remaining: u32) {
        self.noted
            .store(remaining.min(NO_NOTE - 1), Ordering::Relaxed);
    }

    /// The units an admission would leave by Redis's last answer, less
    /// what requests gone ahead on it have taken, if that is at least
    /// `headroom` of the burst: the request may then go ahead without
    /// waiting for Redis.
    pub(super) fn room(&self, headroom: f64) -> Option<u32> {
        let noted = self.noted.load(Ordering::Relaxed);
        if noted == NO_NOTE {
            return None;
        }
        let taken = self.pending.load(Ordering::Relaxed) + self.admit_cost();
        let left = noted.checked_sub(taken)?;
        (f64::from(left) >= headroom * f64::from(self.burst())).then_some(left)
    }

    /// A request went ahead: its cost is pending until Redis answers.
    pub(super) fn go_ahead(&self) {
        self.pending.fetch_add(self.admit_cost(), Ordering::Relaxed);
    }

    /// Redis answered (or failed) the charge of a request that went ahead.
    pub(super) fn settled(&self) {
        let cost = self.admit_cost();
        let _ = self
            .pending
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| {
                Some(p.saturating_sub(cost))
            });
    }

    /// Refused by the gateway itself, Redis having said so until later.
    pub(super) fn known_over(&self, now: u64) -> Option<Refused> {
        let until = self.over_until.load(Ordering::Relaxed);
        (until > now).then(|| self.refusal(Duration::from_nanos(until - now)))
    }

    /// Notes Redis's word that it is over for `wait` from `now`.
    pub(super) fn over_for(&self, now: u64, wait: Duration) {
        let wait = u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX);
        self.over_until
            .store(now.saturating_add(wait), Ordering::Relaxed);
    }
}

/// The buckets of one limit table: its `rate_limit` and its
/// `tokens_per_minute`.
#[derive(Debug, Default)]
pub(super) struct Buckets {
    pub(super) rate: Option<Bucket>,
    pub(super) tokens: Option<Bucket>,
}

impl Buckets {
    /// `limits` as buckets of group `tag` (`c:web-app`), their keys
    /// `prefix` + `rate` or `tokens`, made by `key(tag, rest)`; `scopes`
    /// for the rate and the tokens.
    pub(super) fn new(
        limits: SpendLimits,
        (tag, prefix): (&str, &str),
        scopes: (Scope, Scope),
        key: &impl Fn(&str, &str) -> String,
    ) -> Self {
        Self {
            rate: limits
                .rate_limit
                .map(|l| Bucket::requests(scopes.0, l, key(tag, &format!("{prefix}rate")))),
            tokens: limits
                .tokens_per_minute
                .map(|t| Bucket::tokens(scopes.1, t, key(tag, &format!("{prefix}tokens")))),
        }
    }
}
