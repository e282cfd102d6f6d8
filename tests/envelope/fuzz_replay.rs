//! The fuzz targets in the normal test suite: every seed of the fuzz corpus
//! and every input that once crashed a target (kept under
//! `fixtures/fuzz/<target>/`) runs through its target, whose checks must
//! hold. The coverage-guided runs themselves are `.ci/fuzz.sh`.

use crate::{seeds, targets, util};

use std::path::Path;

#[test]
fn every_seed_passes_its_target() {
    let vectors = util::esdk_vectors_dir();
    let seeds = seeds::seeds(Some(&vectors));
    for (name, _) in targets::TARGETS {
        let n = seeds.iter().filter(|(t, _)| t == name).count();
        assert!(n > 0, "target {name} has no seed");
    }
    for (name, data) in &seeds {
        assert!(targets::run(name, data), "seed for unknown target {name}");
    }
    eprintln!("{} seeds replayed", seeds.len());
}

#[test]
fn saved_crash_inputs_stay_fixed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/fuzz");
    let mut replayed = 0;
    for t in util::dir_names(&dir) {
        for f in util::dir_names(&dir.join(&t)) {
            let data = std::fs::read(dir.join(&t).join(&f)).expect("reading a saved input");
            eprintln!("replaying fixtures/fuzz/{t}/{f}");
            assert!(
                targets::run(&t, &data),
                "fixtures/fuzz/{t}: no such fuzz target"
            );
            replayed += 1;
        }
    }
    assert!(
        replayed > 0,
        "fixtures/fuzz holds the inputs that once crashed"
    );
}

/// The seeds' keys are what the targets expect: a seed EDK of the fixed
/// keyring unwraps and a seed body decrypts (else the fuzzer would never get
/// past the key checks, and the oracles would check nothing).
#[test]
fn seeds_reach_past_the_key_checks() {
    use envarc::envelope::{DecryptOptions, KeyProvider};
    let m = targets::fixed_message();
    let mut msg = m.header.clone();
    msg.extend_from_slice(&m.body);
    let opts = DecryptOptions {
        expected_context: targets::sample_context(),
        ..Default::default()
    };
    let (_, plain) = envarc::envelope::decrypt_to_vec(&targets::raw_key(), &opts, &msg).unwrap();
    assert_eq!(plain, m.plaintext);
    let kr = &targets::fixed_keyring().keyring;
    let p = kr.provider(targets::KEYRING_KEY_ID).unwrap();
    let ctx = targets::sample_context();
    let (dk, edks) = p.generate_data_key(&ctx).unwrap();
    assert_eq!(
        kr.decrypt_provider()
            .decrypt_data_key(&edks, &ctx)
            .unwrap()
            .expose(),
        dk.expose()
    );
}
