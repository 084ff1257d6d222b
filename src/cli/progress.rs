//! A progress bar on standard error for long reads, hidden when stderr is not a terminal.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// A progress bar that counts `(done, total)` units of work under `message`.
pub struct Bar {
    bar: ProgressBar,
}

impl Bar {
    /// A bar for a task called `message`; drawn only on an interactive terminal.
    pub fn new(message: &str) -> Self {
        let bar = ProgressBar::new(0);
        if std::io::stderr().is_terminal() {
            bar.set_draw_target(ProgressDrawTarget::stderr());
        } else {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        }
        if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({eta})") {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(message.to_string());
        Bar { bar }
    }

    /// Records progress; safe to call from several threads.
    pub fn update(&self, done: usize, total: usize) {
        self.bar.set_length(total as u64);
        self.bar.set_position(done as u64);
    }

    /// Removes the bar from the terminal.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
