//! The kinds of key provider envarc knows, by the names the repository
//! config ([`KeyRef`](crate::repo::keys::KeyRef)), `stats` and
//! [`KeyVersion`](crate::repo::keys::KeyVersion) use. Defined once, here:
//! everything that turns a name into a provider matches on this enum.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A kind of key provider, as named in the repository config (serialized as
/// that name, so configs and the sealed copy's bytes stay as they were).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ProviderKind {
    /// A CMK of the local keyring.
    Keyring,
    /// An OpenBao / Vault transit key.
    Transit,
    /// An AWS KMS key.
    AwsKms,
    /// A raw AES wrapping key.
    RawAes,
}

impl ProviderKind {
    pub const ALL: [ProviderKind; 4] = [
        ProviderKind::Keyring,
        ProviderKind::Transit,
        ProviderKind::AwsKms,
        ProviderKind::RawAes,
    ];

    /// The name in the config: `keyring`, `transit`, `aws-kms`, `raw-aes`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Keyring => "keyring",
            ProviderKind::Transit => "transit",
            ProviderKind::AwsKms => "aws-kms",
            ProviderKind::RawAes => "raw-aes",
        }
    }

    /// "keyring key", "AWS KMS key": how reports name a key of this kind.
    pub const fn key_noun(self) -> &'static str {
        match self {
            ProviderKind::Keyring => "keyring key",
            ProviderKind::Transit => "transit key",
            ProviderKind::AwsKms => "AWS KMS key",
            ProviderKind::RawAes => "raw AES key",
        }
    }

    /// The names of all kinds, for messages: "keyring, transit, aws-kms, raw-aes".
    pub fn known() -> String {
        let known: Vec<&str> = ProviderKind::ALL.iter().map(|k| k.as_str()).collect();
        known.join(", ")
    }

    /// The kind named `name`, `None` for a provider envarc does not know
    /// (a config or an EDK may name one; callers say what to do about it).
    pub fn of(name: &str) -> Option<ProviderKind> {
        ProviderKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProviderKind {
    type Err = String;

    fn from_str(s: &str) -> Result<ProviderKind, String> {
        ProviderKind::of(s).ok_or_else(|| {
            format!(
                "'{s}' is not a key provider envarc knows; use one of {}",
                ProviderKind::known()
            )
        })
    }
}

impl TryFrom<String> for ProviderKind {
    type Error = String;

    fn try_from(s: String) -> Result<ProviderKind, String> {
        s.parse()
    }
}

impl From<ProviderKind> for String {
    fn from(k: ProviderKind) -> String {
        k.as_str().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_ones_are_refused() {
        for k in ProviderKind::ALL {
            assert_eq!(k.to_string().parse::<ProviderKind>(), Ok(k));
        }
        assert_eq!(ProviderKind::of("aws-kms"), Some(ProviderKind::AwsKms));
        let e = "pkcs11".parse::<ProviderKind>().unwrap_err();
        assert!(e.contains("pkcs11") && e.contains("raw-aes"), "{e}");
        // Serialized as the name, as configs have always recorded it.
        let json = serde_json::to_string(&ProviderKind::AwsKms).unwrap();
        assert_eq!(json, "\"aws-kms\"");
        assert_eq!(
            serde_json::from_str::<ProviderKind>(&json).unwrap(),
            ProviderKind::AwsKms
        );
        assert!(serde_json::from_str::<ProviderKind>("\"pkcs11\"").is_err());
    }
}
