//! The counts of a paged range's next pages, known before they are asked.
//!
//! The API server pages a LIST: `limit` keys at a time, each page starting
//! just after the last key of the one before (`last + "\0"`), every page
//! after the first at the first page's revision. Each answer carries
//! `count`, the keys from its start to the range's end, and counting them is
//! a walk over all of them: for a 10k-key list it costs as much as the page
//! itself. Yet when a page is answered, the next one's count is known: this
//! page's count less the keys it returned. A revision's keys never change,
//! so a count kept for (start, end, revision) stays exact for as long as
//! that revision can be read (an older one is refused as compacted before
//! anything is counted).
//!
//! Only reads of committed revisions may use this: a Txn's range sees its
//! own writes at a revision that is not the store's until it commits.

use std::collections::VecDeque;
use std::sync::Mutex;

/// Next pages kept: one per list being paged through, the oldest dropped.
const KEEP: usize = 256;

#[derive(Default)]
pub struct PageCounts {
    next: Mutex<VecDeque<Entry>>,
}

struct Entry {
    start: Vec<u8>,
    end: Vec<u8>,
    rev: i64,
    count: i64,
}

impl PageCounts {
    /// The count of the range [start, end) at `rev`, if a page before it
    /// left it; each is used once (by the one page that follows).
    pub fn take(&self, start: &[u8], end: &[u8], rev: i64) -> Option<i64> {
        let mut next = self.next.lock().unwrap();
        let pos = next.iter().position(|e| e.rev == rev && e.start == start && e.end == end)?;
        next.remove(pos).map(|e| e.count)
    }

    /// A page of [start, end) at `rev` counted `count` keys and returned
    /// `returned` of them, the last being `last`: what the next page counts.
    pub fn after_page(&self, last: &[u8], end: &[u8], rev: i64, count: i64, returned: i64) {
        let mut start = last.to_vec();
        start.push(0);
        let mut next = self.next.lock().unwrap();
        if next.len() == KEEP {
            next.pop_back();
        }
        next.push_front(Entry { start, end: end.to_vec(), rev, count: count - returned });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_leaves_the_next_pages_count_once() {
        let counts = PageCounts::default();
        counts.after_page(b"/r/a", b"/r0", 7, 10, 4);
        assert_eq!(counts.take(b"/r/a\0", b"/r0", 8), None, "another revision");
        assert_eq!(counts.take(b"/r/a\0", b"/r1", 7), None, "another end");
        assert_eq!(counts.take(b"/r/a", b"/r0", 7), None, "the page's own start");
        assert_eq!(counts.take(b"/r/a\0", b"/r0", 7), Some(6));
        assert_eq!(counts.take(b"/r/a\0", b"/r0", 7), None, "used once");
    }

    #[test]
    fn the_oldest_lists_are_dropped() {
        let counts = PageCounts::default();
        for i in 0..KEEP as i64 + 1 {
            counts.after_page(format!("/k{i}").as_bytes(), b"", 1, 100, 1);
        }
        assert_eq!(counts.take(b"/k0\0", b"", 1), None);
        assert_eq!(counts.take(b"/k1\0", b"", 1), Some(99));
    }
}
