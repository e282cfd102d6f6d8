//! One libFuzzer binary for every target: `ENVARC_FUZZ_TARGET=NAME fuzz
//! [libFuzzer options] CORPUS...` (see `.ci/fuzz.sh`). With
//! `ENVARC_FUZZ_WRITE_SEEDS=OUT_DIR` (and optionally `ENVARC_ESDK_VECTORS`),
//! it writes the seed corpus to `OUT_DIR/<target>/` and exits instead: a
//! separate binary would need the instrumentation's runtime, which only
//! libFuzzer provides.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use envarc_fuzz::targets::TARGETS;

fn target() -> &'static str {
    static T: OnceLock<String> = OnceLock::new();
    T.get_or_init(|| {
        let name = std::env::var("ENVARC_FUZZ_TARGET").unwrap_or_default();
        if !TARGETS.iter().any(|(n, _)| *n == name) {
            let names: Vec<&str> = TARGETS.iter().map(|t| t.0).collect();
            eprintln!("set ENVARC_FUZZ_TARGET to one of: {}", names.join(" "));
            std::process::exit(2);
        }
        name
    })
}

fn write_seeds(out: &Path) {
    let vectors = std::env::var_os("ENVARC_ESDK_VECTORS").map(PathBuf::from);
    let seeds = envarc_fuzz::seeds::seeds(vectors.as_deref());
    for (n, (t, data)) in seeds.iter().enumerate() {
        let dir = out.join(t);
        std::fs::create_dir_all(&dir).expect("creating the corpus folder");
        std::fs::write(dir.join(format!("seed-{n:03}")), data).expect("writing a seed");
    }
    eprintln!("{} seeds written to {}", seeds.len(), out.display());
}

libfuzzer_sys::fuzz_target!(
    init: {
        if let Some(out) = std::env::var_os("ENVARC_FUZZ_WRITE_SEEDS") {
            write_seeds(Path::new(&out));
            std::process::exit(0);
        }
        target();
    },
    |data: &[u8]| {
        envarc_fuzz::targets::run(target(), data);
    }
);
