//! Progress reporting as a trait: the library never prints. The CLI implements
//! it with indicatif on a terminal; tests and scripts use [`Silent`].

/// Receives progress events from long-running operations. All methods have
/// empty defaults so an implementation only overrides what it shows.
/// Implementations must be cheap and thread-safe: workers call them in parallel.
pub trait Progress: Send + Sync {
    /// A phase starts ("scanning", "backing up", …) with its expected totals,
    /// when known.
    fn start(&self, _phase: &str, _total_items: Option<u64>, _total_bytes: Option<u64>) {}
    /// The item now being processed (a path, a message ID).
    fn item(&self, _name: &str) {}
    /// `items` items and `bytes` bytes were completed.
    fn advance(&self, _items: u64, _bytes: u64) {}
    /// A non-fatal problem, already phrased for the user (path and cause).
    fn warn(&self, _message: &str) {}
    /// The phase ended.
    fn finish(&self) {}
}

/// Reports nothing.
pub struct Silent;

impl Progress for Silent {}
