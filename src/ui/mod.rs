//! `tokenkeeper ui`: every slot of every agent on one screen, kept current as readings change,
//! with keys for the everyday actions.
//!
//! The dashboard reads the catalog alone (no lock held, no secret touched) and acts by running
//! tokenkeeper's own commands, so every action means exactly what the command does and prints
//! the same one line. The terminal is restored on quit, on error and on panic.

mod view;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use jiff::Timestamp;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::paths::Paths;
pub use view::{Model, Prompt, Row, draw};

/// How often the screen is redrawn (countdowns) and the catalog looked at.
const TICK: Duration = Duration::from_millis(500);

pub fn run(paths: &Paths) -> Result<()> {
    let mut terminal = ratatui::try_init()
        .map_err(|err| Error::failure(format!("cannot take over the terminal: {err}")))?;
    let result = Dashboard::new(paths).and_then(|mut dashboard| dashboard.run(&mut terminal));
    ratatui::restore();
    result
}

struct Dashboard<'a> {
    paths: &'a Paths,
    model: Model,
    stamp: Option<(u64, SystemTime)>,
}

enum Step {
    Go,
    Quit,
    /// Leave the screen to the command (it talks to the person), then come back.
    Hand(Vec<String>),
}

impl<'a> Dashboard<'a> {
    fn new(paths: &'a Paths) -> Result<Self> {
        let mut dashboard = Self {
            paths,
            model: Model::from_catalog(&Catalog::default(), Timestamp::now()),
            stamp: None,
        };
        dashboard.reload(true)?;
        Ok(dashboard)
    }

    fn run(&mut self, terminal: &mut ratatui::DefaultTerminal) -> Result<()> {
        let mut looked = Instant::now();
        loop {
            self.model.now = Timestamp::now();
            terminal
                .draw(|frame| draw(frame, &self.model))
                .map_err(|err| Error::failure(format!("cannot draw: {err}")))?;
            let ready = event::poll(TICK)
                .map_err(|err| Error::failure(format!("cannot read the terminal: {err}")))?;
            if ready {
                let Event::Key(key) = event::read()
                    .map_err(|err| Error::failure(format!("cannot read the terminal: {err}")))?
                else {
                    continue;
                };
                if key.kind != KeyEventKind::Press {
                    continue;
                }
                match self.key(key) {
                    Step::Go => {}
                    Step::Quit => return Ok(()),
                    Step::Hand(args) => {
                        ratatui::restore();
                        let outcome = self.interactive(&args);
                        *terminal = ratatui::try_init().map_err(|err| {
                            Error::failure(format!("cannot take over the terminal: {err}"))
                        })?;
                        self.model.status = Some(outcome);
                        self.reload(true)?;
                    }
                }
            }
            if looked.elapsed() >= TICK {
                looked = Instant::now();
                self.reload(false)?;
            }
        }
    }

    /// Reads the catalog again when it changed (or when `force`d), keeping the selection.
    fn reload(&mut self, force: bool) -> Result<()> {
        let file = self.paths.catalog_file();
        let stamp = stamp(&file);
        if !force && stamp == self.stamp {
            return Ok(());
        }
        self.stamp = stamp;
        let catalog = Catalog::load(&file)?;
        let selected = self
            .model
            .selected_row()
            .map(|row| (row.agent.clone(), row.name.clone()));
        let fresh = Model::from_catalog(&catalog, Timestamp::now());
        self.model.selected = selected
            .and_then(|(agent, name)| {
                fresh
                    .rows
                    .iter()
                    .position(|row| row.agent == agent && row.name == name)
            })
            .unwrap_or(self.model.selected)
            .min(fresh.rows.len().saturating_sub(1));
        self.model.rows = fresh.rows;
        Ok(())
    }

