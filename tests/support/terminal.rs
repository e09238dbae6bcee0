//! The built binary run in a real pseudo-terminal, as a user at a terminal runs it: the test
//! reads the screen, waits for a prompt and types.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portable_pty::{Child, CommandBuilder, MasterPty, PtySize, native_pty_system};

use super::{BIN, Env};

pub struct Terminal {
    child: Box<dyn Child + Send + Sync>,
    writer: Box<dyn Write + Send>,
    _master: Box<dyn MasterPty + Send>,
    screen: Arc<Mutex<Vec<u8>>>,
}

impl Terminal {
    /// Runs `tokenkeeper args…` with `env`'s variables (plus `extra`) in a terminal of
    /// `cols`×24.
    pub fn spawn(env: &Env, args: &[&str], cols: u16, extra: &[(&str, &str)]) -> Self {
        let pty = native_pty_system()
            .openpty(PtySize {
                rows: 24,
                cols,
                pixel_width: 0,
                pixel_height: 0,
            })
            .unwrap();
        let mut cmd = CommandBuilder::new(BIN);
        cmd.args(args);
        cmd.env_clear();
        for (key, value) in env.vars() {
            cmd.env(key, value);
        }
        for (key, value) in extra {
            cmd.env(key, value);
        }
        cmd.env("TERM", "xterm-256color");
        cmd.cwd(&env.root);
        let child = pty.slave.spawn_command(cmd).unwrap();
        drop(pty.slave);
        let mut reader = pty.master.try_clone_reader().unwrap();
        let writer = pty.master.take_writer().unwrap();
        let screen = Arc::new(Mutex::new(Vec::new()));
        let sink = screen.clone();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buffer[..n]);
            }
        });
        Self {
            child,
            writer,
            _master: pty.master,
            screen,
        }
    }

    /// Everything shown so far.
    pub fn screen(&self) -> String {
        String::from_utf8_lossy(&self.screen.lock().unwrap()).into_owned()
    }

    /// Waits until `text` is on the screen.
    pub fn wait_for(&self, text: &str, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !self.screen().contains(text) {
            assert!(
                Instant::now() < deadline,
                "waited {secs}s for {text:?}; the screen shows:\n{}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Resizes the terminal, as a user dragging the window does (the program gets SIGWINCH).
    pub fn resize(&self, cols: u16) {
        self._master
            .resize(PtySize {
                rows: 24,
                cols,
                pixel_width: 0,
                pixel_height: 0,
            })
            .unwrap();
    }

    /// Types `keys`.
    pub fn send(&mut self, keys: &str) {
        self.writer.write_all(keys.as_bytes()).unwrap();
        self.writer.flush().unwrap();
    }

    /// Waits for the program to end; its exit code and the whole screen.
    pub fn finish(mut self, secs: u64) -> (u32, String) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // The last output may still be on its way from the reader thread.
                std::thread::sleep(Duration::from_millis(100));
                return (status.exit_code(), self.screen());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "still running after {secs}s; the screen shows:\n{}",
                    self.screen()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
