//! The data plane with KMS semantics: GenerateDataKey (with and without
//! plaintext), Encrypt/Decrypt of small payloads, ReEncrypt, and HMAC.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::blob;
use super::cmk::KeySpec;
use super::Keyring;
use crate::envelope::EncryptionContext;
use crate::{Error, Result};

/// Largest message of generate-mac/verify-mac, as in KMS.
pub const MAX_MAC_MESSAGE: usize = 4096;

/// GenerateDataKey's answer. `plaintext` is zeroized on drop.
pub struct DataKeyResult {
    pub key_id: Uuid,
    pub version: u32,
    pub plaintext: Zeroizing<Vec<u8>>,
    pub ciphertext_blob: Vec<u8>,
}

/// Encrypt's answer.
pub struct Encrypted {
    pub key_id: Uuid,
    pub version: u32,
    pub ciphertext_blob: Vec<u8>,
}

/// Decrypt's answer. `plaintext` is zeroized on drop.
pub struct Decrypted {
    pub key_id: Uuid,
    pub version: u32,
    pub plaintext: Zeroizing<Vec<u8>>,
}

fn key_error(message: String) -> Error {
    Error::Key { message }
}

impl Keyring {
    /// A fresh random data key of `len` bytes (32 for AES_256), returned in
    /// plaintext and encrypted under `key`'s current backing key.
    pub fn generate_data_key(
        &self,
        key: &str,
        len: usize,
        ctx: &EncryptionContext,
    ) -> Result<DataKeyResult> {
        if !(1..=1024).contains(&len) {
            return Err(Error::Usage(format!(
                "a data key has 1 to 1024 bytes, not {len}"
            )));
        }
        let mut plaintext = Zeroizing::new(vec![0u8; len]);
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut plaintext);
        let e = self.encrypt(key, &plaintext, ctx)?;
        Ok(DataKeyResult {
            key_id: e.key_id,
            version: e.version,
            plaintext,
            ciphertext_blob: e.ciphertext_blob,
        })
    }

    /// Encrypts up to 4096 bytes under `key`'s current backing key.
    pub fn encrypt(
        &self,
        key: &str,
        plaintext: &[u8],
        ctx: &EncryptionContext,
    ) -> Result<Encrypted> {
        let id = self.resolve(key)?;
        let (version, m) = self
            .data
            .current_key(&id, KeySpec::SymmetricDefault)
            .map_err(key_error)?;
        Ok(Encrypted {
            key_id: id,
            version,
            ciphertext_blob: blob::seal(m.expose(), &id, version, plaintext, ctx)?,
        })
    }

    /// Decrypts a blob with the backing key it names. With `expected_key`, the
    /// blob must have been encrypted under that key.
    pub fn decrypt(
        &self,
        ciphertext_blob: &[u8],
        ctx: &EncryptionContext,
        expected_key: Option<&str>,
    ) -> Result<Decrypted> {
        let (id, version) = blob::key_of(ciphertext_blob)?;
        if let Some(k) = expected_key {
            let want = self.resolve(k)?;
            if want != id {
                return Err(key_error(format!(
                    "the ciphertext was encrypted under key {id}, not under {k} ({want})"
                )));
            }
        }
        let m = self
            .data
            .historical_key(&id, version, KeySpec::SymmetricDefault)
            .map_err(key_error)?;
        Ok(Decrypted {
            key_id: id,
            version,
            plaintext: blob::open(m.expose(), ciphertext_blob, ctx)?,
        })
    }

    /// Decrypts a blob and encrypts its plaintext under `dest_key`; returns
    /// the source key id and version, and the new blob.
    pub fn re_encrypt(
        &self,
        ciphertext_blob: &[u8],
        source_ctx: &EncryptionContext,
        dest_key: &str,
        dest_ctx: &EncryptionContext,
    ) -> Result<(Uuid, u32, Encrypted)> {
        let d = self.decrypt(ciphertext_blob, source_ctx, None)?;
        let e = self.encrypt(dest_key, &d.plaintext, dest_ctx)?;
        Ok((d.key_id, d.version, e))
    }

    fn mac(&self, key: &str, message: &[u8]) -> Result<(Uuid, Hmac<Sha256>)> {
        if message.len() > MAX_MAC_MESSAGE {
            return Err(Error::Usage(format!(
                "the message is {} bytes; MACs are computed over at most {MAX_MAC_MESSAGE} bytes \
                 (MAC a digest of larger data)",
                message.len()
            )));
        }
        let id = self.resolve(key)?;
        let (_, m) = self
            .data
            .current_key(&id, KeySpec::Hmac256)
            .map_err(key_error)?;
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(m.expose()).expect("any key length");
        mac.update(message);
        Ok((id, mac))
    }

    /// HMAC-SHA-256 of `message` under an HMAC_256 key.
    pub fn generate_mac(&self, key: &str, message: &[u8]) -> Result<(Uuid, Vec<u8>)> {
        let (id, mac) = self.mac(key, message)?;
        Ok((id, mac.finalize().into_bytes().to_vec()))
    }

    /// Checks a MAC in constant time; a mismatch is an integrity error.
    pub fn verify_mac(&self, key: &str, message: &[u8], tag: &[u8]) -> Result<Uuid> {
        let (id, mac) = self.mac(key, message)?;
        mac.verify_slice(tag).map_err(|_| {
            Error::Integrity(format!(
                "the MAC is not valid for this message under key {id}: the message or the MAC was \
                 altered, or it was made with another key"
            ))
        })?;
        Ok(id)
    }
}
