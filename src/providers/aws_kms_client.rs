//! The AWS SDK plumbing behind [`super::aws_kms`]: one tokio runtime for the
//! process, AWS configuration loaded once, one KMS client per region, and a
//! bound on the requests in flight.
//!
//! Our pipelines are rayon (or plain) threads, not async tasks, so every call
//! is a `block_on` on the shared multi-thread runtime from the calling thread:
//! many threads each block on their own request while the runtime's two
//! worker threads drive the connections. A semaphore keeps at most
//! [`KmsConfig::max_in_flight`] requests on the wire at once, whatever the
//! number of callers.
//!
//! Configuration comes from aws-config, as for the AWS CLI: credentials from
//! the environment, the shared `~/.aws/credentials` and `~/.aws/config` files
//! (profile from `AWS_PROFILE`), web identity, ECS and EC2 instance roles;
//! region from `AWS_REGION` / `AWS_DEFAULT_REGION` / the profile; endpoint from
//! `AWS_ENDPOINT_URL_KMS` / `AWS_ENDPOINT_URL` / the profile, overridden by
//! `--kms-endpoint`; retries from `AWS_MAX_ATTEMPTS` / `AWS_RETRY_MODE` / the
//! profile, by default the SDK's standard mode: 3 attempts, exponential
//! backoff with full jitter (up to 1 s, 2 s, … capped at 20 s) for throttling
//! errors (`ThrottlingException`, `LimitExceededException`, …), 5xx answers,
//! timeouts and connection errors, limited by a client-wide retry budget so
//! that an outage does not multiply the load.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_kms::config::timeout::TimeoutConfig;
use aws_sdk_kms::config::Region;
use aws_sdk_kms::Client;
use tokio::runtime::Runtime;
use tokio::sync::Semaphore;

use crate::envelope::ProviderError;

/// Requests in flight at once by default, across all threads.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 16;

/// Where and how to reach KMS. Everything not set here comes from the AWS
/// environment and shared config files.
#[derive(Clone, Debug)]
pub struct KmsConfig {
    /// Endpoint URL for every region (a test server, a VPC endpoint).
    pub endpoint: Option<String>,
    /// Seconds one attempt of a request may take (connecting included).
    pub timeout: Duration,
    pub max_in_flight: usize,
}

impl Default for KmsConfig {
    fn default() -> Self {
        KmsConfig {
            endpoint: None,
            timeout: Duration::from_secs(30),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
        }
    }
}

/// The runtime every KMS request runs on. Built on first use and kept for
/// the life of the process (a CLI: nothing to shut down gracefully).
fn runtime() -> Result<&'static Runtime, ProviderError> {
    static RT: OnceLock<Result<Runtime, String>> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("envarc-kms")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the runtime for AWS KMS requests: {e}"))
    })
    .as_ref()
    .map_err(|e| ProviderError::Other(e.clone()))
}

/// Shared state of every KMS key provider made from one [`KmsConfig`].
pub struct Kms {
    cfg: KmsConfig,
    sdk: OnceLock<Result<SdkConfig, String>>,
    clients: Mutex<HashMap<String, Client>>,
    gate: Arc<Semaphore>,
}

impl Kms {
    /// No file is read and no request made until the first call.
    pub fn new(cfg: KmsConfig) -> Arc<Kms> {
        let permits = cfg.max_in_flight.max(1);
        Arc::new(Kms {
            cfg,
            sdk: OnceLock::new(),
            clients: Mutex::new(HashMap::new()),
            gate: Arc::new(Semaphore::new(permits)),
        })
    }

    pub fn max_in_flight(&self) -> usize {
        self.cfg.max_in_flight.max(1)
    }

    /// The AWS configuration, loaded once (environment, shared files, profile).
    fn sdk(&self) -> Result<&SdkConfig, ProviderError> {
        self.sdk
            .get_or_init(|| {
                let rt = runtime().map_err(|e| e.to_string())?;
                let timeouts = TimeoutConfig::builder()
                    .connect_timeout(self.cfg.timeout.min(Duration::from_secs(10)))
                    .operation_attempt_timeout(self.cfg.timeout)
                    .build();
                let http = aws_smithy_http_client::Builder::new()
                    .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                        aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
                    ))
                    .build_https();
                // The endpoint override goes to the KMS clients only: STS
                // (assume-role profiles) must keep its own endpoint.
                let loader = aws_config::defaults(BehaviorVersion::latest())
                    .http_client(http)
                    .timeout_config(timeouts);
                Ok(rt.block_on(loader.load()))
            })
            .as_ref()
            .map_err(|e| ProviderError::Other(e.clone()))
    }

    /// The region of the AWS configuration, if any.
    pub fn default_region(&self) -> Result<Option<String>, ProviderError> {
        Ok(self.sdk()?.region().map(|r| r.to_string()))
    }

    /// Where requests for `region` go, for messages: the endpoint override,
    /// else "AWS KMS in REGION".
    pub fn location(&self, region: Option<&str>) -> String {
        let endpoint = self.cfg.endpoint.clone().or_else(|| {
            self.sdk
                .get()
                .and_then(|s| s.as_ref().ok())
                .and_then(|s| s.endpoint_url().map(str::to_string))
        });
        match (endpoint, region) {
            (Some(url), _) => format!("AWS KMS at {url}"),
            (None, Some(r)) => format!("AWS KMS in {r}"),
            (None, None) => "AWS KMS".into(),
        }
    }

    /// The client for `region` (the configured region when `None`).
    pub fn client(&self, region: Option<&str>) -> Result<Client, ProviderError> {
        let sdk = self.sdk()?;
        let region = match region {
            Some(r) => r.to_string(),
            None => sdk.region().map(|r| r.to_string()).ok_or_else(|| {
                ProviderError::Other(
                    "no AWS region is configured: set AWS_REGION, or a region in the profile of \
                     ~/.aws/config, or name the key by its full ARN"
                        .into(),
                )
            })?,
        };
        let mut clients = self.clients.lock().expect("no panic while held");
        if let Some(c) = clients.get(&region) {
            return Ok(c.clone());
        }
        let mut conf = aws_sdk_kms::config::Builder::from(sdk).region(Region::new(region.clone()));
        if let Some(url) = &self.cfg.endpoint {
            conf = conf.endpoint_url(url);
        }
        let client = Client::from_conf(conf.build());
        clients.insert(region, client.clone());
        Ok(client)
    }

    /// Runs one request to completion from a plain thread, waiting for a free
    /// slot first. Never call from inside the runtime.
    pub fn call<T>(&self, request: impl Future<Output = T>) -> Result<T, ProviderError> {
        let rt = runtime()?;
        let gate = self.gate.clone();
        Ok(rt.block_on(async move {
            let _permit = gate
                .acquire_owned()
                .await
                .expect("the gate is never closed");
            request.await
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn calls_from_many_threads_are_bounded() {
        let kms = Kms::new(KmsConfig {
            max_in_flight: 3,
            ..Default::default()
        });
        let now = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        std::thread::scope(|s| {
            for _ in 0..12 {
                let (kms, now, peak) = (&kms, now.clone(), peak.clone());
                s.spawn(move || {
                    kms.call(async move {
                        let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(n, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(30)).await;
                        now.fetch_sub(1, Ordering::SeqCst);
                    })
                    .unwrap();
                });
            }
        });
        // Bounded, and concurrent (12 calls of 30 ms in series would be 1 in flight).
        assert_eq!(peak.load(Ordering::SeqCst), 3);
    }
}
