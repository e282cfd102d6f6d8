//! ECDSA P-384 message signatures: suite 0x0578 (the official SDKs' default).
//!
//! A signed message carries a per-message public key in its encryption context
//! under `aws-crypto-public-key` (base64 of the SEC1 compressed point), and a
//! footer after the final frame: `signature length (2) | DER signature`, over
//! the SHA-384 hash of every byte of the header and the body. The key pair is
//! fresh per message and the private half is dropped (zeroized) once the footer
//! is written, so whoever holds the data key can decrypt but cannot forge: a
//! reader that trusts the public key only through the header still refuses a
//! message whose body another data-key holder rewrote.

use base64::Engine;
use p384::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use p384::ecdsa::{Signature, SigningKey, VerifyingKey};
use sha2::{Digest, Sha384};

use super::{EncryptionContext, Error};

/// The context key under which signing suites store their public key.
pub const PUBLIC_KEY_CONTEXT_KEY: &str = "aws-crypto-public-key";

/// Length of a compressed P-384 point: tag byte and the 48-byte x coordinate.
const COMPRESSED_POINT_LEN: usize = 49;

/// A DER ECDSA P-384 signature is at most 104 bytes; anything longer is not one,
/// and refusing it early keeps a hostile footer from being read at length.
pub const MAX_SIGNATURE_LEN: usize = 104;

/// The writing side: a fresh key pair and the running hash of the message.
/// No `Debug`; the private key zeroizes on drop (p384's `SigningKey`).
pub struct Signer {
    key: SigningKey,
    hash: Sha384,
}

impl Signer {
    pub fn generate() -> Signer {
        Signer {
            key: SigningKey::random(&mut rand::rngs::OsRng),
            hash: Sha384::new(),
        }
    }

    /// The value of `aws-crypto-public-key` for this message.
    pub fn public_key_b64(&self) -> String {
        let point = self.key.verifying_key().to_encoded_point(true);
        base64::engine::general_purpose::STANDARD.encode(point.as_bytes())
    }

    /// Hashes bytes of the message (header and body, in order).
    pub fn update(&mut self, bytes: &[u8]) {
        self.hash.update(bytes);
    }

    /// Signs what was hashed and returns the footer bytes.
    pub fn footer(self) -> Result<Vec<u8>, Error> {
        let digest = self.hash.finalize();
        let sig: Signature = self
            .key
            .sign_prehash(&digest)
            .map_err(|_| Error::Invalid("ECDSA P-384 signing failed".into()))?;
        let der = sig.to_der();
        let der = der.as_bytes();
        let mut out = Vec::with_capacity(2 + der.len());
        out.extend_from_slice(&(der.len() as u16).to_be_bytes());
        out.extend_from_slice(der);
        Ok(out)
    }
}

/// The reading side: the public key from the header and the running hash.
pub struct Verifier {
    key: VerifyingKey,
    hash: Sha384,
}

impl Verifier {
    /// Takes the public key from a signed message's stored context. Missing,
    /// not base64, not a compressed point, or not on the curve: malformed.
    pub fn from_context(ctx: &EncryptionContext) -> Result<Verifier, Error> {
        let b64 = ctx.get(PUBLIC_KEY_CONTEXT_KEY).ok_or_else(|| {
            Error::Malformed(format!(
                "this suite signs its messages, but the encryption context holds no '{PUBLIC_KEY_CONTEXT_KEY}'"
            ))
        })?;
        let bad = || {
            Error::Malformed(format!(
                "'{PUBLIC_KEY_CONTEXT_KEY}' in the encryption context is not a base64 compressed P-384 point"
            ))
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| bad())?;
        if bytes.len() != COMPRESSED_POINT_LEN || !matches!(bytes[0], 2 | 3) {
            return Err(bad());
        }
        let key = VerifyingKey::from_sec1_bytes(&bytes).map_err(|_| bad())?;
        Ok(Verifier {
            key,
            hash: Sha384::new(),
        })
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.hash.update(bytes);
    }

    /// Checks the DER signature of the footer against everything hashed.
    pub fn verify(self, der: &[u8]) -> Result<(), Error> {
        let sig = Signature::from_der(der).map_err(|_| Error::SignatureAuth)?;
        self.key
            .verify_prehash(&self.hash.finalize(), &sig)
            .map_err(|_| Error::SignatureAuth)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_footer(f: &[u8]) -> &[u8] {
        let n = u16::from_be_bytes([f[0], f[1]]) as usize;
        assert_eq!(f.len(), 2 + n);
        &f[2..]
    }

    #[test]
    fn sign_verify_and_refuse_changes() {
        let mut s = Signer::generate();
        let mut ctx = EncryptionContext::new();
        ctx.insert(PUBLIC_KEY_CONTEXT_KEY.into(), s.public_key_b64());
        s.update(b"header");
        s.update(b"body");
        let footer = s.footer().unwrap();
        let der = parse_footer(&footer);
        assert!(der.len() <= MAX_SIGNATURE_LEN);

        let verify = |parts: &[&[u8]], der: &[u8]| {
            let mut v = Verifier::from_context(&ctx).unwrap();
            for p in parts {
                v.update(p);
            }
            v.verify(der)
        };
        // Hash boundaries do not matter, only the bytes.
        verify(&[b"head", b"erbody"], der).unwrap();
        assert!(matches!(
            verify(&[b"header", b"bodY"], der),
            Err(Error::SignatureAuth)
        ));
        let mut bad = der.to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(matches!(
            verify(&[b"header", b"body"], &bad),
            Err(Error::SignatureAuth)
        ));
    }

    #[test]
    fn public_key_must_be_a_compressed_point() {
        let s = Signer::generate();
        let good = s.public_key_b64();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&good)
            .unwrap();
        let mut flipped = raw.clone();
        flipped[0] ^= 1; // 02 <-> 03: the other point with that x, still valid
        let mut off_curve = raw.clone();
        off_curve[48] ^= 0x55;
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let ctx = |v: &str| {
            let mut c = EncryptionContext::new();
            c.insert(PUBLIC_KEY_CONTEXT_KEY.into(), v.into());
            c
        };
        assert!(Verifier::from_context(&ctx(&good)).is_ok());
        assert!(Verifier::from_context(&ctx(&b64(&flipped))).is_ok());
        for bad in [
            "not base64!".to_string(),
            b64(&raw[..48]),
            b64(&[&[4u8][..], &raw[1..]].concat()),
        ] {
            assert!(
                matches!(Verifier::from_context(&ctx(&bad)), Err(Error::Malformed(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            Verifier::from_context(&EncryptionContext::new()),
            Err(Error::Malformed(_))
        ));
        // A point not on the curve is refused (about half of all x values are not).
        let _ = Verifier::from_context(&ctx(&b64(&off_curve)));
    }
}