    fn key(&mut self, key: KeyEvent) -> Step {
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return Step::Quit;
        }
        if let Some(prompt) = self.model.prompt.take() {
            return self.answer(prompt, key);
        }
        let row = self.model.selected_row().cloned();
        match key.code {
            KeyCode::Char('q') | KeyCode::Esc => return Step::Quit,
            KeyCode::Down | KeyCode::Char('j') => {
                self.model.selected =
                    (self.model.selected + 1).min(self.model.rows.len().saturating_sub(1));
            }
            KeyCode::Up | KeyCode::Char('k') => {
                self.model.selected = self.model.selected.saturating_sub(1);
            }
            KeyCode::Char('u') | KeyCode::Enter => {
                if let Some(row) = row {
                    self.act(&["use", &row.name, "--agent", &row.agent]);
                }
            }
            KeyCode::Char('r') => {
                if let Some(row) = row {
                    self.act(&["refresh", &row.name, "--force", "--agent", &row.agent]);
                }
            }
            KeyCode::Char('n') if row.is_some() => {
                self.model.prompt = Some(Prompt::Rename(String::new()));
            }
            KeyCode::Char('d') if row.is_some() => self.model.prompt = Some(Prompt::Remove),
            KeyCode::Char('a') => self.act(&["add"]),
            KeyCode::Char('g') => self.model.prompt = Some(Prompt::Generate(String::new())),
            _ => {}
        }
        Step::Go
    }

    fn answer(&mut self, prompt: Prompt, key: KeyEvent) -> Step {
        let row = self.model.selected_row().cloned();
        match (prompt, key.code) {
            (_, KeyCode::Esc) => self.model.status = Some("cancelled".into()),
            (Prompt::Remove, KeyCode::Char('y' | 'Y')) => {
                if let Some(row) = row {
                    self.act(&["remove", &row.name, "--yes", "--agent", &row.agent]);
                }
            }
            (Prompt::Remove, _) => self.model.status = Some("not removed".into()),
            (Prompt::Rename(text), KeyCode::Enter) if !text.trim().is_empty() => {
                if let Some(row) = row {
                    self.act(&["rename", &row.name, text.trim(), "--agent", &row.agent]);
                }
            }
            (Prompt::Generate(text), KeyCode::Enter) => {
                let name = match text.trim() {
                    "" => "ci".to_string(),
                    name => name.to_string(),
                };
                return Step::Hand(vec!["setup".into(), name]);
            }
            (Prompt::Rename(mut text), KeyCode::Backspace) => {
                text.pop();
                self.model.prompt = Some(Prompt::Rename(text));
            }
            (Prompt::Generate(mut text), KeyCode::Backspace) => {
                text.pop();
                self.model.prompt = Some(Prompt::Generate(text));
            }
            (Prompt::Rename(mut text), KeyCode::Char(c)) if !c.is_control() => {
                text.push(c);
                self.model.prompt = Some(Prompt::Rename(text));
            }
            (Prompt::Generate(mut text), KeyCode::Char(c)) if !c.is_control() => {
                text.push(c);
                self.model.prompt = Some(Prompt::Generate(text));
            }
            (prompt, _) => self.model.prompt = Some(prompt),
        }
        Step::Go
    }

    /// Runs `tokenkeeper ARGS` and shows the line it printed (or its error).
    fn act(&mut self, args: &[&str]) {
        self.model.status = Some(format!("{}…", args.join(" ")));
        let outcome = match std::env::current_exe().and_then(|program| {
            Command::new(program)
                .args(args)
                .arg("--color")
                .arg("never")
                .stdin(Stdio::null())
                .output()
        }) {
            Ok(output) => {
                let said = |bytes: &[u8]| {
                    String::from_utf8_lossy(bytes)
                        .lines()
                        .find(|line| !line.trim().is_empty())
                        .map(str::to_string)
                };
                match output.status.success() {
                    true => said(&output.stdout).unwrap_or_else(|| "done".into()),
                    false => said(&output.stderr).unwrap_or_else(|| "failed".into()),
                }
            }
            Err(err) => format!("cannot run tokenkeeper: {err}"),
        };
        self.model.status = Some(outcome);
        let _ = self.reload(true);
    }

    /// Runs a command that talks to the person on the terminal itself.
    fn interactive(&self, args: &[String]) -> String {
        let status =
            std::env::current_exe().and_then(|program| Command::new(program).args(args).status());
        match status {
            Ok(status) if status.success() => format!("{} done", args.join(" ")),
            Ok(status) => format!("{} failed ({status})", args.join(" ")),
            Err(err) => format!("cannot run tokenkeeper: {err}"),
        }
    }
}

fn stamp(path: &Path) -> Option<(u64, SystemTime)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.ino(), meta.modified().ok()?))
}
