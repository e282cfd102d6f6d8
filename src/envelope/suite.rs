//! Algorithm suites: which AEAD, how the message key is derived from the data
//! key, and how the header commits to the data key.
//!
//! | ID     | AEAD              | KDF          | commitment | format | use           |
//! |--------|-------------------|--------------|------------|--------|---------------|
//! | 0x0478 | AES-256-GCM       | HKDF-SHA512  | yes        | v2     | default       |
//! | 0x0578 | AES-256-GCM, ECDSA P-384 signature | HKDF-SHA512 | yes | v2 | files for others |
//! | 0xCC20 | ChaCha20-Poly1305 | HKDF-SHA512  | yes        | v2     | envarc extension |
//! | 0x0178 | AES-256-GCM       | HKDF-SHA256  | no         | v1     | legacy read only |
//!
//! 0xCC20 is a private ID that no registered ESDK suite uses. It derives its key
//! and commitment exactly like 0x0478 (info = suite ID || "DERIVEKEY", salt =
//! message ID; commitment info "COMMITKEY"), with ChaCha20-Poly1305 (12-byte
//! nonce, 16-byte tag) in place of AES-256-GCM, so the frame layout is unchanged.

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use chacha20poly1305::ChaCha20Poly1305;
use hkdf::Hkdf;
use sha2::{Sha256, Sha512};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::{CommitmentPolicy, DataKey, Error};

pub const IV_LEN: usize = 12;
pub const TAG_LEN: usize = 16;
pub const COMMITMENT_LEN: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Suite {
    /// 0x0478: the ESDK's committing, unsigned suite; envarc's default.
    Aes256GcmHkdfSha512Commit,
    /// 0x0578: 0x0478 plus an ECDSA P-384 signature over the whole message
    /// (the official SDKs' and CLI's default), see `signing.rs`.
    Aes256GcmHkdfSha512CommitEcdsaP384,
    /// 0xCC20: envarc's ChaCha20-Poly1305 extension (see the module docs).
    ChaCha20Poly1305HkdfSha512Commit,
    /// 0x0178: non-committing, message format 1. Read only, and only when asked.
    LegacyAes256GcmHkdfSha256,
}

impl Suite {
    pub fn id(self) -> u16 {
        match self {
            Suite::Aes256GcmHkdfSha512Commit => 0x0478,
            Suite::Aes256GcmHkdfSha512CommitEcdsaP384 => 0x0578,
            Suite::ChaCha20Poly1305HkdfSha512Commit => 0xCC20,
            Suite::LegacyAes256GcmHkdfSha256 => 0x0178,
        }
    }

    /// Maps an ID read from a header, applying the commitment policy.
    pub fn from_id(id: u16, policy: CommitmentPolicy) -> Result<Suite, Error> {
        match id {
            0x0478 => Ok(Suite::Aes256GcmHkdfSha512Commit),
            0x0578 => Ok(Suite::Aes256GcmHkdfSha512CommitEcdsaP384),
            0xCC20 => Ok(Suite::ChaCha20Poly1305HkdfSha512Commit),
            0x0178 if policy == CommitmentPolicy::AllowLegacyRead => {
                Ok(Suite::LegacyAes256GcmHkdfSha256)
            }
            0x0014 | 0x0046 | 0x0078 | 0x0114 | 0x0146 | 0x0178 => {
                Err(Error::NonCommittingSuite(id))
            }
            0x0214 | 0x0346 | 0x0378 => Err(Error::SignedSuite(id)),
            _ => Err(Error::UnknownSuite(id)),
        }
    }

