//! The route's balancer as the dispatcher uses it: one request's
//! eligibility rules, its random source, and the in-flight slot of the
//! backend it chose last.
//!
//! The slot is taken when the backend is picked, before any backoff, so a
//! saturated backend is known as such before waiting for it; the attempt
//! then takes the slot over. The random source is the request's own and can
//! be seeded, so a test knows every draw.

use tokio::time::Instant;

use super::policy::Next;
use super::session::Eligible;
use crate::route::balancer::{self, Pick};
use crate::route::health::InFlight;
use crate::route::Route;

/// Picks backends for one request.
pub(crate) struct Picker<'r> {
    route: &'r Route,
    eligible: Eligible,
    rng: fastrand::Rng,
    /// The slot of the backend [`Next::pick`] chose, until the attempt
    /// takes it.
    held: Option<InFlight>,
}

impl<'r> Picker<'r> {
    pub(crate) fn new(route: &'r Route, eligible: Eligible, rng: fastrand::Rng) -> Self {
        Self {
            route,
            eligible,
            rng,
            held: None,
        }
    }

    /// A backend allowed by the request's rules, and untried when
    /// `untried_only`, from the route's balancer.
    pub(crate) fn choose(&mut self, tried: &[usize], untried_only: bool, now: Instant) -> Pick {
        let (route, eligible) = (self.route, self.eligible);
        let allowed = |i: usize| eligible.allows(route, i) && !(untried_only && tried.contains(&i));
        balancer::pick(
            route.balance,
            &route.pool,
            tried,
            &allowed,
            now,
            &mut self.rng,
        )
    }

    /// The slot of the backend last chosen through [`Next::pick`].
    pub(crate) fn take_slot(&mut self) -> Option<InFlight> {
        self.held.take()
    }
}

impl Next for Picker<'_> {
    fn pick(&mut self, tried: &[usize], untried_only: bool, now: Instant) -> Option<usize> {
        match self.choose(tried, untried_only, now) {
            Pick::Chosen { index, slot } => {
                self.held = Some(slot);
                Some(index)
            }
            Pick::Shed | Pick::Empty => None,
        }
    }

    fn random(&mut self) -> f64 {
        self.rng.f64()
    }
}
