//! How text output looks on a terminal: colour (only there, unless asked; never with
//! `NO_COLOR`), and the width tables must fit.

use std::io::IsTerminal;
use std::sync::OnceLock;

use anstyle::{AnsiColor, Style};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ColorChoice {
    /// Colour when stdout is a terminal and NO_COLOR is not set.
    #[default]
    Auto,
    Always,
    Never,
}

static COLOR: OnceLock<bool> = OnceLock::new();
static COLOR_STDERR: OnceLock<bool> = OnceLock::new();

/// Decides once, from the flag, `NO_COLOR` and whether stdout is a terminal.
pub fn init(choice: ColorChoice) {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let on = match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => !no_color && std::io::stdout().is_terminal(),
    };
    let _ = COLOR.set(on);
    let _ = COLOR_STDERR.set(match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => !no_color && std::io::stderr().is_terminal(),
    });
}

/// `text` in `style` when colour is on for stderr (warnings go there).
pub fn paint_stderr(text: &str, style: Style) -> String {
    if *COLOR_STDERR.get().unwrap_or(&false) {
        format!("{style}{text}{style:#}")
    } else {
        text.to_string()
    }
}

/// A warning that must not be missed.
pub fn urgent() -> Style {
    Style::new().bold().fg_color(Some(AnsiColor::Red.into()))
}

fn enabled() -> bool {
    *COLOR.get().unwrap_or(&false)
}

/// `text` in `style` when colour is on.
pub fn paint(text: &str, style: Style) -> String {
    if enabled() && !text.is_empty() {
        format!("{style}{text}{style:#}")
    } else {
        text.to_string()
    }
}

pub fn active() -> Style {
    Style::new().bold().fg_color(Some(AnsiColor::Green.into()))
}

pub fn bad() -> Style {
    Style::new().fg_color(Some(AnsiColor::Red.into()))
}

/// Quota used: yellow from 80 %, red from 95 %.
pub fn quota(percent: f64) -> Style {
    if percent >= 95.0 {
        bad()
    } else if percent >= 80.0 {
        Style::new().fg_color(Some(AnsiColor::Yellow.into()))
    } else {
        Style::new()
    }
}

/// The width tables must fit: `COLUMNS`, else the terminal's — at least 80; `None` (no limit)
/// when stdout is not a terminal and `COLUMNS` is not set.
pub fn width() -> Option<usize> {
    let columns = std::env::var("COLUMNS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|w| *w > 0);
    let terminal = || {
        std::io::stdout()
            .is_terminal()
            .then(|| terminal_size::terminal_size().map(|(w, _)| usize::from(w.0)))
            .flatten()
    };
    columns.or_else(terminal).map(|w| w.max(80))
}