    /// The suites `envarc encrypt --algorithm` writes, under the names the
    /// ESDKs give them (envarc's extension named in the same style).
    pub const WRITABLE: [(&'static str, Suite); 3] = [
        (
            "AES_256_GCM_HKDF_SHA512_COMMIT_KEY",
            Suite::Aes256GcmHkdfSha512Commit,
        ),
        (
            "AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384",
            Suite::Aes256GcmHkdfSha512CommitEcdsaP384,
        ),
        (
            "CHACHA20_POLY1305_HKDF_SHA512_COMMIT_KEY",
            Suite::ChaCha20Poly1305HkdfSha512Commit,
        ),
    ];

    /// Parses a writable suite named as the SDKs do, or by its hex ID.
    pub fn from_sdk_name(name: &str) -> Option<Suite> {
        let hex = name.strip_prefix("0x").or_else(|| name.strip_prefix("0X"));
        Suite::WRITABLE
            .iter()
            .find(|(n, s)| {
                n.eq_ignore_ascii_case(name)
                    || hex.and_then(|h| u16::from_str_radix(h, 16).ok()) == Some(s.id())
            })
            .map(|(_, s)| *s)
    }

    /// The SDK-style name of this suite.
    pub fn sdk_name(self) -> &'static str {
        match self {
            Suite::LegacyAes256GcmHkdfSha256 => "AES_256_GCM_HKDF_SHA256",
            s => Suite::WRITABLE
                .iter()
                .find(|(_, w)| *w == s)
                .map(|(n, _)| *n)
                .expect("every other suite is writable"),
        }
    }

    /// Parses the short name of an unsigned suite, as repository configs and
    /// `--cipher` store it.
    pub fn from_cli_name(name: &str) -> Option<Suite> {
        match name {
            "aes-256-gcm" => Some(Suite::Aes256GcmHkdfSha512Commit),
            "chacha20-poly1305" => Some(Suite::ChaCha20Poly1305HkdfSha512Commit),
            _ => None,
        }
    }

