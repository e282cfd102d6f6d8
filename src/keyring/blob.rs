//! The ciphertext blob of the small-payload operations (`key encrypt`,
//! `generate-data-key`, `re-encrypt`): a compact, documented format that names
//! the CMK and the backing-key version, so Decrypt needs no key id.
//!
//! ```text
//! "EVB" 0x01        4 bytes: magic and format version
//! CMK id            16 bytes (UUID)
//! backing version   u32 big-endian
//! IV                12 random bytes
//! ciphertext || tag AES-256-GCM, 16-byte tag
//! ```
//!
//! The AES key is HKDF-SHA-256(IKM = backing-key material, salt = none,
//! info = "envarc blob v1" || CMK id || version), so blobs and the raw-AES EDKs
//! that the same backing key wraps never share a key. The AAD is the first 24
//! bytes followed by the ESDK serialization of the encryption context: as in
//! KMS, the context is not stored and must be given again to decrypt.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use sha2::Sha256;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::envelope::{context, EncryptionContext};
use crate::{Error, Result};

const MAGIC: &[u8; 4] = b"EVB\x01";
const HEADER_LEN: usize = 4 + 16 + 4;
const IV_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// The largest plaintext of `key encrypt`, as in KMS.
pub const MAX_PLAINTEXT: usize = 4096;

fn cipher(material: &[u8; 32], header: &[u8]) -> Aes256Gcm {
    let hk = Hkdf::<Sha256>::new(None, material);
    let mut info = b"envarc blob v1".to_vec();
    info.extend_from_slice(&header[4..HEADER_LEN]);
    let mut key = Zeroizing::new([0u8; 32]);
    hk.expand(&info, key.as_mut())
        .expect("32 bytes is a valid HKDF-SHA-256 output length");
    Aes256Gcm::new_from_slice(key.as_ref()).expect("32-byte key")
}

fn aad(header: &[u8], ctx: &EncryptionContext) -> Result<Vec<u8>> {
    let mut aad = header.to_vec();
    aad.extend_from_slice(&context::serialize(ctx)?);
    Ok(aad)
}

/// Encrypts `plaintext` (at most [`MAX_PLAINTEXT`] bytes) under one backing key.
pub fn seal(
    material: &[u8; 32],
    key_id: &Uuid,
    version: u32,
    plaintext: &[u8],
    ctx: &EncryptionContext,
) -> Result<Vec<u8>> {
    if plaintext.len() > MAX_PLAINTEXT {
        return Err(Error::Usage(format!(
            "the plaintext is {} bytes; `key encrypt` takes at most {MAX_PLAINTEXT} bytes \
             (use `envarc encrypt` for files)",
            plaintext.len()
        )));
    }
    let mut out = Vec::with_capacity(HEADER_LEN + IV_LEN + plaintext.len() + TAG_LEN);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(key_id.as_bytes());
    out.extend_from_slice(&version.to_be_bytes());
    let mut iv = [0u8; IV_LEN];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut iv);
    let aad = aad(&out, ctx)?;
    let ct = cipher(material, &out)
        .encrypt(
            &Nonce::from(iv),
            Payload {
                msg: plaintext,
                aad: &aad,
            },
        )
        .map_err(|_| Error::Other("AES-GCM encryption failed".into()))?;
    out.extend_from_slice(&iv);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// The CMK id and backing-key version a blob names (no key needed).
pub fn key_of(blob: &[u8]) -> Result<(Uuid, u32)> {
    if blob.len() < HEADER_LEN + IV_LEN + TAG_LEN || &blob[..4] != MAGIC {
        return Err(Error::Integrity(
            "this is not an envarc ciphertext blob (wrong magic or too short); it must be the \
             raw bytes that `envarc key encrypt` or `generate-data-key` wrote"
                .into(),
        ));
    }
    let id = Uuid::from_slice(&blob[4..20]).expect("16 bytes");
    let version = u32::from_be_bytes(blob[20..24].try_into().expect("4 bytes"));
    Ok((id, version))
}

/// Decrypts a blob with the backing key it names.
pub fn open(
    material: &[u8; 32],
    blob: &[u8],
    ctx: &EncryptionContext,
) -> Result<Zeroizing<Vec<u8>>> {
    key_of(blob)?;
    let header = &blob[..HEADER_LEN];
    let iv = &blob[HEADER_LEN..HEADER_LEN + IV_LEN];
    let aad = aad(header, ctx)?;
    cipher(material, header)
        .decrypt(
            &Nonce::try_from(iv).expect("IV_LEN bytes, checked by key_of"),
            Payload {
                msg: &blob[HEADER_LEN + IV_LEN..],
                aad: &aad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| {
            Error::Integrity(
                "the ciphertext blob failed authentication: it was altered, or the encryption \
                 context differs from the one it was encrypted with (give the same -c pairs)"
                    .into(),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_binds_key_version_and_context() {
        let m = [9u8; 32];
        let id = Uuid::new_v4();
        let mut ctx = EncryptionContext::new();
        ctx.insert("purpose".into(), "test".into());
        let b = seal(&m, &id, 3, b"secret", &ctx).unwrap();
        assert_eq!(b.len(), 24 + 12 + 6 + 16);
        assert_eq!(key_of(&b).unwrap(), (id, 3));
        assert_eq!(&open(&m, &b, &ctx).unwrap()[..], b"secret");
        assert!(open(&m, &b, &EncryptionContext::new()).is_err());
        assert!(open(&[8u8; 32], &b, &ctx).is_err());
        let mut other = b.clone();
        other[23] = 4; // claims another version: different key and AAD
        assert!(open(&m, &other, &ctx).is_err());
        assert!(key_of(&b[..30]).is_err());
        assert!(seal(&m, &id, 1, &[0u8; 4097], &ctx).is_err());
    }
}
