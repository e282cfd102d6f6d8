//! [`decrypt_in_place`] against the streaming reader: the same plaintext for
//! an intact message, the same kind of error for every altered byte, every
//! cut and a trailing byte.

use std::io::Write;

use super::decrypt_in_place;
use crate::envelope::{
    decrypt_to_vec, DecryptOptions, EncryptOptions, Encryptor, Error, RawAesKey, Suite,
};

fn key() -> RawAesKey {
    RawAesKey::new("envarc", "in-place/v1", &[7u8; 32]).unwrap()
}

fn message(suite: Suite, frame: u32, len: usize) -> (Vec<u8>, Vec<u8>) {
    let plain: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
    let opts = EncryptOptions {
        suite,
        frame_length: frame,
        ..Default::default()
    };
    let mut enc = Encryptor::new(&key(), &opts, Vec::new()).unwrap();
    enc.write_all(&plain).unwrap();
    (enc.finish().unwrap().0, plain)
}

fn in_place(message: &[u8]) -> Result<Vec<u8>, Error> {
    let mut buf = message.to_vec();
    let (_, ranges) = decrypt_in_place(&key(), &DecryptOptions::default(), &mut buf, true)?;
    Ok(ranges.into_iter().flat_map(|r| buf[r].to_vec()).collect())
}

fn same(message: &[u8], what: &str) {
    let serial = decrypt_to_vec(&key(), &DecryptOptions::default(), message).map(|(_, p)| p);
    match (serial, in_place(message)) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "{what}"),
        (Err(a), Err(b)) => assert_eq!(
            std::mem::discriminant(&a),
            std::mem::discriminant(&b),
            "{what}: {a} / {b}"
        ),
        (a, b) => panic!(
            "{what}: streaming {:?}, in place {:?}",
            a.is_ok(),
            b.is_ok()
        ),
    }
}

#[test]
fn in_place_matches_the_streaming_reader_on_every_change() {
    for suite in [
        Suite::Aes256GcmHkdfSha512Commit,
        Suite::Aes256GcmHkdfSha512CommitEcdsaP384,
    ] {
        let (msg, plain) = message(suite, 64, 300);
        assert_eq!(in_place(&msg).unwrap(), plain);
        for at in 0..msg.len() {
            let mut bad = msg.clone();
            bad[at] ^= 0x40;
            same(&bad, &format!("{suite:?} byte {at} flipped"));
        }
        for cut in 0..msg.len() {
            same(&msg[..cut], &format!("{suite:?} cut at {cut}"));
            assert!(in_place(&msg[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = msg.clone();
        long.push(0);
        assert!(matches!(in_place(&long), Err(Error::TrailingData)));
    }
}

#[test]
fn in_place_opens_many_frames_in_parallel_and_names_a_bad_one() {
    // 1 MiB in 4 KiB frames: above the size at which frames go to the pool.
    let (mut msg, plain) = message(Suite::Aes256GcmHkdfSha512Commit, 4096, 1 << 20);
    assert_eq!(in_place(&msg).unwrap(), plain);
    let at = msg.len() / 2;
    msg[at] ^= 1;
    let Err(Error::FrameAuth { sequence }) = in_place(&msg) else {
        panic!("a flipped byte in the middle of the body is a frame's tag failure");
    };
    assert!((100..160).contains(&sequence), "{sequence}");
}
