//! Property tests of whole round trips: any size (0 to ~300 KiB), any frame
//! length (1 to ~70,000, tiny ones included), any context, both suites; the
//! message has exactly the framed layout, and decrypting through `Read` with
//! arbitrary small reads gives the same bytes as `copy_to`. The parallel
//! pipeline (any batch size, input arriving in uneven reads) writes messages
//! of the same layout, and reads both its own and the streaming writer's.

use std::io::{Read, Write};

use envarc::envelope::pipeline::{decrypt_stream, encrypt_stream};
use envarc::envelope::{
    decrypt_to_vec, DecryptOptions, Decryptor, EncryptOptions, EncryptionContext, Encryptor,
    RawAesKey, Suite,
};
use proptest::prelude::*;

fn key() -> RawAesKey {
    RawAesKey::new("envarc", "props/v1", &[42u8; 32]).unwrap()
}

/// (size, frame length): tiny frames get small sizes so that a case stays fast
/// (the per-frame cost dominates); larger frames get sizes up to ~300 KiB.
fn size_and_frame() -> impl Strategy<Value = (usize, u32)> {
    prop_oneof![
        (0usize..4_000, 1u32..=64),
        (0usize..300_000, 65u32..=70_000),
        // Sizes at and around a multiple of the frame length.
        (1u32..=5_000, 0usize..4, 0usize..3)
            .prop_map(|(f, k, d)| { ((f as usize * k + d).saturating_sub(1), f) }),
    ]
}

fn context() -> impl Strategy<Value = EncryptionContext> {
    prop::collection::btree_map("[a-z][a-z0-9_.]{0,11}", "\\PC{0,16}", 0..4)
}

fn suite() -> impl Strategy<Value = Suite> {
    prop_oneof![
        Just(Suite::Aes256GcmHkdfSha512Commit),
        Just(Suite::Aes256GcmHkdfSha512CommitEcdsaP384),
        Just(Suite::ChaCha20Poly1305HkdfSha512Commit),
    ]
}

/// A reader that hands out its bytes in the given uneven pieces.
struct Uneven<'a> {
    rest: &'a [u8],
    sizes: Vec<usize>,
    next: usize,
}

impl Read for Uneven<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = self.sizes[self.next % self.sizes.len()]
            .min(out.len())
            .min(self.rest.len());
        self.next += 1;
        out[..n].copy_from_slice(&self.rest[..n]);
        self.rest = &self.rest[n..];
        Ok(n)
    }
}

/// Footer bytes of a signed message (length and DER signature), else 0.
fn footer_len(message: &[u8], suite: Suite) -> u64 {
    if !suite.is_signed() {
        return 0;
    }
    // The DER signature is 8..=104 bytes; its length sits just before it.
    (8..=104u64)
        .find(|&n| {
            let at = message.len() - n as usize - 2;
            u16::from_be_bytes([message[at], message[at + 1]]) as u64 == n
        })
        .map_or(u64::MAX, |n| n + 2)
}

fn body_len(size: u64, frame: u64) -> u64 {
    let regular = if size == 0 { 0 } else { (size - 1) / frame };
    let last = size - regular * frame;
    regular * (4 + 12 + frame + 16) + (4 + 4 + 12 + 4 + last + 16)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn round_trip(
        (size, frame_length) in size_and_frame(),
        context in context(),
        suite in suite(),
        seed in any::<u64>(),
        write_chunks in prop::collection::vec(1usize..20_000, 1..8),
        read_chunks in prop::collection::vec(1usize..300, 1..16),
        batch in prop_oneof![Just(None), (1usize..5).prop_map(Some)],
    ) {
        let plaintext: Vec<u8> = (0..size).map(|i| (i as u64).wrapping_mul(seed | 1).to_le_bytes()[7]).collect();
        let opts = EncryptOptions { suite, frame_length, context: context.clone() };
        // Written in uneven pieces: the framing must not depend on them.
        let mut enc = Encryptor::new(&key(), &opts, Vec::new()).unwrap();
        let mut rest = &plaintext[..];
        for n in write_chunks.iter().cycle() {
            if rest.is_empty() { break; }
            let n = (*n).min(rest.len());
            enc.write_all(&rest[..n]).unwrap();
            rest = &rest[n..];
        }
        let (message, info) = enc.finish().unwrap();
        prop_assert_eq!(info.total_len, message.len() as u64);
        prop_assert_eq!(info.plaintext_len, size as u64);
        prop_assert_eq!(
            info.total_len - info.header_len,
            body_len(size as u64, frame_length.into()) + footer_len(&message, suite)
        );
        prop_assert_eq!(u16::from_be_bytes([message[1], message[2]]), suite.id());

        let dopts = DecryptOptions { expected_context: context.clone(), ..Default::default() };
        let (header, back) = decrypt_to_vec(&key(), &dopts, &message).unwrap();
        prop_assert!(back == plaintext, "copy_to differs");
        let mut stored = header.context.clone();
        prop_assert_eq!(stored.remove("aws-crypto-public-key").is_some(), suite.is_signed());
        prop_assert_eq!(&stored, &context);
        prop_assert_eq!(header.frame_length, frame_length);
        prop_assert_eq!(header.suite, suite);

        // Read with small, varying buffer sizes.
        let mut dec = Decryptor::new(&key(), &DecryptOptions::default(), message.as_slice()).unwrap();
        let mut got = Vec::with_capacity(size);
        let mut buf = vec![0u8; 300];
        for n in read_chunks.iter().cycle() {
            let k = dec.read(&mut buf[..*n]).unwrap();
            if k == 0 { break; }
            got.extend_from_slice(&buf[..k]);
        }
        prop_assert!(got == plaintext, "Read differs");
        let info = dec.finish().unwrap();
        prop_assert_eq!(info.plaintext_len, size as u64);
        prop_assert_eq!(info.total_len, message.len() as u64);

        // The pipeline: same layout, reads both messages.
        let input = Uneven { rest: &plaintext, sizes: write_chunks.clone(), next: 0 };
        let (piped, pinfo) = encrypt_stream(&key(), &opts, input, Vec::new(), batch).unwrap();
        prop_assert_eq!(pinfo.total_len, piped.len() as u64);
        prop_assert_eq!(pinfo.plaintext_len, size as u64);
        prop_assert_eq!(
            pinfo.total_len - pinfo.header_len,
            body_len(size as u64, frame_length.into()) + footer_len(&piped, suite)
        );
        prop_assert!(decrypt_to_vec(&key(), &dopts, &piped).unwrap().1 == plaintext);
        for m in [&message, &piped] {
            let input = Uneven { rest: m, sizes: read_chunks.clone(), next: 0 };
            let (h, out, n) = decrypt_stream(&key(), &dopts, input, Vec::new(), batch).unwrap();
            prop_assert!(out == plaintext, "pipeline decrypt differs");
            prop_assert_eq!(n, size as u64);
            prop_assert_eq!(h.suite, suite);
        }
    }
}
