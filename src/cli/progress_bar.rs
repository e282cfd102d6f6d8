//! The terminal rendering of [`Progress`] with indicatif.

use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressFinish, ProgressStyle};

use crate::progress::Progress;

struct State {
    pb: ProgressBar,
    /// The bar counts bytes (else items).
    bytes_mode: bool,
    /// In bytes mode with a known item total: items done, shown in the message.
    items: Option<(u64, u64)>,
    current: String,
}

impl State {
    fn refresh_message(&self) {
        match self.items {
            Some((done, total)) => self
                .pb
                .set_message(format!("{done}/{total} files  {}", self.current)),
            None => self.pb.set_message(self.current.clone()),
        }
    }
}

pub struct Bar {
    state: Mutex<Option<State>>,
}

impl Bar {
    pub fn new() -> Bar {
        Bar {
            state: Mutex::new(None),
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
                        "{prefix:>12} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} {wide_msg}",
                    )
                    .unwrap()
                    .progress_chars("=> "),
                );
                pb
            }
            None => {
                let pb = ProgressBar::with_draw_target(total_items, ProgressDrawTarget::stderr());
                pb.set_style(
                    ProgressStyle::with_template("{prefix:>12} {spinner} {pos} {wide_msg}")
                        .unwrap(),
                );
                pb
            }
        };
        // A run that ends in an error (or an interrupt) drops the bar
        // without `finish`: clear it then too, so no half line is left.
        let pb = pb.with_finish(ProgressFinish::AndClear);
        pb.set_prefix(phase.to_string());
        pb.enable_steady_tick(Duration::from_millis(200));
        let state = State {
            pb,
            bytes_mode: total_bytes.is_some(),
            items: total_bytes.and(total_items).map(|t| (0, t)),
            current: String::new(),
        };
        if let Some(old) = self.state.lock().unwrap().replace(state) {
            old.pb.finish_and_clear();
        }
    }

    fn item(&self, name: &str) {
        if let Some(s) = &mut *self.state.lock().unwrap() {
            s.current = name.to_string();
            s.refresh_message();
        }
    }

    fn advance(&self, items: u64, bytes: u64) {
        if let Some(s) = &mut *self.state.lock().unwrap() {
            if s.bytes_mode {
                s.pb.inc(bytes);
                if let (Some((done, _)), true) = (&mut s.items, items > 0) {
                    *done += items;
                    s.refresh_message();
                }
            } else {
                s.pb.inc(items);
            }
        }
    }

    fn warn(&self, message: &str) {
        match &*self.state.lock().unwrap() {
            Some(s) => s.pb.suspend(|| eprintln!("envarc: warning: {message}")),
            None => eprintln!("envarc: warning: {message}"),
        }
    }

    fn finish(&self) {
        if let Some(s) = self.state.lock().unwrap().take() {
            s.pb.finish_and_clear();
        }
    }
}

/// Off a terminal: no display, but warnings still reach stderr (a nightly
/// job's log must say which files were left out).
pub struct WarningsOnly;

impl Progress for WarningsOnly {
    fn warn(&self, message: &str) {
        eprintln!("envarc: warning: {message}");
    }
}
