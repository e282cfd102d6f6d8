//! The terminal rendering of [`Progress`] with indicatif.

use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::progress::Progress;

pub struct Bar {
    /// The current bar, and whether it counts bytes (else items).
    bar: Mutex<Option<(ProgressBar, bool)>>,
}

impl Bar {
    pub fn new() -> Bar {
        Bar {
            bar: Mutex::new(None),
        }
    }
}

impl Progress for Bar {
    fn start(&self, phase: &str, total_items: Option<u64>, total_bytes: Option<u64>) {
        let pb = match total_bytes {
            Some(b) => {
                let pb = ProgressBar::with_draw_target(Some(b), ProgressDrawTarget::stderr());
                pb.set_style(
                    ProgressStyle::with_template(
                        "{prefix:>12} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}",
                    )
                    .unwrap()
                    .progress_chars("=> "),
                );
                pb
            }
            None => {
                let pb = ProgressBar::with_draw_target(total_items, ProgressDrawTarget::stderr());
                pb.set_style(
                    ProgressStyle::with_template("{prefix:>12} {spinner} {pos} {msg}").unwrap(),
                );
                pb
            }
        };
        pb.set_prefix(phase.to_string());
        pb.enable_steady_tick(Duration::from_millis(200));
        if let Some((old, _)) = self
            .bar
            .lock()
            .unwrap()
            .replace((pb, total_bytes.is_some()))
        {
            old.finish_and_clear();
        }
    }

    fn item(&self, name: &str) {
        if let Some((pb, _)) = &*self.bar.lock().unwrap() {
            pb.set_message(name.to_string());
        }
    }

    fn advance(&self, items: u64, bytes: u64) {
        if let Some((pb, bytes_mode)) = &*self.bar.lock().unwrap() {
            if *bytes_mode {
                pb.inc(bytes);
            } else {
                pb.inc(items);
            }
        }
    }

    fn warn(&self, message: &str) {
        match &*self.bar.lock().unwrap() {
            Some((pb, _)) => pb.suspend(|| eprintln!("envarc: warning: {message}")),
            None => eprintln!("envarc: warning: {message}"),
        }
    }

    fn finish(&self) {
        if let Some((pb, _)) = self.bar.lock().unwrap().take() {
            pb.finish_and_clear();
        }
    }
}
