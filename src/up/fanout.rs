//! One step on many hosts at once: at most `ssh.concurrency` at a time,
//! every host gets its turn even when others fail, and the failures come
//! back together, each naming its host.

use std::future::Future;

use futures::stream::{self, StreamExt};

/// Some steps failed.
pub struct Failed<T> {
    /// The values of the steps that succeeded, in input order (a caller
    /// may have to close them).
    pub done: Vec<T>,
    /// Each failed item's index in the input and its error (which names
    /// the host), in input order.
    pub failures: Vec<(usize, anyhow::Error)>,
}

impl<T> Failed<T> {
    /// `headline:`, then every failure on an indented line of its own.
    pub fn under(&self, headline: &str) -> anyhow::Error {
        anyhow::anyhow!("{headline}:\n  {}", self.reasons().join("\n  "))
    }

    /// Every failure on a line of its own.
    pub fn lines(&self) -> anyhow::Error {
        anyhow::anyhow!("{}", self.reasons().join("\n"))
    }

    /// Sorted: the same failures make the same message, whichever
    /// finished first.
    fn reasons(&self) -> Vec<String> {
        let mut out: Vec<String> = self.failures.iter().map(|(_, e)| format!("{e:#}")).collect();
        out.sort();
        out
    }
}

/// Runs `step` on every item, at most `limit` at once, and waits for all
/// of them: every value in input order, or what failed (and what did not).
pub async fn all<I, T, F, Fut>(items: impl IntoIterator<Item = I>, limit: usize, mut step: F) -> Result<Vec<T>, Failed<T>>
where
    F: FnMut(I) -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    // Unordered, then sorted back: `buffered` would hold a finished step's
    // slot until every step before it finished.
    let mut results: Vec<(usize, anyhow::Result<T>)> = stream::iter(items.into_iter().enumerate())
        .map(|(i, item)| {
            let fut = step(item);
            async move { (i, fut.await) }
        })
        .buffer_unordered(limit.max(1))
        .collect()
        .await;
    results.sort_by_key(|(i, _)| *i);
    let mut done = vec![];
    let mut failures = vec![];
    for (i, r) in results {
        match r {
            Ok(v) => done.push(v),
            Err(e) => failures.push((i, e)),
        }
    }
    if failures.is_empty() { Ok(done) } else { Err(Failed { done, failures }) }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::all;

    #[tokio::test]
    async fn values_come_back_in_input_order() {
        // Later items finish first.
        let out = all(0..5u64, 5, |i| async move {
            tokio::time::sleep(Duration::from_millis(50 - 10 * i)).await;
            anyhow::Ok(i * 10)
        })
        .await;
        assert_eq!(out.ok(), Some(vec![0, 10, 20, 30, 40]));
    }

    #[tokio::test]
    async fn every_failure_is_listed_and_every_item_runs() {
        let ran = AtomicUsize::new(0);
        let out = all(["b", "ok1", "a", "ok2"], 2, |name| {
            let ran = &ran;
            async move {
                ran.fetch_add(1, Ordering::SeqCst);
                match name.strip_prefix("ok") {
                    Some(n) => Ok(n.to_string()),
                    None => Err(anyhow::anyhow!("{name}: cannot reach it")),
                }
            }
        })
        .await;
        assert_eq!(ran.load(Ordering::SeqCst), 4);
        let failed = out.expect_err("two failed");
        assert_eq!(failed.done, ["1", "2"]);
        assert_eq!(failed.failures.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [0, 2]);
        assert_eq!(failed.under("cannot reach every host").to_string(), "cannot reach every host:\n  a: cannot reach it\n  b: cannot reach it");
        assert_eq!(failed.lines().to_string(), "a: cannot reach it\nb: cannot reach it");
    }

    #[tokio::test]
    async fn at_most_limit_run_at_once() {
        let (running, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let out = all(0..10, 3, |_| {
            let (running, most) = (&running, &most);
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                anyhow::Ok(())
            }
        })
        .await;
        assert_eq!(out.ok().map(|v| v.len()), Some(10));
        assert_eq!(most.load(Ordering::SeqCst), 3, "three at once, not more (nor fewer)");
    }
}
