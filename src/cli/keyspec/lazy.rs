//! Providers that are built on first use or could not be built: decrypting
//! with no key named must not prompt for the keyring's passphrase, read the
//! transit settings or load the AWS configuration for a message that needs
//! none of them; and a repository key this host cannot open must still say
//! why when it is the one a message needs.

use std::sync::OnceLock;

use envarc::envelope::provider::describe_edks;
use envarc::envelope::{DataKey, EncryptedDataKey, EncryptionContext, KeyProvider, ProviderError};
use envarc::providers::multi::combine_errors;
use envarc::providers::ProviderKind;
use envarc::Result;

use super::{GlobalArgs, KeyArgs, SOURCES};

type Build = Box<dyn Fn() -> Result<Box<dyn KeyProvider>> + Send + Sync>;

/// A provider of one kind, built the first time a message holds an EDK it
/// could unwrap. Only unwraps: encrypting needs a key named.
pub struct LazyProvider {
    /// Whether an EDK is one this provider could unwrap.
    claims: fn(&EncryptedDataKey) -> bool,
    build: Build,
    inner: OnceLock<std::result::Result<Box<dyn KeyProvider>, String>>,
    /// What building it failed with, as this kind reports it.
    on_failure: fn(&[EncryptedDataKey], &str) -> ProviderError,
    /// Workers to plan for before it is built (see `max_in_flight`).
    in_flight_hint: usize,
}

impl LazyProvider {
    pub fn new(
        claims: fn(&EncryptedDataKey) -> bool,
        build: impl Fn() -> Result<Box<dyn KeyProvider>> + Send + Sync + 'static,
    ) -> LazyProvider {
        LazyProvider {
            claims,
            build: Box::new(build),
            inner: OnceLock::new(),
            on_failure: |_, why| ProviderError::Other(why.to_string()),
            in_flight_hint: 1,
        }
    }

    /// How a failure to build is reported (default: the reason, as is).
    pub fn on_failure(mut self, f: fn(&[EncryptedDataKey], &str) -> ProviderError) -> LazyProvider {
        self.on_failure = f;
        self
    }

    /// The workers a pipeline should plan for before this is built.
    pub fn in_flight_hint(mut self, n: usize) -> LazyProvider {
        self.in_flight_hint = n;
        self
    }

    fn claims_any(&self, edks: &[EncryptedDataKey]) -> bool {
        edks.iter().any(self.claims)
    }

    fn get(
        &self,
        edks: &[EncryptedDataKey],
    ) -> std::result::Result<&dyn KeyProvider, ProviderError> {
        self.inner
            .get_or_init(|| (self.build)().map_err(|e| e.to_string()))
            .as_ref()
            .map(|b| b.as_ref())
            .map_err(|why| (self.on_failure)(edks, why))
    }
}

fn no_key_to_encrypt() -> ProviderError {
    ProviderError::Other(
        "no key given to encrypt with: pass --key KEY (alias/NAME, key id, transit:KEYNAME or an AWS KMS key ARN) or --raw-key-file FILE --key-name NAME".into(),
    )
}

impl KeyProvider for LazyProvider {
    fn generate_data_key(
        &self,
        _ctx: &EncryptionContext,
    ) -> std::result::Result<(DataKey, Vec<EncryptedDataKey>), ProviderError> {
        Err(no_key_to_encrypt())
    }

    fn decrypt_data_key(
        &self,
        edks: &[EncryptedDataKey],
        ctx: &EncryptionContext,
    ) -> std::result::Result<DataKey, ProviderError> {
        if !self.claims_any(edks) {
            return Err(ProviderError::NoMatchingKey {
                found: describe_edks(edks),
                tried: "no key (none was given: pass --raw-key-file FILE --key-name NAME, or --key KEY)".into(),
            });
        }
        self.get(edks)?.decrypt_data_key(edks, ctx)
    }

    /// Before it is built: the hint, so that a pipeline sizes its workers
    /// for a key service before knowing it will need it.
    fn max_in_flight(&self) -> usize {
        self.inner
            .get()
            .and_then(|r| r.as_ref().ok())
            .map_or(self.in_flight_hint, |p| p.max_in_flight())
    }
}

/// The provider for decrypting when no key was given: every provider kind
/// that can unwrap without being named ([`super::KeySource::any_key`]),
/// each built lazily, tried in [`SOURCES`]' order for the EDKs it claims.
pub struct AnyKey {
    members: Vec<(ProviderKind, LazyProvider)>,
}

impl AnyKey {
    pub fn new(args: &KeyArgs, g: &GlobalArgs) -> AnyKey {
        let members = SOURCES
            .iter()
            .filter_map(|s| Some((s.kind(), s.any_key(args, g)?)))
            .collect();
        AnyKey { members }
    }
}

impl KeyProvider for AnyKey {
    fn generate_data_key(
        &self,
        _ctx: &EncryptionContext,
    ) -> std::result::Result<(DataKey, Vec<EncryptedDataKey>), ProviderError> {
        Err(no_key_to_encrypt())
    }

    fn decrypt_data_key(
        &self,
        edks: &[EncryptedDataKey],
        ctx: &EncryptionContext,
    ) -> std::result::Result<DataKey, ProviderError> {
        let mut errors = Vec::new();
        for (_, p) in self.members.iter().filter(|(_, p)| p.claims_any(edks)) {
            match p.decrypt_data_key(edks, ctx) {
                Ok(k) => return Ok(k),
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            let kinds: Vec<String> = self
                .members
                .iter()
                .map(|(k, _)| k.key_noun().to_string())
                .collect();
            return Err(ProviderError::NoMatchingKey {
                found: describe_edks(edks),
                tried: format!(
                    "any {} (for a raw AES key pass --raw-key-file FILE --key-name NAME)",
                    kinds.join(", ")
                ),
            });
        }
        Err(combine_errors(edks, errors))
    }

    /// As many workers as a key service would want: which provider the
    /// messages need is known only once they are read.
    fn max_in_flight(&self) -> usize {
        self.members
            .iter()
            .map(|(_, p)| p.max_in_flight())
            .max()
            .unwrap_or(1)
    }
}

/// A repository key that could not be opened by this command: it wraps
/// nothing, and decrypt reports why it was not tried.
pub struct UnopenedKey {
    pub key: String,
    pub why: String,
}

impl KeyProvider for UnopenedKey {
    fn generate_data_key(
        &self,
        _: &EncryptionContext,
    ) -> std::result::Result<(DataKey, Vec<EncryptedDataKey>), ProviderError> {
        Err(self.unusable())
    }

    fn decrypt_data_key(
        &self,
        edks: &[EncryptedDataKey],
        _: &EncryptionContext,
    ) -> std::result::Result<DataKey, ProviderError> {
        Err(ProviderError::NoMatchingKey {
            found: describe_edks(edks),
            tried: format!("{} (could not be opened: {})", self.key, self.why),
        })
    }

    fn wrap_data_key(
        &self,
        _: &DataKey,
        _: &EncryptionContext,
    ) -> std::result::Result<Vec<EncryptedDataKey>, ProviderError> {
        Err(self.unusable())
    }
}

impl UnopenedKey {
    fn unusable(&self) -> ProviderError {
        ProviderError::KeyUnusable(format!(
            "the repository's data keys are also wrapped under {}, which could not be opened: {}",
            self.key, self.why
        ))
    }
}