    pub fn cli_name(self) -> &'static str {
        match self {
            Suite::Aes256GcmHkdfSha512Commit => "aes-256-gcm",
            Suite::Aes256GcmHkdfSha512CommitEcdsaP384 => "aes-256-gcm-ecdsa-p384",
            Suite::ChaCha20Poly1305HkdfSha512Commit => "chacha20-poly1305",
            Suite::LegacyAes256GcmHkdfSha256 => "legacy-aes-256-gcm-hkdf-sha256",
        }
    }

    pub fn is_committing(self) -> bool {
        !matches!(self, Suite::LegacyAes256GcmHkdfSha256)
    }

    /// Whether messages of this suite end with an ECDSA signature footer.
    pub fn is_signed(self) -> bool {
        matches!(self, Suite::Aes256GcmHkdfSha512CommitEcdsaP384)
    }

    /// Message format version that carries this suite.
    pub fn message_version(self) -> u8 {
        if self.is_committing() {
            2
        } else {
            1
        }
    }

    /// Derives the per-message content key from the data key. The message ID is
    /// fresh and random per message, so every message gets its own key and frame
    /// IVs (sequence numbers) never repeat under one key (invariant 2).
    pub fn derive(self, data_key: &DataKey, message_id: &[u8]) -> Result<ContentCipher, Error> {
        let mut key = Zeroizing::new([0u8; 32]);
        match self {
            Suite::Aes256GcmHkdfSha512Commit
            | Suite::Aes256GcmHkdfSha512CommitEcdsaP384
            | Suite::ChaCha20Poly1305HkdfSha512Commit => {
                let mut info = Vec::with_capacity(11);
                info.extend_from_slice(&self.id().to_be_bytes());
                info.extend_from_slice(b"DERIVEKEY");
                Hkdf::<Sha512>::new(Some(message_id), data_key.expose())
                    .expand(&info, key.as_mut())
                    .expect("32 bytes is a valid HKDF-SHA512 output length");
            }
            Suite::LegacyAes256GcmHkdfSha256 => {
                let mut info = Vec::with_capacity(2 + message_id.len());
                info.extend_from_slice(&self.id().to_be_bytes());
                info.extend_from_slice(message_id);
                Hkdf::<Sha256>::new(None, data_key.expose())
                    .expand(&info, key.as_mut())
                    .expect("32 bytes is a valid HKDF-SHA256 output length");
            }
        }
        Ok(self.cipher(&key))
    }

    fn cipher(self, key: &[u8; 32]) -> ContentCipher {
        match self {
            Suite::ChaCha20Poly1305HkdfSha512Commit => {
                ContentCipher::ChaCha(Box::new(ChaCha20Poly1305::new(key.into())))
            }
            _ => ContentCipher::Aes(Box::new(Aes256Gcm::new(key.into()))),
        }
    }

    /// [`derive`](Self::derive) and [`commitment`](Self::commitment) together.
    /// For committing suites both expand the same HKDF-SHA512 extract (salt =
    /// message ID, key = data key), so it runs once: that is a quarter of the
    /// hashing per message, which shows in the throughput of small messages.
    /// Non-committing suites return an all-zero commitment.
    pub fn derive_committed(
        self,
        data_key: &DataKey,
        message_id: &[u8],
    ) -> Result<(ContentCipher, [u8; COMMITMENT_LEN]), Error> {
        if !self.is_committing() {
            return Ok((self.derive(data_key, message_id)?, [0u8; COMMITMENT_LEN]));
        }
        let hkdf = Hkdf::<Sha512>::new(Some(message_id), data_key.expose());
        let mut key = Zeroizing::new([0u8; 32]);
        hkdf.expand_multi_info(&[&self.id().to_be_bytes(), b"DERIVEKEY"], key.as_mut())
            .expect("32 bytes is a valid HKDF-SHA512 output length");
        let mut commitment = [0u8; COMMITMENT_LEN];
        hkdf.expand(b"COMMITKEY", &mut commitment)
            .expect("32 bytes is a valid HKDF-SHA512 output length");
        Ok((self.cipher(&key), commitment))
    }

    /// Derives the content cipher of a message being read, after checking (in
    /// constant time) that the data key is the one the header commits to.
    pub fn derive_verified(
        self,
        data_key: &DataKey,
        message_id: &[u8],
        stored_commitment: &[u8],
    ) -> Result<ContentCipher, Error> {
        let (cipher, expected) = self.derive_committed(data_key, message_id)?;
        if self.is_committing() && !bool::from(expected.ct_eq(stored_commitment)) {
            return Err(Error::Commitment);
        }
        Ok(cipher)
    }

    /// The 32-byte commitment stored in the header of committing suites.
    pub fn commitment(self, data_key: &DataKey, message_id: &[u8]) -> [u8; COMMITMENT_LEN] {
        let mut out = [0u8; COMMITMENT_LEN];
        Hkdf::<Sha512>::new(Some(message_id), data_key.expose())
            .expand(b"COMMITKEY", &mut out)
            .expect("32 bytes is a valid HKDF-SHA512 output length");
        out
    }

    /// Checks a stored commitment in constant time.
    pub fn verify_commitment(
        self,
        data_key: &DataKey,
        message_id: &[u8],
        stored: &[u8],
    ) -> Result<(), Error> {
        if !self.is_committing() {
            return Ok(());
        }
        let expected = self.commitment(data_key, message_id);
        if bool::from(expected.ct_eq(stored)) {
            Ok(())
        } else {
            Err(Error::Commitment)
        }
    }
}

/// The derived per-message AEAD. Boxed so that the key schedule lives on the heap
/// once; both ciphers zeroize their state on drop (crate `zeroize` features).
pub enum ContentCipher {
    Aes(Box<Aes256Gcm>),
    ChaCha(Box<ChaCha20Poly1305>),
}

impl ContentCipher {
    pub fn seal_in_place(&self, iv: &[u8; IV_LEN], aad: &[u8], buf: &mut [u8]) -> [u8; TAG_LEN] {
        let nonce = Nonce::from(*iv);
        let tag = match self {
            ContentCipher::Aes(c) => c.encrypt_inout_detached(&nonce, aad, buf.into()),
            ContentCipher::ChaCha(c) => c.encrypt_inout_detached(&nonce, aad, buf.into()),
        }
        .expect("frame sizes are far below the AEAD length limits");
        tag.into()
    }

