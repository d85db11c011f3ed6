//! Watch streams. Writers publish each committed revision's events on an
//! in-process broadcast; every stream has one task that filters them for
//! its watchers. History (a start revision in the past, or a stream that
//! fell behind the broadcast) is replayed from the database, so a slow
//! client costs a bounded buffer, never a blocked writer; a watcher whose
//! history is compacted away is cancelled with etcd's compacted response.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, mpsc};
use tonic::{Status, Streaming};

use super::keyrange::KeyRange;
use super::pb::{
    watch_create_request::FilterType, watch_request::RequestUnion, Event, EventType,
    WatchCreateRequest, WatchRequest, WatchResponse,
};
use super::{errors, query};
use super::writer::Batch;
use super::Store;

/// Events per response when replaying history.
const REPLAY_CHUNK: usize = 1_000;
/// etcd answers a progress request with this watch id: "every watcher".
const ALL_WATCHERS: i64 = -1;

struct Watcher {
    range: KeyRange,
    /// Events below this revision are not for this watcher.
    start_rev: i64,
    prev_kv: bool,
    no_put: bool,
    no_delete: bool,
    progress_notify: bool,
    last_sent: Instant,
    /// Its place among the store's watchers, given back when it goes.
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl Watcher {
    fn wants(&self, ev: &Event) -> bool {
        let kv = ev.kv.as_ref().expect("events carry a kv");
        if kv.mod_revision < self.start_rev || !self.range.contains(&kv.key) {
            return false;
        }
        let is_put = ev.r#type == EventType::Put as i32;
        !(is_put && self.no_put || !is_put && self.no_delete)
    }

    fn shape(&self, ev: &Event) -> Event {
        let mut ev = ev.clone();
        if !self.prev_kv {
            ev.prev_kv = None;
        }
        ev
    }
}

type Out = mpsc::Sender<Result<WatchResponse, Status>>;

pub struct WatchStream {
    store: Arc<Store>,
    out: Out,
    watchers: HashMap<i64, Watcher>,
    next_id: i64,
    /// Every event up to this revision has been handled for every watcher.
    rev: i64,
}

impl WatchStream {
    pub fn new(store: Arc<Store>, out: Out) -> Self {
        WatchStream { store, out, watchers: HashMap::new(), next_id: 0, rev: 0 }
    }

