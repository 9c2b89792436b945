//! How connections are placed on workers.
//!
//! Each worker has its own listening socket (`SO_REUSEPORT`), and the
//! kernel picks which one a new connection reaches by a hash of its
//! addresses, blind to how busy each worker is. A client that opens its
//! pool of kept-alive connections at once (32 of them, say) could leave
//! one worker with twice the connections of the other, and so that core
//! saturated while the other idles, for as long as the pool lives. So the
//! worker that accepted a connection hands it to the worker with the fewest
//! live connections when that is not itself: once per connection, through
//! the receiving worker's inbox, never per request.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::sync::{mpsc, OwnedSemaphorePermit};

/// A connection accepted by one worker for another: the socket, its peer
/// and the connection slot it already holds.
pub(super) type Handoff = (std::net::TcpStream, SocketAddr, OwnedSemaphorePermit);

/// Every worker's live connections and inbox.
#[derive(Debug)]
pub(super) struct Spread {
    live: Vec<AtomicUsize>,
    inboxes: Vec<mpsc::UnboundedSender<Handoff>>,
}

impl Spread {
    /// The spread over `workers` workers, and each worker's inbox, in order.
    pub(super) fn new(workers: usize) -> (Arc<Self>, Vec<mpsc::UnboundedReceiver<Handoff>>) {
        let (inboxes, receivers) = (0..workers.max(1))
            .map(|_| mpsc::unbounded_channel())
            .unzip();
        let live = (0..workers.max(1)).map(|_| AtomicUsize::new(0)).collect();
        (Arc::new(Self { live, inboxes }), receivers)
    }

    /// Where a connection `me` accepted should be served: here, unless
    /// this worker has two or more connections more than the least busy
    /// one, which then gets it. (Within one of the least, the move is not
    /// worth its cost for clients that open a connection per request.) The
    /// count is taken at once, so that connections accepted right after
    /// see it.
    pub(super) fn place(&self, me: usize) -> usize {
        let mine = self.live[me].load(Ordering::Relaxed);
        let (least, fewest) = self
            .live
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .enumerate()
            .min_by_key(|&(_, n)| n)
            .unwrap_or((me, mine));
        let to = if mine > fewest + 1 { least } else { me };
        self.live[to].fetch_add(1, Ordering::Relaxed);
        to
    }

    /// Hands a connection `from` accepted to worker `to`. Gives it back,
    /// counted on `from` again, if `to` takes no more connections (it has
    /// stopped); `None` in the unexpected case that the socket could not be
    /// moved between runtimes (the connection is then closed).
    pub(super) fn hand_off(
        &self,
        from: usize,
        to: usize,
        stream: TcpStream,
        peer: SocketAddr,
        slot: OwnedSemaphorePermit,
    ) -> Result<(), Option<(TcpStream, OwnedSemaphorePermit)>> {
        let Ok(stream) = stream.into_std() else {
            self.closed(to);
            return Err(None);
        };
        let Err(mpsc::error::SendError((stream, _, slot))) =
            self.inboxes[to].send((stream, peer, slot))
        else {
            return Ok(());
        };
        self.closed(to);
        let Ok(stream) = TcpStream::from_std(stream) else {
            return Err(None);
        };
        self.live[from].fetch_add(1, Ordering::Relaxed);
        Err(Some((stream, slot)))
    }

    /// A connection handed to `worker` that it could not take after all.
    pub(super) fn dropped(&self, worker: usize) {
        self.closed(worker);
    }

    /// Counts a connection placed on `worker` as live until the guard drops.
    pub(super) fn live(self: &Arc<Self>, worker: usize) -> Live {
        Live {
            spread: Arc::clone(self),
            worker,
        }
    }

    fn closed(&self, worker: usize) {
        self.live[worker].fetch_sub(1, Ordering::Relaxed);
    }

    /// Live connections of each worker.
    #[cfg(test)]
    fn counts(&self) -> Vec<usize> {
        self.live
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .collect()
    }
}

/// A connection placed on a worker by [`Spread::place`]; dropping it (the
/// connection closed) takes it off that worker's count.
#[derive(Debug)]
pub(super) struct Live {
    spread: Arc<Spread>,
    worker: usize,
}

impl Drop for Live {
    fn drop(&mut self) {
        self.spread.closed(self.worker);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_go_to_the_least_busy_worker_once_it_is_two_behind() {
        let (spread, _inboxes) = Spread::new(3);
        // All accepted by worker 0: kept until it is two ahead, then moved.
        let placed: Vec<usize> = (0..9).map(|_| spread.place(0)).collect();
        assert_eq!(placed, [0, 0, 1, 2, 0, 1, 2, 0, 1]);
        assert_eq!(spread.counts(), [4, 3, 2]);
        // One ahead of the least busy is close enough.
        assert_eq!(spread.place(1), 1);
        // Closing takes a connection off its worker's count.
        let guards: Vec<Live> = (0..4).map(|_| spread.live(1)).collect();
        drop(guards);
        assert_eq!(spread.counts(), [4, 0, 2]);
        assert_eq!(spread.place(0), 1);
        assert_eq!(spread.counts(), [4, 1, 2]);
    }

    #[test]
    fn one_worker_serves_everything_itself() {
        let (spread, _inboxes) = Spread::new(1);
        assert_eq!(spread.place(0), 0);
        assert_eq!(spread.place(0), 0);
        assert_eq!(spread.counts(), [2]);
    }
}
