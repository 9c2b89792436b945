//! The copies of a successful answer taken as it passes to the client: the
//! response cache's (to store it, when it may be: [`Keep`]) and the
//! shadows' (to compare it: [`Picked`]). One copy serves both: a body held
//! whole is shared, a passed-through body recorded once
//! ([`Recording::wrap`], each with its own limit), a token stream tapped
//! once ([`crate::backend::events::Events::tapped`]).

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};

use crate::backend::events::TapDone;
use crate::backend::{UpstreamBody, UpstreamResponse};
use crate::cache::record::{Consumer, Recording};
use crate::cache::{Entry, Key, RouteCache, Stored};
use crate::shadow::Picked;

/// Where a miss is to be stored.
pub(super) struct Keep {
    pub(super) cache: Arc<RouteCache>,
    pub(super) key: Key,
    /// The worker storing it (the Redis store's connection).
    pub(super) worker: usize,
    /// The config name of the backend that answered.
    pub(super) backend: Option<String>,
    /// The client's config name; `None` for an anonymous caller.
    pub(super) caller: Option<Arc<str>>,
}

impl Keep {
    fn insert(self, status: StatusCode, head: HeaderMap, body: Stored) {
        let entry = Entry::new(status, head, body, self.backend);
        self.cache.insert(self.key, entry, self.worker);
    }
}

/// `up`, with the copies `keep` and `picked` want.
pub(super) fn copied(
    up: UpstreamResponse,
    keep: Option<Keep>,
    picked: Option<Picked>,
) -> UpstreamResponse {
    // Only a success the backend lets be stored is kept.
    let stream = matches!(up.body, UpstreamBody::Events { .. });
    let keep = keep.filter(|k| {
        up.status.is_success() && k.cache.may_store(&up.headers, stream, k.caller.as_deref())
    });
    if keep.is_none() && picked.is_none() {
        return up;
    }
    let UpstreamResponse {
        status,
        headers,
        body,
    } = up;
    let head = || headers.clone();
    let body = match body {
        UpstreamBody::Full(bytes) => {
            if let Some(picked) = picked {
                picked.start(status, bytes.clone());
            }
            if let Some(keep) = keep {
                keep.insert(status, head(), Stored::Full(bytes.clone()));
            }
            UpstreamBody::Full(bytes)
        }
        UpstreamBody::Stream(body) => {
            let mut consumers = Vec::with_capacity(2);
            consumers.extend(picked.map(|p| p.consumer(status)));
            if let Some(keep) = keep {
                let (limit, head) = (keep.cache.entry_limit(), head());
                consumers.push(Consumer {
                    limit,
                    done: Box::new(move |bytes| keep.insert(status, head, Stored::Full(bytes))),
                });
            }
            UpstreamBody::Stream(Recording::wrap(body, consumers))
        }
        UpstreamBody::Events { first, mut events } => {
            if let Some(picked) = picked {
                events = picked.tap(status, &first, events);
            }
            if let Some(keep) = keep {
                let limit = keep.cache.entry_limit().saturating_sub(first.len());
                let (copy, head) = (first.clone(), head());
                let done: TapDone = Box::new(move |rest, json_lines| {
                    let body = Stored::Events {
                        first: Bytes::copy_from_slice(&copy),
                        rest: crate::cache::compact(rest),
                        json_lines,
                    };
                    keep.insert(status, head, body);
                });
                events = events.tapped(limit, done);
            }
            UpstreamBody::Events { first, events }
        }
    };
    UpstreamResponse {
        status,
        headers,
        body,
    }
}
