//! Reads run on a small pool of read-only connections on tokio's blocking
//! threads, each inside one read transaction so that the revision and the
//! rows it returns come from the same snapshot.

use std::path::PathBuf;
use std::sync::Mutex;

use rusqlite::Connection;
use tonic::Status;

use super::errors;
use super::schema;

/// Concurrent reads, and connections kept for reuse.
const KEEP: usize = 8;

pub struct Readers {
    data_dir: PathBuf,
    idle: Mutex<Vec<Connection>>,
    /// Reads in flight at most: bounds blocking threads (each brings its
    /// own malloc arena) and connections (each its own page cache).
    slots: tokio::sync::Semaphore,
}

impl Readers {
    pub fn new(data_dir: PathBuf) -> Readers {
        Readers { data_dir, idle: Mutex::new(Vec::new()), slots: tokio::sync::Semaphore::new(KEEP) }
    }

    pub async fn with<T, F>(self: &std::sync::Arc<Self>, f: F) -> Result<T, Status>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, Status> + Send + 'static,
    {
        let _slot = self.slots.acquire().await.map_err(|_| Status::unavailable("shutting down"))?;
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.run(f))
            .await
            .map_err(|e| Status::internal(format!("read task failed: {e}")))?
    }

    fn run<T>(&self, f: impl FnOnce(&Connection) -> Result<T, Status>) -> Result<T, Status> {
        let conn = match self.idle.lock().unwrap().pop() {
            Some(c) => c,
            None => schema::open_reader(&self.data_dir)
                .map_err(|e| Status::unavailable(e.to_string()))?,
        };
        let result = (|| {
            schema::exec(&conn, "BEGIN").map_err(|e| errors::storage(&e))?;
            let out = f(&conn);
            schema::exec(&conn, "COMMIT").map_err(|e| errors::storage(&e))?;
            out
        })();
        if result.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        let mut idle = self.idle.lock().unwrap();
        if idle.len() < KEEP {
            idle.push(conn);
        }
        result
    }
}
