//! Tampering with a small multi-frame message, at the library level: every
//! change is detected (security invariant 3: every byte of a message is
//! authenticated; truncation, reordering, splicing and trailing bytes are
//! errors), plaintext is released only frame by frame after each frame
//! authenticated, and the decrypt CLI leaves no output file (invariant 4).

mod util;

use std::io::{Read, Write};

use envarc::envelope::header::{ContentType, Header};
use envarc::envelope::pipeline::decrypt_stream;
use envarc::envelope::suite::frame_iv;
use envarc::envelope::{
    decrypt_to_vec, DataKey, DecryptOptions, Decryptor, EncryptOptions, EncryptionContext,
    Encryptor, Error, KeyProvider, RawAesKey, Suite,
};
use predicates::prelude::*;

const FRAME: usize = 64;
const SIZE: usize = 300;
/// Bytes of a regular frame: seq(4) | iv(12) | content(FRAME) | tag(16).
const REGULAR: usize = 4 + 12 + FRAME + 16;
/// Regular frames in the test message; the final frame holds the rest.
const REGULAR_FRAMES: usize = SIZE / FRAME;
const LAST_LEN: usize = SIZE - REGULAR_FRAMES * FRAME;

struct Sample {
    key: RawAesKey,
    opts: DecryptOptions,
    plaintext: Vec<u8>,
    message: Vec<u8>,
    header_len: usize,
}

