//! [`PollWhenWoken`]: a stream polled only when it asked to be. A fan-out socket's loop wakes
//! once per record for its writes, and `tokio::select!` then polls every branch, the socket's
//! read half too: tungstenite zeroes its read buffer (8 KiB) before every read attempt, even
//! one that finds nothing, and the split halves' lock and hyper's upgraded stream come on top.
//! The profile of 1,000 sockets at 100 records a second put 15 % of the proxy's CPU there, for
//! a client that sent nothing. Wrapped, the read half is polled again only after it returned
//! an item or its own waker fired (the client sent something, or the write half released the
//! lock it waited on): what it sees and when is unchanged.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use futures::task::AtomicWaker;
use futures::Stream;

/// Set when the inner stream's waker fires; wakes the task that polls the wrapper.
struct Flag {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

/// A stream whose inner stream is polled only when it may have something: at first, after it
/// yielded an item, and after its waker fired.
pub struct PollWhenWoken<S> {
    inner: S,
    flag: Arc<Flag>,
    waker: Waker,
}

impl<S> PollWhenWoken<S> {
    pub fn new(inner: S) -> PollWhenWoken<S> {
        let flag = Arc::new(Flag { woken: AtomicBool::new(true), task: AtomicWaker::new() });
        let waker = Waker::from(flag.clone());
        PollWhenWoken { inner, flag, waker }
    }
}

impl<S: Stream + Unpin> Stream for PollWhenWoken<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let this = &mut *self;
        // Registered before the flag is read: a wake in between is not lost.
        this.flag.task.register(cx.waker());
        if !this.flag.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let polled = Pin::new(&mut this.inner).poll_next(&mut Context::from_waker(&this.waker));
        if polled.is_ready() {
            // More may be buffered, and nothing will wake for it: poll again next time.
            this.flag.woken.store(true, Ordering::Release);
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use futures::channel::mpsc;
    use futures::StreamExt;

    use super::*;

    /// Counts the polls of the inner stream.
    struct Counted<S>(S, Arc<AtomicUsize>);

    impl<S: Stream + Unpin> Stream for Counted<S> {
        type Item = S::Item;

        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
            self.1.fetch_add(1, Ordering::Relaxed);
            Pin::new(&mut self.0).poll_next(cx)
        }
    }

    #[tokio::test]
    async fn the_inner_stream_is_polled_only_after_its_waker_fired_and_nothing_is_lost() {
        let (tx, rx) = mpsc::unbounded::<u32>();
        let polls = Arc::new(AtomicUsize::new(0));
        let mut s = PollWhenWoken::new(Counted(rx, polls.clone()));
        tx.unbounded_send(1).unwrap();
        tx.unbounded_send(2).unwrap();
        assert_eq!(s.next().await, Some(1));
        assert_eq!(s.next().await, Some(2), "buffered items come without a wake");
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut s).poll_next(&mut cx).is_pending());
        let after_pending = polls.load(Ordering::Relaxed);
        for _ in 0..10 {
            assert!(Pin::new(&mut s).poll_next(&mut cx).is_pending());
        }
        assert_eq!(polls.load(Ordering::Relaxed), after_pending, "not polled again before a wake");
        let reader = tokio::spawn(async move { (s.next().await, s.next().await) });
        tx.unbounded_send(3).unwrap();
        drop(tx);
        assert_eq!(reader.await.unwrap(), (Some(3), None));
    }
}
