//! `claude setup-token` run in a pseudo-terminal: the user sees its screens and answers its
//! prompts as if it ran alone (keystrokes in, output out, the window's size passed on), while
//! the token it prints is captured and replaced by `<redacted>` on the way to the screen. The
//! token is never in an argument, an environment variable, the shell's history or the screen.

pub mod redact;

use std::ffi::OsString;
use std::io::{IsTerminal, Read, Write};
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex};

use portable_pty::{CommandBuilder, MasterPty, PtySize, native_pty_system};

use crate::error::{Error, Result};
use crate::secret::Secret;
use redact::Redactor;

/// What the run left: the tokens it printed (the last is the one), and how it ended.
pub struct Captured {
    pub tokens: Vec<Secret>,
    pub success: bool,
    pub exit_code: u32,
}

/// Runs `program args…` in a pseudo-terminal sized like ours, passing our stdin to it and its
/// output — tokens redacted — to our stdout.
pub fn run(program: &OsString, args: &[&str]) -> Result<Captured> {
    let pty = native_pty_system();
    let pair = pty
        .openpty(window_size())
        .map_err(|err| Error::failure(format!("cannot open a pseudo-terminal: {err}")))?;
    let mut command = CommandBuilder::new(program);
    command.args(args);
    if let Ok(dir) = std::env::current_dir() {
        command.cwd(dir);
    }
    let mut child = pair.slave.spawn_command(command).map_err(|err| {
        Error::failure(format!(
            "cannot run {}: {err}",
            std::path::Path::new(program).display()
        ))
        .with_hint(format!(
            "install Claude Code (npm install -g @anthropic-ai/claude-code), or point {} at it",
            crate::agent::claude::ENV_CLAUDE_BIN
        ))
    })?;
    // Our copy of the terminal's other end closed, so its end reads as EOF once the child exits.
    drop(pair.slave);
    let master: Arc<Mutex<Box<dyn MasterPty + Send>>> = Arc::new(Mutex::new(pair.master));
    let (mut reader, writer) = {
        let master = master.lock().expect("not poisoned");
        let reader = master
            .try_clone_reader()
            .map_err(|err| Error::failure(format!("cannot read the pseudo-terminal: {err}")))?;
        let writer = master
            .take_writer()
            .map_err(|err| Error::failure(format!("cannot write the pseudo-terminal: {err}")))?;
        (reader, writer)
    };

    let _raw = RawMode::enter();
    forward_keys(writer);
    follow_window_size(master.clone());

    let mut redactor = Redactor::new();
    let mut stdout = std::io::stdout();
    let mut buffer = zeroize::Zeroizing::new(vec![0u8; 8192]);
    loop {
        match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                let shown = redactor.feed(&buffer[..n]);
                let _ = stdout.write_all(&shown).and_then(|()| stdout.flush());
            }
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            // EIO: the child closed the terminal (Linux's way of saying EOF on a PTY).
            Err(_) => break,
        }
    }
    let shown = redactor.finish();
    let _ = stdout.write_all(&shown).and_then(|()| stdout.flush());
    let status = child.wait().map_err(|err| {
        Error::failure(format!(
            "lost track of {}: {err}",
            program.to_string_lossy()
        ))
    })?;
    Ok(Captured {
        tokens: redactor.tokens().to_vec(),
        success: status.success(),
        exit_code: status.exit_code(),
    })
}

/// Our terminal's size (stdout's, else stdin's), or 80×24.
fn window_size() -> PtySize {
    let size = terminal_size::terminal_size_of(std::io::stdout().as_fd())
        .or_else(|| terminal_size::terminal_size_of(std::io::stdin().as_fd()));
    let (cols, rows) = match size {
        Some((terminal_size::Width(w), terminal_size::Height(h))) if w > 0 && h > 0 => (w, h),
        _ => (80, 24),
    };
    PtySize {
        rows,
        cols,
        pixel_width: 0,
        pixel_height: 0,
    }
}

/// Copies our stdin to the child's terminal, byte by byte as typed. The thread ends with
/// stdin, or stays blocked in a read until the process exits.
fn forward_keys(mut writer: Box<dyn Write + Send>) {
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buffer = zeroize::Zeroizing::new(vec![0u8; 1024]);
        loop {
            match stdin.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if writer
                        .write_all(&buffer[..n])
                        .and_then(|()| writer.flush())
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
    });
}

/// Passes our window's new size on when it changes (SIGWINCH).
fn follow_window_size(master: Arc<Mutex<Box<dyn MasterPty + Send>>>) {
    let Ok(mut signals) = signal_hook::iterator::Signals::new([signal_hook::consts::SIGWINCH])
    else {
        return;
    };
    std::thread::spawn(move || {
        for _ in signals.forever() {
            if let Ok(master) = master.lock() {
                let _ = master.resize(window_size());
            }
        }
    });
}

/// Our terminal in raw mode while the child runs (keys go through as typed, Ctrl-C included,
/// and the child's terminal does the echoing); put back as it was when dropped, on an error
/// or a panic too.
struct RawMode {
    saved: Option<nix::sys::termios::Termios>,
}

impl RawMode {
    fn enter() -> Self {
        use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return Self { saved: None };
        }
        let Ok(saved) = tcgetattr(stdin.as_fd()) else {
            return Self { saved: None };
        };
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        if tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).is_err() {
            return Self { saved: None };
        }
        Self { saved: Some(saved) }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin().as_fd(),
                nix::sys::termios::SetArg::TCSANOW,
                saved,
            );
        }
    }
}
