//! The panic boundary of per-pod work: a panic while handling one pod ends that pod's
//! current attempt, is logged and reported, and the work starts again after a back-off —
//! it never ends the process nor the workers of other pods.
//!
//! The release build unwinds (`[profile.release]`), so a panic can be caught; tokio alone
//! would confine it to the task, but the pod would then silently stop being served (its
//! messages unanswered, its deletion never confirmed). Both pod workers — the runtime's
//! (`worker`) and the agent's (`skiff_agent::pods`) — run inside this boundary.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// First delay before a panicked worker is started again.
pub const RESTART_INITIAL: Duration = Duration::from_secs(1);
/// Longest delay between restarts of a worker that keeps panicking.
pub const RESTART_MAX: Duration = Duration::from_secs(60);

/// Polls `fut` to completion, turning a panic inside it into `Err(message)`.
///
/// The future is dropped after a panic; whatever it borrowed is usable again (the workers
/// keep their state in records and recompute what to do from them).
pub async fn catch_panic<F: Future>(fut: F) -> Result<F::Output, String> {
    CatchPanic(Box::pin(fut)).await
}

struct CatchPanic<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchPanic<F> {
    type Output = Result<F::Output, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let fut = self.0.as_mut();
        match std::panic::catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(payload) => Poll::Ready(Err(panic_message(payload.as_ref()))),
        }
    }
}

/// The text of a panic payload (`panic!` with a literal or a formatted message).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-text payload".to_string()
    }
}

/// Doubling delays between restarts, from [`RESTART_INITIAL`] up to [`RESTART_MAX`].
#[derive(Debug, Clone)]
pub struct Restarts {
    next: Duration,
    initial: Duration,
}

impl Default for Restarts {
    fn default() -> Self {
        Restarts::starting_at(RESTART_INITIAL)
    }
}

impl Restarts {
    /// Delays starting at `initial` (tests use a short one).
    pub fn starting_at(initial: Duration) -> Restarts {
        Restarts {
            next: initial,
            initial,
        }
    }

    /// The current delay; the next one is doubled.
    pub fn advance(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next.saturating_mul(2)).min(RESTART_MAX.max(self.initial));
        delay
    }

    /// Waits the current delay and doubles the next one.
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.advance()).await;
    }
}

/// Runs `body()` until it returns; when it panics, logs the panic as `what`'s, calls
/// `on_panic` with the message (to report it: a pod Event), waits per `restarts` and runs a
/// fresh `body()`. The body owns what it needs (clones of channels and handles), so a
/// restart resumes from the shared state.
pub async fn supervise<F, Fut>(
    what: &str,
    mut restarts: Restarts,
    mut body: F,
    mut on_panic: impl FnMut(&str),
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    loop {
        match catch_panic(body()).await {
            Ok(()) => return,
            Err(message) => {
                tracing::error!(worker = what, panic = %message, "worker panicked; restarting it");
                on_panic(&message);
                restarts.wait().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use tokio::sync::{mpsc, watch};

    /// A miniature pod worker: answers every desired value it sees with `value * 10`, and
    /// panics on 13 (a bad input).
    async fn worker(mut desired: watch::Receiver<u32>, answers: mpsc::UnboundedSender<u32>) {
        loop {
            let v = *desired.borrow_and_update();
            if v == 13 {
                panic!("cannot handle {v}");
            }
            let _ = answers.send(v * 10);
            if desired.changed().await.is_err() {
                return;
            }
        }
    }

    async fn next(rx: &mut mpsc::UnboundedReceiver<u32>) -> u32 {
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("the worker answers within 10 s")
            .expect("the worker is alive")
    }

    #[tokio::test]
    async fn a_panicking_pod_worker_is_restarted_and_other_pods_keep_being_served() {
        let panics = Arc::new(Mutex::new(Vec::<String>::new()));
        let mut workers = Vec::new();
        let mut channels = Vec::new();
        for name in ["bad", "good"] {
            let (tx, rx) = watch::channel(1u32);
            let (atx, arx) = mpsc::unbounded_channel();
            let seen = Arc::clone(&panics);
            workers.push(tokio::spawn(supervise(
                name,
                Restarts::starting_at(Duration::from_millis(10)),
                move || worker(rx.clone(), atx.clone()),
                move |m| seen.lock().unwrap().push(format!("{name}: {m}")),
            )));
            channels.push((tx, arx));
        }
        let [(bad_tx, mut bad_rx), (good_tx, mut good_rx)] = <[_; 2]>::try_from(channels).unwrap();
        assert_eq!(next(&mut bad_rx).await, 10);
        assert_eq!(next(&mut good_rx).await, 10);

        // The bad pod's input makes its worker panic: it is reported and restarted.
        bad_tx.send_replace(13);
        // The other pod is served meanwhile.
        good_tx.send_replace(2);
        assert_eq!(next(&mut good_rx).await, 20);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while panics.lock().unwrap().is_empty() {
            assert!(tokio::time::Instant::now() < deadline, "no panic reported");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(panics.lock().unwrap()[0], "bad: cannot handle 13");
        // Once its input is fixed, the restarted worker serves the pod again.
        bad_tx.send_replace(4);
        assert_eq!(next(&mut bad_rx).await, 40);
        good_tx.send_replace(5);
        assert_eq!(next(&mut good_rx).await, 50);
        assert!(!workers.iter().any(|w| w.is_finished()));

        // Workers that return end their supervision.
        drop((bad_tx, good_tx));
        for w in workers {
            tokio::time::timeout(Duration::from_secs(10), w)
                .await
                .unwrap()
                .unwrap();
        }
    }

    #[tokio::test]
    async fn catch_panic_returns_the_message_and_leaves_borrowed_state_usable() {
        let mut count = AtomicUsize::new(0);
        let result = catch_panic(async {
            count.fetch_add(1, Ordering::SeqCst);
            if count.load(Ordering::SeqCst) == 1 {
                panic!("boom {}", 7);
            }
        })
        .await;
        assert_eq!(result, Err("boom 7".to_string()));
        assert_eq!(*count.get_mut(), 1);
        assert_eq!(catch_panic(async { 3 }).await, Ok(3));
    }

    #[test]
    fn restarts_back_off_up_to_the_maximum() {
        let mut r = Restarts::default();
        let delays: Vec<u64> = (0..8).map(|_| r.advance().as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60]);
    }
}
