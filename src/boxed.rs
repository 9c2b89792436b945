//! A future made in its box. `Box::pin(make())` builds the future on the
//! stack and copies all of it (its whole layout, however little of it is
//! set yet) into the allocation: the doors' futures are 8.7–9.7 KiB, and
//! the copy of the 20.5 KiB future that once held them all was a fifth of
//! a request's instructions. Allocating first lets the compiler write the
//! new future straight into the box.

use std::future::Future;
use std::pin::Pin;

/// `make()`'s future, pinned in a box allocated before it is made.
#[inline(always)]
pub fn boxed<F: Future>(make: impl FnOnce() -> F) -> Pin<Box<F>> {
    let slot = Box::new_uninit();
    Box::into_pin(Box::write(slot, make()))
}