fn context() -> EncryptionContext {
    [("purpose", "tamper-test"), ("repo", "r1")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn encrypt_opts(suite: Suite) -> EncryptOptions {
    EncryptOptions {
        suite,
        frame_length: FRAME as u32,
        context: context(),
    }
}

fn sample(suite: Suite) -> Sample {
    let key = RawAesKey::new("envarc", "tamper/v1", &util::random_bytes(1, 32)).unwrap();
    let plaintext = util::random_bytes(2, SIZE);
    let mut enc = Encryptor::new(&key, &encrypt_opts(suite), Vec::new()).unwrap();
    enc.write_all(&plaintext).unwrap();
    let (message, info) = enc.finish().unwrap();
    let header_len = info.header_len as usize;
    let body_end = header_len + REGULAR_FRAMES * REGULAR + 4 + 4 + 12 + 4 + LAST_LEN + 16;
    // Signed suites end with a footer: signature length (2) and a DER signature.
    let footer = if suite.is_signed() {
        2 + u16::from_be_bytes([message[body_end], message[body_end + 1]]) as usize
    } else {
        0
    };
    assert_eq!(
        message.len(),
        body_end + footer,
        "the layout this test relies on"
    );
    let opts = DecryptOptions {
        expected_context: context(),
        ..Default::default()
    };
    let s = Sample {
        key,
        opts,
        plaintext,
        message,
        header_len,
    };
    assert_eq!(
        s.decrypt(&s.message).unwrap(),
        s.plaintext,
        "untouched decrypts"
    );
    s
}

impl Sample {
    /// Decrypts with the streaming reader, and checks that the parallel
    /// pipeline (in batches of 1, 2 and many frames, so that frames straddle
    /// its chunks) gives the same plaintext or the same kind of error.
    fn decrypt(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        let serial = decrypt_to_vec(&self.key, &self.opts, message).map(|(_, pt)| pt);
        for batch in [Some(1), Some(2), None] {
            let piped = decrypt_stream(&self.key, &self.opts, message, Vec::new(), batch);
            match (&serial, &piped) {
                (Ok(a), Ok((_, b, n))) => {
                    assert_eq!(a, b, "batch {batch:?}");
                    assert_eq!(*n, a.len() as u64);
                }
                (Err(a), Err(b)) => assert_eq!(
                    std::mem::discriminant(a),
                    std::mem::discriminant(b),
                    "batch {batch:?}: {a} / {b}"
                ),
                (a, b) => panic!(
                    "batch {batch:?}: serial {:?}, pipeline {:?}",
                    a.as_ref().map(|_| ()).map_err(ToString::to_string),
                    b.as_ref().map(|_| ()).map_err(ToString::to_string)
                ),
            }
        }
        serial
    }

    /// Reads through `Read` until the error and returns what was released.
    fn released_before_error(&self, message: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        if let Ok(mut dec) = Decryptor::new(&self.key, &self.opts, message) {
            let mut buf = [0u8; 7];
            loop {
                match dec.read(&mut buf) {
                    Ok(0) => panic!("a tampered message read to its end"),
                    Ok(n) => out.extend_from_slice(&buf[..n]),
                    Err(_) => break,
                }
            }
        }
        out
    }

    /// Byte range of regular frame `seq` (1-based).
    fn frame(&self, seq: usize) -> std::ops::Range<usize> {
        let start = self.header_len + (seq - 1) * REGULAR;
        start..start + REGULAR
    }

    fn final_frame_start(&self) -> usize {
        self.header_len + REGULAR_FRAMES * REGULAR
    }
}

fn suites() -> [Suite; 3] {
    [
        Suite::Aes256GcmHkdfSha512Commit,
        Suite::Aes256GcmHkdfSha512CommitEcdsaP384,
        Suite::ChaCha20Poly1305HkdfSha512Commit,
    ]
}

/// Invariant 3: every byte is authenticated. Each position, three ways.
#[test]
fn invariant3_every_single_byte_flip_is_detected() {
    for suite in suites() {
        let s = sample(suite);
        for pos in 0..s.message.len() {
            for mask in [0x01u8, 0x80, 0xFF] {
                let mut m = s.message.clone();
                m[pos] ^= mask;
                let err = match s.decrypt(&m) {
                    Ok(_) => panic!("{suite:?}: flip {mask:#04x} at byte {pos} not detected"),
                    Err(e) => e,
                };
                if pos >= s.header_len {
                    assert!(
                        err.is_integrity(),
                        "{suite:?}: body flip at {pos} gave a non-integrity error: {err}"
                    );
                    // Plaintext comes out only for frames that authenticated: a
                    // prefix of whole frames before the damaged one.
                    let released = s.released_before_error(&m);
                    let damaged_frame = (pos - s.header_len) / REGULAR;
                    assert!(
                        released.len() <= damaged_frame * FRAME,
                        "{suite:?} at {pos}"
                    );
                    assert_eq!(released.len() % FRAME, 0, "{suite:?} at {pos}");
                    assert_eq!(released, s.plaintext[..released.len()]);
                }
            }
        }
    }
}

/// Invariant 3: truncation anywhere (inside the header, at every frame
/// boundary, inside every frame) is an error, never a shorter plaintext.
#[test]
fn invariant3_truncation_anywhere_is_detected() {
    let s = sample(Suite::Aes256GcmHkdfSha512Commit);
    let boundaries: Vec<usize> = (1..=REGULAR_FRAMES + 1)
        .map(|seq| s.header_len + (seq - 1) * REGULAR)
        .collect();
    for len in 0..s.message.len() {
        match s.decrypt(&s.message[..len]) {
            Err(Error::Truncated) => {}
            Err(e) => panic!("cut at {len}: expected Truncated, got {e}"),
            Ok(_) => panic!(
                "cut at {len} (frame boundary: {}) not detected",
                boundaries.contains(&len)
            ),
        }
    }
}

/// Invariant 3: bytes after the final frame, including a whole second
/// message, are an error.
#[test]
fn invariant3_appended_bytes_are_detected() {
    let s = sample(Suite::Aes256GcmHkdfSha512Commit);
    let tails: [Vec<u8>; 4] = [
        vec![0],
        vec![0xFF; 4],
        util::random_bytes(3, 1000),
        s.message.clone(),
    ];
    for tail in tails {
        let mut m = s.message.clone();
        m.extend_from_slice(&tail);
        assert!(
            matches!(s.decrypt(&m), Err(Error::TrailingData)),
            "{} trailing bytes not detected",
            tail.len()
        );
    }
}

/// Invariant 3: frames cannot be reordered, whether their sequence numbers
/// move with them or stay in place.
#[test]
fn invariant3_swapped_frames_are_detected() {
    let s = sample(Suite::Aes256GcmHkdfSha512Commit);
    for (a, b) in [(1, 2), (2, 3), (1, 4)] {
        let (fa, fb) = (s.frame(a), s.frame(b));
        // Whole frames swapped: the sequence numbers are out of order.
        let mut m = s.message.clone();
        let frame_a = s.message[fa.clone()].to_vec();
        m[fa.clone()].copy_from_slice(&s.message[fb.clone()]);
        m[fb.clone()].copy_from_slice(&frame_a);
        assert!(
            matches!(s.decrypt(&m), Err(Error::Sequence { .. })),
            "swap {a}<->{b}"
        );
        // Everything but the sequence numbers swapped: the IVs no longer
        // match the numbers.
        let mut m = s.message.clone();
        m[fa.start + 4..fa.end].copy_from_slice(&s.message[fb.start + 4..fb.end]);
        m[fb.start + 4..fb.end].copy_from_slice(&frame_a[4..]);
        assert!(
            matches!(s.decrypt(&m), Err(Error::FrameIv { sequence }) if sequence == a as u32),
            "swap {a}<->{b} keeping the numbers"
        );
        // Only content and tags swapped: the AAD binds the sequence number, so
        // the tags fail.
        let mut m = s.message.clone();
        m[fa.start + 16..fa.end].copy_from_slice(&s.message[fb.start + 16..fb.end]);
        m[fb.start + 16..fb.end].copy_from_slice(&frame_a[16..]);
        assert!(
            matches!(s.decrypt(&m), Err(Error::FrameAuth { sequence }) if sequence == a as u32),
            "swap {a}<->{b} keeping numbers and IVs"
        );
    }
}

/// Rewrites the sequence number and IV of the regular frame at `at` to `seq`.
fn renumber(m: &mut [u8], at: usize, seq: u32) {
    m[at..at + 4].copy_from_slice(&seq.to_be_bytes());
    m[at + 4..at + 12].fill(0);
    m[at + 12..at + 16].copy_from_slice(&seq.to_be_bytes());
}

/// Invariant 3: a dropped frame is detected, also when the later frames are
/// renumbered to hide the gap.
#[test]
fn invariant3_dropped_frame_is_detected() {
    let s = sample(Suite::Aes256GcmHkdfSha512Commit);
    for drop in 1..=REGULAR_FRAMES {
        let mut m = s.message.clone();
        m.drain(s.frame(drop));
        assert!(
            matches!(s.decrypt(&m), Err(Error::Sequence { expected, .. }) if expected == drop as u32),
            "frame {drop} dropped"
        );
        for seq in drop..REGULAR_FRAMES {
            renumber(&mut m, s.header_len + (seq - 1) * REGULAR, seq as u32);
        }
        let fin = s.final_frame_start() - REGULAR;
        m[fin + 4..fin + 8].copy_from_slice(&(REGULAR_FRAMES as u32).to_be_bytes());
        m[fin + 16..fin + 20].copy_from_slice(&(REGULAR_FRAMES as u32).to_be_bytes());
        assert!(
            matches!(s.decrypt(&m), Err(Error::FrameAuth { .. })),
            "frame {drop} dropped and the rest renumbered"
        );
    }
}

/// Invariant 3: cutting the final frame off and relabelling the last regular
/// frame as final (a truncation that keeps the structure valid) fails: the AAD
/// says which frames are final.
#[test]
fn invariant3_forged_final_frame_is_detected() {
    let s = sample(Suite::Aes256GcmHkdfSha512Commit);
    let last = s.frame(REGULAR_FRAMES);
    let mut m = s.message[..last.start].to_vec();
    m.extend_from_slice(&u32::MAX.to_be_bytes());
    m.extend_from_slice(&s.message[last.start..last.start + 16]);
    m.extend_from_slice(&(FRAME as u32).to_be_bytes());
    m.extend_from_slice(&s.message[last.start + 16..last.end]);
    assert!(matches!(
        s.decrypt(&m),
        Err(Error::FrameAuth { sequence }) if sequence == REGULAR_FRAMES as u32
    ));
}

/// Invariants 2 and 3: two messages under the same data key still get their
/// own derived keys (fresh message IDs), so frames or headers spliced between
/// them fail.
#[test]
fn invariant3_splicing_between_messages_is_detected() {
    let s = sample(Suite::Aes256GcmHkdfSha512Commit);
    let data_key = DataKey::generate();
    let edk = s.key.wrap(&data_key, &context()).unwrap();
    let opts = encrypt_opts(Suite::Aes256GcmHkdfSha512Commit);
    let write = |plaintext: &[u8]| {
        let mut enc =
            Encryptor::with_data_key(&data_key, vec![edk.clone()], &opts, Vec::new()).unwrap();
        enc.write_all(plaintext).unwrap();
        let (m, info) = enc.finish().unwrap();
        (m, info.header_len as usize)
    };
    let (a, ha) = write(&s.plaintext);
    let (b, hb) = write(&util::random_bytes(4, SIZE));
    assert_eq!(ha, hb);
    assert_ne!(a[3..35], b[3..35], "fresh message IDs");
    let frame2 = ha + REGULAR..ha + 2 * REGULAR;
    let mut m = a.clone();
    m[frame2.clone()].copy_from_slice(&b[frame2]);
    assert!(matches!(
        s.decrypt(&m),
        Err(Error::FrameAuth { sequence: 2 })
    ));
    let mut m = a[..ha].to_vec();
    m.extend_from_slice(&b[hb..]);
    assert!(matches!(
        s.decrypt(&m),
        Err(Error::FrameAuth { sequence: 1 })
    ));
    // The provider unwraps the same key for both; only the message ID differs.
    assert_eq!(
        s.key.decrypt_data_key(&[edk], &context()).unwrap().expose(),
        data_key.expose()
    );
}

/// Invariant 4 through the CLI: a damaged last frame and a cut at a frame
/// boundary both exit 4 and leave no output and no temporary file.
#[test]
fn invariant4_decrypt_cli_leaves_no_output_file() {
    let s = sample(Suite::Aes256GcmHkdfSha512Commit);
    let dir = util::tempdir();
    let key_file = dir.path().join("k");
    std::fs::write(&key_file, util::random_bytes(1, 32)).unwrap();
    let mut flipped = s.message.clone();
    *flipped.last_mut().unwrap() ^= 1;
    let cut = s.message[..s.final_frame_start()].to_vec();
    for (name, bytes) in [("flipped", flipped), ("cut", cut)] {
        std::fs::write(dir.path().join(name), bytes).unwrap();
        let before = util::dir_names(dir.path());
        util::envarc()
            .current_dir(dir.path())
            .arg("decrypt")
            .args(util::raw_key_args(&key_file, "tamper/v1"))
            .args(["-c", "repo=r1", name, "-o", "plain"])
            .assert()
            .code(4)
            .stdout(predicate::str::is_empty());
        assert_eq!(
            util::dir_names(dir.path()),
            before,
            "{name}: nothing left behind"
        );
    }
}

/// A test-only writer that chooses each frame's IV (`iv_of(seq)`) and seals
/// everything else correctly, under a raw AES key: the tags verify, so only
/// the IV check can refuse what it writes. `frame: 0` writes a non-framed body.
fn forge(
    key: &RawAesKey,
    plaintext: &[u8],
    frame: usize,
    iv_of: impl Fn(u32) -> [u8; 12],
) -> Vec<u8> {
    let suite = Suite::Aes256GcmHkdfSha512Commit;
    let data_key = DataKey::generate();
    let edk = key.wrap(&data_key, &context()).unwrap();
    let message_id = [0x42u8; 32];
    let (cipher, commitment) = suite.derive_committed(&data_key, &message_id).unwrap();
    let mut header = Header {
        suite,
        message_id: message_id.to_vec(),
        context: context(),
        edks: vec![edk],
        content_type: if frame == 0 {
            ContentType::NonFramed
        } else {
            ContentType::Framed
        },
        frame_length: frame as u32,
        commitment,
        auth_iv: [0; 12],
        auth_tag: [0; 16],
    };
    let mut m = header.serialize_authenticated().unwrap();
    header.auth_tag = cipher.seal_in_place(&[0; 12], &m, &mut []);
    m.extend_from_slice(&header.auth_tag);
    let aad = |kind: &str, seq: u32, len: usize| {
        [
            &message_id[..],
            kind.as_bytes(),
            &seq.to_be_bytes(),
            &(len as u64).to_be_bytes(),
        ]
        .concat()
    };
    if frame == 0 {
        let mut body = plaintext.to_vec();
        let iv = iv_of(1);
        let tag = cipher.seal_in_place(
            &iv,
            &aad("AWSKMSEncryptionClient Single Block", 1, body.len()),
            &mut body,
        );
        m.extend_from_slice(&iv);
        m.extend_from_slice(&(body.len() as u64).to_be_bytes());
        m.extend_from_slice(&body);
        m.extend_from_slice(&tag);
        return m;
    }
    let chunks: Vec<&[u8]> = plaintext.chunks(frame).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let seq = i as u32 + 1;
        let last = i + 1 == chunks.len();
        let kind = if last {
            "AWSKMSEncryptionClient Final Frame"
        } else {
            "AWSKMSEncryptionClient Frame"
        };
        let mut body = chunk.to_vec();
        let iv = iv_of(seq);
        let tag = cipher.seal_in_place(&iv, &aad(kind, seq, body.len()), &mut body);
        if last {
            m.extend_from_slice(&u32::MAX.to_be_bytes());
        }
        m.extend_from_slice(&seq.to_be_bytes());
        m.extend_from_slice(&iv);
        if last {
            m.extend_from_slice(&(body.len() as u32).to_be_bytes());
        }
        m.extend_from_slice(&body);
        m.extend_from_slice(&tag);
    }
    m
}

/// Invariant 2 on read: a frame IV must be the frame's sequence number
/// (big-endian, right-aligned), framed and non-framed, even when every tag
/// verifies. Through the library and through `envarc decrypt` (exit 4, no
/// output file left).
#[test]
fn invariant2_frame_ivs_that_are_not_sequence_numbers_are_refused() {
    let dir = util::tempdir();
    let key_file = dir.path().join("k");
    std::fs::write(&key_file, util::random_bytes(9, 32)).unwrap();
    let key = RawAesKey::new("envarc", "forge/v1", &util::random_bytes(9, 32)).unwrap();
    let opts = DecryptOptions::default();
    let plaintext = util::random_bytes(3, 4 * FRAME + 5);
    for frame in [FRAME, 0] {
        let honest = forge(&key, &plaintext, frame, frame_iv);
        assert_eq!(
            decrypt_to_vec(&key, &opts, &honest).unwrap().1,
            plaintext,
            "the forger is right"
        );
    }
    type IvOf = fn(u32) -> [u8; 12];
    let cases: [(&str, usize, IvOf, u32); 5] = [
        ("every frame reuses IV 1", FRAME, |_| frame_iv(1), 2),
        (
            "frame 3 off by one",
            FRAME,
            |s| frame_iv(if s == 3 { 4 } else { s }),
            3,
        ),
        (
            "final frame's IV zero",
            FRAME,
            |s| if s == 5 { [0; 12] } else { frame_iv(s) },
            5,
        ),
        (
            "left-aligned sequence",
            FRAME,
            |s| {
                let mut iv = [0; 12];
                iv[..4].copy_from_slice(&s.to_be_bytes());
                iv
            },
            1,
        ),
        ("non-framed body, IV zero", 0, |_| [0; 12], 1),
    ];
    for (name, frame, iv_of, bad_seq) in cases {
        let m = forge(&key, &plaintext, frame, iv_of);
        match decrypt_to_vec(&key, &opts, &m) {
            Err(Error::FrameIv { sequence }) => assert_eq!(sequence, bad_seq, "{name}"),
            other => panic!(
                "{name}: expected a frame IV error, got {:?}",
                other.map(|_| ())
            ),
        }
        std::fs::write(dir.path().join("forged"), &m).unwrap();
        let before = util::dir_names(dir.path());
        util::envarc()
            .current_dir(dir.path())
            .arg("decrypt")
            .args(util::raw_key_args(&key_file, "forge/v1"))
            .args(["forged", "-o", "plain"])
            .assert()
            .code(4)
            .stderr(predicate::str::contains("IV"));
        assert_eq!(
            util::dir_names(dir.path()),
            before,
            "{name}: nothing left behind"
        );
    }
}

/// Suite 0x0578 through the CLI: a flipped byte in the signature or in the
/// footer's length, a truncated footer, and a changed public key in the
/// context are each refused with nothing left behind. (Every other byte of a
/// signed message is covered by the flip test above.)
#[test]
fn signed_message_footer_and_public_key_tampering_is_refused_by_the_cli() {
    let s = sample(Suite::Aes256GcmHkdfSha512CommitEcdsaP384);
    let dir = util::tempdir();
    let key_file = dir.path().join("k");
    std::fs::write(&key_file, util::random_bytes(1, 32)).unwrap();
    let body_end = s.final_frame_start() + 4 + 4 + 12 + 4 + LAST_LEN + 16;
    let edit = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut m = s.message.clone();
        f(&mut m);
        m
    };
    // The public key's first base64 character encodes the point's 02/03 tag:
    // 'A' -> 'D' turns 02 into 03, the other valid point with that x.
    let key_at = {
        let b64 = s.message[..s.header_len]
            .windows(21)
            .position(|w| w == b"aws-crypto-public-key")
            .expect("the public key is in the header")
            + 21
            + 2;
        assert!(matches!(s.message[b64], b'A' | b'D'));
        b64
    };
    let cases: Vec<(&str, Vec<u8>, &[i32])> = vec![
        ("signature", edit(&|m| *m.last_mut().unwrap() ^= 1), &[4]),
        (
            "signature middle",
            edit(&|m| m[body_end + 40] ^= 0x10),
            &[4],
        ),
        ("footer length", edit(&|m| m[body_end + 1] ^= 1), &[4]),
        (
            "footer truncated",
            edit(&|m| {
                m.pop();
            }),
            &[4],
        ),
        ("footer missing", s.message[..body_end].to_vec(), &[4]),
        ("public key", edit(&|m| m[key_at] ^= b'A' ^ b'D'), &[4, 5]),
    ];
    for (name, bytes, codes) in cases {
        assert!(s.decrypt(&bytes).is_err(), "{name}: the library refuses it");
        std::fs::write(dir.path().join(name), bytes).unwrap();
        let before = util::dir_names(dir.path());
        let out = util::envarc()
            .current_dir(dir.path())
            .arg("decrypt")
            .args(util::raw_key_args(&key_file, "tamper/v1"))
            .args(["-c", "repo=r1", name, "-o", "plain"])
            .output()
            .unwrap();
        let code = out.status.code().unwrap();
        assert!(
            codes.contains(&code),
            "{name}: exit {code}, wanted one of {codes:?}"
        );
        assert!(out.stdout.is_empty(), "{name}");
        assert_eq!(
            util::dir_names(dir.path()),
            before,
            "{name}: nothing left behind"
        );
    }
}