    /// Runs until the client closes the stream or stops reading responses.
    pub async fn run(mut self, mut requests: Streaming<WatchRequest>) {
        // Subscribe before reading the revision so no batch falls between.
        let mut hub = self.store.hub.subscribe();
        self.rev = self.store.progress.committed.load(Ordering::SeqCst);
        let mut ticker = tokio::time::interval(self.store.tuning.progress_notify_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let closed = self.store.closed();
        tokio::pin!(closed);
        let result: Result<(), Status> = async {
            loop {
                tokio::select! {
                    _ = &mut closed => return Err(Status::unavailable("etcdserver: server stopped")),
                    req = requests.message() => match req? {
                        Some(req) => self.request(req, &mut hub).await?,
                        None => return Ok(()),
                    },
                    batch = hub.recv() => match batch {
                        Ok(batch) => self.deliver(&batch).await?,
                        Err(broadcast::error::RecvError::Lagged(_)) => self.catch_up().await?,
                        Err(broadcast::error::RecvError::Closed) => return Ok(()),
                    },
                    _ = ticker.tick() => self.notify_progress().await?,
                }
            }
        }
        .await;
        if let Err(status) = result {
            let _ = self.out.send(Err(status)).await;
        }
    }

    async fn send(&self, resp: WatchResponse) -> Result<(), Status> {
        self.out.send(Ok(resp)).await.map_err(|_| Status::cancelled("watch client went away"))
    }

    fn response(&self, watch_id: i64, rev: i64) -> WatchResponse {
        WatchResponse { header: Some(self.store.header(rev)), watch_id, ..Default::default() }
    }

    async fn request(&mut self, req: WatchRequest, hub: &mut broadcast::Receiver<Arc<Batch>>)
        -> Result<(), Status> {
        match req.request_union {
            Some(RequestUnion::CreateRequest(c)) => self.create(c).await,
            Some(RequestUnion::CancelRequest(c)) => {
                if self.watchers.remove(&c.watch_id).is_some() {
                    let mut resp = self.response(c.watch_id, self.rev);
                    resp.canceled = true;
                    self.send(resp).await?;
                }
                Ok(())
            }
            Some(RequestUnion::ProgressRequest(_)) => {
                // Take in what is already published so the answer is fresh.
                loop {
                    match hub.try_recv() {
                        Ok(batch) => self.deliver(&batch).await?,
                        Err(broadcast::error::TryRecvError::Lagged(_)) => self.catch_up().await?,
                        Err(_) => break,
                    }
                }
                self.send(self.response(ALL_WATCHERS, self.rev)).await
            }
            None => Ok(()),
        }
    }

    async fn create(&mut self, c: WatchCreateRequest) -> Result<(), Status> {
        let id = if c.watch_id != 0 {
            c.watch_id
        } else {
            while self.watchers.contains_key(&self.next_id) {
                self.next_id += 1;
            }
            self.next_id
        };
        let mut resp = self.response(id, self.rev);
        resp.created = true;
        if self.watchers.contains_key(&id) {
            resp.canceled = true;
            resp.cancel_reason = "mvcc: duplicate watch ID provided on the WatchStream".into();
            return self.send(resp).await;
        }
        let Ok(slot) = self.store.watchers.clone().try_acquire_owned() else {
            // As etcd answers a watch it cannot create: created, then canceled.
            resp.canceled = true;
            resp.cancel_reason = format!("etcdserver: too many watchers (at most {}); close some", self.store.tuning.max_watchers);
            return self.send(resp).await;
        };
        self.send(resp).await?;
        let start_rev = if c.start_revision > 0 { c.start_revision } else { self.rev + 1 };
        let has = |f: FilterType| c.filters.contains(&(f as i32));
        let watcher = Watcher {
            range: KeyRange::new(&c.key, &c.range_end),
            start_rev,
            prev_kv: c.prev_kv,
            no_put: has(FilterType::Noput),
            no_delete: has(FilterType::Nodelete),
            progress_notify: c.progress_notify,
            last_sent: Instant::now(),
            _slot: slot,
        };
        self.watchers.insert(id, watcher);
        if start_rev <= self.rev {
            self.replay(id, start_rev, self.rev).await?;
        }
        Ok(())
    }

    /// Sends a watcher its events in `[from, to]` from the database, or
    /// cancels it when that history is compacted.
    async fn replay(&mut self, id: i64, from: i64, to: i64) -> Result<(), Status> {
        let compacted = self.store.progress.compacted.load(Ordering::SeqCst);
        if from < compacted {
            self.watchers.remove(&id);
            // etcd's compacted answer carries no revision in its header.
            let mut resp = self.response(id, 0);
            resp.canceled = true;
            resp.compact_revision = compacted;
            return self.send(resp).await;
        }
        let Some(w) = self.watchers.get(&id) else { return Ok(()) };
        let range = w.range.clone();
        let mut cursor = 0;
        loop {
            let r = range.clone();
            let (events, next) = self
                .store
                .readers
                .with(move |c| {
                    query::history(c, &r, from, to, cursor, REPLAY_CHUNK)
                        .map_err(|e| errors::storage(&e))
                })
                .await?;
            let Some(w) = self.watchers.get_mut(&id) else { return Ok(()) };
            let mine: Vec<Event> = events.iter().filter(|e| w.wants(e)).map(|e| w.shape(e)).collect();
            if !mine.is_empty() {
                w.last_sent = Instant::now();
                // The header says how far this answer goes: at least its events.
                let mut resp = self.response(id, to);
                resp.events = mine;
                self.send(resp).await?;
            }
            match next {
                Some(n) => cursor = n,
                None => return Ok(()),
            }
        }
    }

    async fn deliver(&mut self, batch: &Batch) -> Result<(), Status> {
        if batch.rev <= self.rev {
            return Ok(()); // already replayed from the database
        }
        let header = self.store.header(batch.rev);
        for (id, w) in self.watchers.iter_mut() {
            let mine: Vec<Event> =
                batch.events.iter().filter(|e| w.wants(e)).map(|e| w.shape(e)).collect();
            if mine.is_empty() {
                continue;
            }
            w.last_sent = Instant::now();
            let resp = WatchResponse {
                header: Some(header.clone()),
                watch_id: *id,
                events: mine,
                ..Default::default()
            };
            self.out.send(Ok(resp)).await.map_err(|_| Status::cancelled("watch client went away"))?;
        }
        self.rev = batch.rev;
        Ok(())
    }

    /// The broadcast moved on without this stream: replay what it missed.
    async fn catch_up(&mut self) -> Result<(), Status> {
        let to = self.store.progress.committed.load(Ordering::SeqCst);
        let from = self.rev + 1;
        let ids: Vec<i64> = self.watchers.keys().copied().collect();
        for id in ids {
            let start = self.watchers.get(&id).map_or(from, |w| w.start_rev.max(from));
            if start <= to {
                self.replay(id, start, to).await?;
            }
        }
        self.rev = self.rev.max(to);
        Ok(())
    }

    async fn notify_progress(&mut self) -> Result<(), Status> {
        // Ticks and sends share one interval; the slack keeps a watcher
        // created just after a tick from waiting two intervals.
        let interval = self.store.tuning.progress_notify_interval;
        let quiet = interval - interval / 10;
        let due: Vec<i64> = self
            .watchers
            .iter()
            .filter(|(_, w)| w.progress_notify && w.last_sent.elapsed() >= quiet)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.send(self.response(id, self.rev)).await?;
            if let Some(w) = self.watchers.get_mut(&id) {
                w.last_sent = Instant::now();
            }
        }
        Ok(())
    }
}

/// How often watchers that asked for it hear the stream's progress when
/// nothing happens; etcd's default is ten minutes.
pub const DEFAULT_PROGRESS_NOTIFY: Duration = Duration::from_secs(600);
