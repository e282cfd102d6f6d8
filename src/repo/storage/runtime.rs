//! The tokio runtime remote stores run their requests on. Our pipelines are
//! plain (rayon or std) threads, so every request is a `block_on` from the
//! calling thread while the runtime's two worker threads drive the sockets:
//! many callers can each wait for their own request, and the number of
//! requests in flight is set by how many threads call, not by the runtime.
//!
//! (The AWS KMS provider keeps its own runtime; both are small, and each is
//! only started when its first request is made.)

use std::future::Future;
use std::io;
use std::sync::OnceLock;

use tokio::runtime::Runtime;

fn runtime() -> io::Result<&'static Runtime> {
    static RT: OnceLock<Result<Runtime, String>> = OnceLock::new();
    RT.get_or_init(|| {
        // reqwest is built without a default TLS crypto provider so that no
        // C crypto library is compiled; ring is installed here, once.
        let _ = rustls::crypto::ring::default_provider().install_default();
        // OpenDAL's HTTP transport (reqwest) is installed by hand: its
        // automatic installation comes only with a TLS provider we leave out.
        opendal_http_transport_reqwest::install_default();
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("envarc-storage")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the runtime for remote storage: {e}"))
    })
    .as_ref()
    .map_err(|e| io::Error::other(e.clone()))
}

/// Runs `fut` on the storage runtime and waits for it on this thread. The
/// future runs on a worker thread (so its depth never meets the small stack
/// of a pipeline thread); a panic inside it comes back as an error.
pub fn run<T, F>(fut: F) -> io::Result<T>
where
    F: Future<Output = io::Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let rt = runtime()?;
    match rt.block_on(rt.spawn(fut)) {
        Ok(r) => r,
        Err(e) => Err(io::Error::other(format!("a storage request failed: {e}"))),
    }
}

/// Enters the runtime (for constructors that need a current runtime).
pub fn enter() -> io::Result<tokio::runtime::EnterGuard<'static>> {
    Ok(runtime()?.enter())
}
