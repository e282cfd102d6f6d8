//! The terminal rendering of [`Progress`] with indicatif.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressFinish, ProgressState, ProgressStyle};

use envarc::progress::Progress;

/// Columns of the phase name (`backing up`, `restoring`, …).
const PHASE: usize = 12;

/// The line for byte counts: every field has a bounded width, so that with
/// up to 99,999 files everything but the current file takes
/// `FIXED_WIDTH` columns and the file gets the rest of an 80-column
/// terminal (its end: `{wide_msg:>}` cuts from the left, so the name shows).
const BYTES_TEMPLATE: &str =
    "{prefix:>12} [{bar:8}] {percent:>3}% {files} {rate:>12} ETA {eta:>3} {wide_msg:>}";
/// The same without a file count.
const BYTES_ONLY_TEMPLATE: &str =
    "{prefix:>12} [{bar:8}] {percent:>3}% {rate:>12} ETA {eta:>3} {wide_msg:>}";
/// Items without sizes (scanning, reading headers).
const ITEMS_TEMPLATE: &str = "{prefix:>12} {spinner} {pos:>7}{of_len} {wide_msg:>}";
/// Columns [`BYTES_TEMPLATE`] takes before the file name with 5-digit counts.
#[cfg(test)]
const FIXED_WIDTH: usize = 62;

/// A phase name cut to [`PHASE`] columns at a word if it must be
/// (`writing snapshots anew` → `writing`).
fn fit_phase(phase: &str) -> String {
    if phase.chars().count() <= PHASE {
        return phase.to_string();
    }
    let mut out = String::new();
    for w in phase.split(' ') {
        let next = if out.is_empty() {
            w.to_string()
        } else {
            format!("{out} {w}")
        };
        if next.chars().count() > PHASE {
            break;
        }
        out = next;
    }
    if out.is_empty() {
        out = phase.chars().take(PHASE - 1).collect::<String>() + "…";
    }
    out
}

/// A byte rate as envarc prints sizes: at most 12 columns (`1023.9 MiB/s`).
fn fmt_rate(per_sec: f64) -> String {
    const PIB: f64 = (1u64 << 50) as f64;
    if per_sec.is_nan() || per_sec >= PIB {
        // Right after the start, before a rate means anything.
        return "-".into();
    }
    format!("{}/s", super::fmt::fmt_bytes(per_sec as u64))
}

/// Files done and the total, the done count padded to the total's width so
/// the line does not jump.
fn fmt_files(done: u64, total: u64) -> String {
    let w = total.to_string().len();
    format!("{done:>w$}/{total}")
}

type Files = Arc<(AtomicU64, AtomicU64)>;

/// The style of a bar; `files`: the counts of a bytes bar that also counts files.
fn style(bytes: bool, files: Option<Files>, items_total: bool) -> ProgressStyle {
    let template = match (bytes, &files) {
        (true, Some(_)) => BYTES_TEMPLATE,
        (true, None) => BYTES_ONLY_TEMPLATE,
        (false, _) => ITEMS_TEMPLATE,
    };
    let style = ProgressStyle::with_template(template)
        .expect("the templates are valid")
        .progress_chars("=> ")
        .with_key("rate", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = w.write_str(&fmt_rate(s.per_sec()));
        })
        .with_key(
            "of_len",
            move |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                if let (true, Some(len)) = (items_total, s.len()) {
                    let _ = write!(w, "/{len}");
                }
            },
        );
    match files {
        Some(f) => style.with_key(
            "files",
            move |_: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = w.write_str(&fmt_files(
                    f.0.load(Ordering::Relaxed),
                    f.1.load(Ordering::Relaxed),
                ));
            },
        ),
        None => style,
    }
}

struct State {
    pb: ProgressBar,
    /// The bar counts bytes (else items).
    bytes_mode: bool,
    /// In bytes mode with a known item total: items done and the total.
    files: Option<Files>,
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

    /// A bar drawn to `target` (stderr; a test terminal in the tests).
    fn make(
        target: ProgressDrawTarget,
        phase: &str,
        total_items: Option<u64>,
        total_bytes: Option<u64>,
    ) -> State {
        let files: Option<Files> = total_bytes
            .and(total_items)
            .map(|t| Arc::new((AtomicU64::new(0), AtomicU64::new(t))));
        let pb = ProgressBar::with_draw_target(total_bytes.or(total_items), target);
        pb.set_style(style(
            total_bytes.is_some(),
            files.clone(),
            total_items.is_some(),
        ));
        // A run that ends in an error (or an interrupt) drops the bar
        // without `finish`: clear it then too, so no half line is left.
        let pb = pb.with_finish(ProgressFinish::AndClear);
        pb.set_prefix(fit_phase(phase));
        State {
            pb,
            bytes_mode: total_bytes.is_some(),
            files,
        }
    }
}

