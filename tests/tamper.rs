//! Tampering with a small multi-frame message, at the library level: every
//! change is detected (security invariant 3: every byte of a message is
//! authenticated; truncation, reordering, splicing and trailing bytes are
//! errors), plaintext is released only frame by frame after each frame
//! authenticated, and the decrypt CLI leaves no output file (invariant 4).

mod util;

use std::io::{Read, Write};

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
    assert_eq!(
        message.len(),
        header_len + REGULAR_FRAMES * REGULAR + 4 + 4 + 12 + 4 + LAST_LEN + 16,
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
    fn decrypt(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        decrypt_to_vec(&self.key, &self.opts, message).map(|(_, pt)| pt)
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

fn suites() -> [Suite; 2] {
    [
        Suite::Aes256GcmHkdfSha512Commit,
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
        // Everything but the sequence numbers swapped: the AAD binds the
        // sequence number, so the tags fail.
        let mut m = s.message.clone();
        m[fa.start + 4..fa.end].copy_from_slice(&s.message[fb.start + 4..fb.end]);
        m[fb.start + 4..fb.end].copy_from_slice(&frame_a[4..]);
        assert!(
            matches!(s.decrypt(&m), Err(Error::FrameAuth { sequence }) if sequence == a as u32),
            "swap {a}<->{b} keeping the numbers"
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
