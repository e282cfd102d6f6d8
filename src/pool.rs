//! The one worker pool of the pipelines (backup, restore, verify, and the
//! maintenance rewriters): a rayon pool sized to keep every core busy and,
//! for remote key services and stores, enough requests in flight to hide
//! their round trips. Chunks are its unit of work, so one large file spreads
//! over every thread; memory is bounded by chunks in flight, which is the
//! thread count times the largest chunk (see each pipeline).

use crate::repo::Repository;
use crate::{Error, Result};

/// Most threads a pool starts (a key service claiming more is capped).
const MAX_THREADS: usize = 64;

pub struct Pool {
    pool: rayon::ThreadPool,
}

impl Pool {
    /// Threads for `repo`: the cores, or the provider's or the storage's
    /// `max_in_flight`, whichever is largest.
    pub fn for_repo(repo: &Repository) -> Result<Pool> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = cores
            .max(repo.provider().max_in_flight())
            .max(repo.storage().max_in_flight())
            .clamp(1, MAX_THREADS);
        Pool::with_threads(threads)
    }

    /// Threads for a pipeline whose workers send no requests to the store
    /// (a backup: its packs are sent by threads of their own): the cores, or
    /// the key provider's `max_in_flight`, whichever is larger.
    pub fn for_cpu_and_keys(repo: &Repository) -> Result<Pool> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Pool::with_threads(
            cores
                .max(repo.provider().max_in_flight())
                .clamp(1, MAX_THREADS),
        )
    }

    pub fn with_threads(threads: usize) -> Result<Pool> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("envarc-worker-{i}"))
            .build()
            .map_err(|e| Error::Other(format!("cannot start worker threads: {e}")))?;
        Ok(Pool { pool })
    }

    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// Runs `f` inside the pool: rayon's parallel iterators and `join` in it
    /// use the pool's threads.
    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.pool.install(f)
    }
}