impl Progress for Bar {
    fn start(&self, phase: &str, total_items: Option<u64>, total_bytes: Option<u64>) {
        let state = Bar::make(
            ProgressDrawTarget::stderr(),
            phase,
            total_items,
            total_bytes,
        );
        state.pb.enable_steady_tick(Duration::from_millis(200));
        if let Some(old) = self.state.lock().unwrap().replace(state) {
            old.pb.finish_and_clear();
        }
    }

    fn item(&self, name: &str) {
        if let Some(s) = &*self.state.lock().unwrap() {
            s.pb.set_message(name.to_string());
        }
    }

    fn advance(&self, items: u64, bytes: u64) {
        if let Some(s) = &*self.state.lock().unwrap() {
            if s.bytes_mode {
                if let Some(f) = &s.files {
                    f.0.fetch_add(items, Ordering::Relaxed);
                }
                s.pb.inc(bytes);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    /// A terminal of a given width that keeps what is drawn on it.
    #[derive(Debug, Clone)]
    struct Screen {
        width: u16,
        drawn: Arc<Mutex<Vec<String>>>,
    }

    impl indicatif::TermLike for Screen {
        fn width(&self) -> u16 {
            self.width
        }
        fn move_cursor_up(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> io::Result<()> {
            self.write_str(s)
        }
        fn write_str(&self, s: &str) -> io::Result<()> {
            if !s.trim().is_empty() {
                self.drawn.lock().unwrap().push(s.to_string());
            }
            Ok(())
        }
        fn clear_line(&self) -> io::Result<()> {
            Ok(())
        }
        fn flush(&self) -> io::Result<()> {
            Ok(())
        }
    }

    /// The line a bar draws on a `width`-column terminal.
    fn draw(width: u16, phase: &str, files: (u64, u64), bytes: (u64, u64), file: &str) -> String {
        let screen = Screen {
            width,
            drawn: Default::default(),
        };
        let target = ProgressDrawTarget::term_like(Box::new(screen.clone()));
        let s = Bar::make(target, phase, Some(files.1), Some(bytes.1));
        s.files
            .as_ref()
            .unwrap()
            .0
            .store(files.0, Ordering::Relaxed);
        s.pb.set_message(file.to_string());
        s.pb.set_position(bytes.0);
        s.pb.abandon();
        let last = screen.drawn.lock().unwrap().last().cloned();
        last.expect("the bar drew nothing")
    }

    #[test]
    fn the_bar_fits_80_columns_and_shows_the_end_of_the_current_file() {
        let file = "/home/alice/projects/envarc/target/release/deps/quarterly-report-final.pdf";
        let line = draw(
            80,
            "writing snapshots anew",
            (12_345, 99_999),
            (600 << 30, 1023 << 30),
            file,
        );
        let cols = line.chars().count();
        assert!(cols <= 80, "{cols} columns: {line:?}");
        assert!(line.contains("12345/99999"), "{line:?}");
        assert!(line.contains("ETA "), "{line:?}");
        assert!(line.contains(" 59% "), "{line:?}");
        assert!(line.starts_with("     writing ["), "{line:?}");
        // What the fixed fields leave goes to the file name's end.
        let shown = 80 - FIXED_WIDTH;
        assert!(shown >= 16);
        assert!(
            line.ends_with(&file[file.len() - shown..]),
            "the file's end is not shown: {line:?}"
        );
        // A wide terminal shows the whole name.
        let wide = draw(160, "backing up", (1, 2), (1, 2), file);
        assert!(wide.ends_with(file), "{wide:?}");
        assert!(wide.chars().count() <= 160, "{wide:?}");
    }

    #[test]
    fn fields_keep_their_widths() {
        assert_eq!(fit_phase("backing up"), "backing up");
        assert_eq!(fit_phase("copying snapshot 0123abcd"), "copying");
        assert_eq!(fit_phase("re-encrypting"), "re-encrypti…");
        assert!(fmt_rate(1023.9 * 1024.0 * 1024.0).chars().count() <= 12);
        assert!(fmt_rate(f64::INFINITY).chars().count() <= 12);
        assert_eq!(fmt_files(7, 44_853), "    7/44853");
    }
}