    /// Decrypts in place; on failure the buffer content is unspecified and must
    /// not be used.
    pub fn open_in_place(
        &self,
        iv: &[u8],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8],
    ) -> Result<(), AuthFailed> {
        let nonce = Nonce::try_from(iv).map_err(|_| AuthFailed)?;
        let tag = Tag::try_from(tag).map_err(|_| AuthFailed)?;
        match self {
            ContentCipher::Aes(c) => c.decrypt_inout_detached(&nonce, aad, buf.into(), &tag),
            ContentCipher::ChaCha(c) => c.decrypt_inout_detached(&nonce, aad, buf.into(), &tag),
        }
        .map_err(|_| AuthFailed)
    }
}

/// An AEAD tag did not verify. Carries nothing: callers say which part failed.
#[derive(Debug)]
pub struct AuthFailed;

/// IV of frame `sequence`: zero bytes, then the sequence number big-endian.
pub fn frame_iv(sequence: u32) -> [u8; IV_LEN] {
    let mut iv = [0u8; IV_LEN];
    iv[IV_LEN - 4..].copy_from_slice(&sequence.to_be_bytes());
    iv
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-extract derivation must give exactly the separate derivations.
    #[test]
    fn derive_committed_matches_separate_derivations() {
        let key = DataKey::from_slice(&[3u8; 32]).unwrap();
        let id = [9u8; 32];
        for suite in [
            Suite::Aes256GcmHkdfSha512Commit,
            Suite::Aes256GcmHkdfSha512CommitEcdsaP384,
            Suite::ChaCha20Poly1305HkdfSha512Commit,
        ] {
            let (joint, commitment) = suite.derive_committed(&key, &id).unwrap();
            assert_eq!(commitment, suite.commitment(&key, &id));
            let alone = suite.derive(&key, &id).unwrap();
            let iv = frame_iv(1);
            let (mut a, mut b) = (*b"same plaintext", *b"same plaintext");
            assert_eq!(
                joint.seal_in_place(&iv, b"aad", &mut a),
                alone.seal_in_place(&iv, b"aad", &mut b)
            );
            assert_eq!(a, b);
            assert!(suite.derive_verified(&key, &id, &commitment).is_ok());
            let mut bad = commitment;
            bad[31] ^= 1;
            assert!(matches!(
                suite.derive_verified(&key, &id, &bad),
                Err(Error::Commitment)
            ));
        }
    }

    #[test]
    fn suite_ids_and_policy() {
        for s in [
            Suite::Aes256GcmHkdfSha512Commit,
            Suite::ChaCha20Poly1305HkdfSha512Commit,
        ] {
            assert_eq!(
                Suite::from_id(s.id(), CommitmentPolicy::default()).unwrap(),
                s
            );
            assert_eq!(Suite::from_cli_name(s.cli_name()), Some(s));
        }
        for (name, s) in Suite::WRITABLE {
            assert_eq!(Suite::from_sdk_name(name), Some(s));
            assert_eq!(Suite::from_sdk_name(&format!("{:#06x}", s.id())), Some(s));
            assert_eq!(s.sdk_name(), name);
            assert_eq!(
                Suite::from_id(s.id(), CommitmentPolicy::default()).unwrap(),
                s
            );
        }
        assert_eq!(Suite::from_sdk_name("0x0178"), None);
        assert_eq!(Suite::from_cli_name("aes-256-gcm-ecdsa-p384"), None);
        assert!(matches!(
            Suite::from_id(0x0178, CommitmentPolicy::RequireCommitment),
            Err(Error::NonCommittingSuite(0x0178))
        ));
        assert_eq!(
            Suite::from_id(0x0178, CommitmentPolicy::AllowLegacyRead).unwrap(),
            Suite::LegacyAes256GcmHkdfSha256
        );
        assert!(matches!(
            Suite::from_id(0x0378, CommitmentPolicy::AllowLegacyRead),
            Err(Error::SignedSuite(0x0378))
        ));
        assert!(matches!(
            Suite::from_id(0x1234, CommitmentPolicy::AllowLegacyRead),
            Err(Error::UnknownSuite(0x1234))
        ));
    }
}
