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
    /// Units Redis's last answer left in it (the low 32 bits) and the
    /// store generation of the call (the high 32; 0: no answer yet).
    noted: AtomicU64,
    /// Units taken by requests that went ahead on that note and whose
    /// charge Redis has not answered yet.
    pending: AtomicU32,
}

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
            noted: AtomicU64::new(0),
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
        // At most a burst's refill: 10^6 requests at 0.0001/s, 10^19 ns,
        // within a u64.
        let reset_ns = (missing * 1e9 / self.per_second()) as u64;
        Some(RateState {
            limit,
            remaining,
            reset: Duration::from_nanos(reset_ns),
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

    /// Notes what Redis's answer to a call sent in store generation `era`
    /// (see [`super::Limits`]'s failures) left in it.
    pub(super) fn note(&self, era: u32, remaining: u32) {
        let note = (u64::from(era) << 32) | u64::from(remaining);
        self.noted.store(note, Ordering::Relaxed);
    }

    /// Takes an admission's cost from what Redis's last answer, in store
    /// generation `era`, left in it, less what requests gone ahead on it
    /// took, if at least `headroom` of the burst remains after it (and, for
    /// tokens, any at all): the request may go ahead without waiting for
    /// Redis, its cost pending until [`Self::settled`]; the units left.
    /// A note from an earlier generation (the store failed since) is none.
    pub(super) fn take_room(&self, era: u32, headroom: f64) -> Option<u32> {
        let note = self.noted.load(Ordering::Relaxed);
        if note >> 32 != u64::from(era) {
            return None;
        }
        let noted = note as u32;
        let cost = self.admit_cost();
        let taken = self.pending.fetch_add(cost, Ordering::Relaxed) + cost;
        let floor = (headroom * f64::from(self.burst())).max(f64::from(1 - cost));
        match noted.checked_sub(taken) {
            Some(left) if f64::from(left) >= floor => Some(left),
            _ => {
                self.settled();
                None
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RateLimit;

    fn requests(burst: u32) -> Bucket {
        let limit = RateLimit {
            per_second: 1.0,
            burst,
        };
        Bucket::requests(Scope::ClientRate, limit, "k".into())
    }

    /// Room is taken while the note leaves the headroom after it, and
    /// what a request took is given back when Redis answers its charge.
    #[test]
    fn room_is_taken_down_to_the_headroom_and_given_back_when_settled() {
        let b = requests(10);
        assert_eq!(b.take_room(1, 0.5), None, "no answer noted yet");
        b.note(1, 8);
        assert_eq!(b.take_room(1, 0.5), Some(7));
        assert_eq!(b.take_room(1, 0.5), Some(6));
        assert_eq!(b.take_room(1, 0.5), Some(5));
        // 4 would be left: under half the burst, so it waits, taking nothing.
        assert_eq!(b.take_room(1, 0.5), None);
        assert_eq!(b.pending.load(Ordering::Relaxed), 3);
        b.settled();
        assert_eq!(b.take_room(1, 0.5), Some(5));
        // Headroom 0: down to the last request.
        b.note(1, 1);
        (0..4).for_each(|_| b.settled());
        assert_eq!(b.take_room(1, 0.0), Some(0));
        assert_eq!(b.take_room(1, 0.0), None);
    }

    /// A note from before a store failure lets nothing go ahead.
    #[test]
    fn a_note_from_an_earlier_generation_is_none() {
        let b = requests(10);
        b.note(3, 10);
        assert_eq!(b.take_room(4, 0.0), None);
        assert_eq!(b.pending.load(Ordering::Relaxed), 0);
        assert_eq!(b.take_room(3, 0.0), Some(9));
    }

    /// Tokens cost nothing at admission, but an empty (or indebted)
    /// bucket, noted as 0 left, has no room even at headroom 0.
    #[test]
    fn an_empty_token_bucket_has_no_room() {
        let b = Bucket::tokens(Scope::ClientTokens, 600, "t".into());
        b.note(1, 0);
        assert_eq!(b.take_room(1, 0.0), None);
        b.note(1, 1);
        assert_eq!(b.take_room(1, 0.0), Some(1));
        assert_eq!(b.take_room(1, 0.5), None, "1 of 600 is under half");
    }
}
