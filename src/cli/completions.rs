//! `tokenkeeper completions SHELL` and `tokenkeeper man [DIR]`: shell completion (slot names
//! included, asked of tokenkeeper as you type) and manual pages.

use std::io::Write;
use std::path::PathBuf;

use clap::CommandFactory;

use super::Cli;
use super::output;
use crate::error::{Error, Result};

/// The variable that makes tokenkeeper answer a completion request instead of running. Its
/// own name, not clap's default `COMPLETE`, which a user's environment may hold for another
/// reason (a set value would make every command answer as a completer).
pub const ENV_COMPLETE: &str = "_TOKENKEEPER_COMPLETE";

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
    Elvish,
    Powershell,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Enable it in your shell's start-up file:
  bash        echo 'source <(tokenkeeper completions bash)' >> ~/.bashrc
  zsh         echo 'source <(tokenkeeper completions zsh)' >> ~/.zshrc
  fish        tokenkeeper completions fish > ~/.config/fish/completions/tokenkeeper.fish
  elvish      echo 'eval (tokenkeeper completions elvish | slurp)' >> ~/.config/elvish/rc.elv
  powershell  tokenkeeper completions powershell >> $PROFILE

Commands, flags and their values complete, and so do slot names (`tokenkeeper use <TAB>`): the
shell asks tokenkeeper, which reads its catalog — no secret, no network.")]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Without DIR, prints tokenkeeper(1) to stdout:  tokenkeeper man | man -l -
With DIR, writes a page per command (tokenkeeper.1, tokenkeeper-use.1, …) there:
  tokenkeeper man ~/.local/share/man/man1")]
pub struct ManArgs {
    /// Write every page into this directory instead of printing the main one.
    pub dir: Option<PathBuf>,
}

pub fn completions(args: CompletionsArgs) -> Result<u8> {
    let name = match args.shell {
        Shell::Bash => "bash",
        Shell::Zsh => "zsh",
        Shell::Fish => "fish",
        Shell::Elvish => "elvish",
        Shell::Powershell => "powershell",
    };
    let shells = clap_complete::env::Shells::builtins();
    let shell = shells
        .completer(name)
        .expect("every listed shell is built in");
    // The binary answering completions is this one, wherever it is installed.
    let exe = std::env::current_exe()
        .map_err(|err| Error::failure(format!("cannot find the tokenkeeper binary: {err}")))?;
    let mut script = Vec::new();
    shell
        .write_registration(
            ENV_COMPLETE,
            "tokenkeeper",
            "tokenkeeper",
            &exe.to_string_lossy(),
            &mut script,
        )
        .map_err(|err| Error::failure(format!("cannot write the script: {err}")))?;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(&script)
        .and_then(|()| stdout.flush())
        .map_err(Error::from_stdout)?;
    Ok(0)
}

pub fn man(args: ManArgs) -> Result<u8> {
    let command = Cli::command();
    let Some(dir) = args.dir else {
        let mut page = Vec::new();
        clap_mangen::Man::new(command)
            .render(&mut page)
            .map_err(|err| Error::failure(format!("cannot render the manual: {err}")))?;
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(&page).map_err(Error::from_stdout)?;
        return Ok(0);
    };
    std::fs::create_dir_all(&dir).map_err(|err| Error::io("cannot create directory", &dir, err))?;
    clap_mangen::generate_to(command, &dir)
        .map_err(|err| Error::io("cannot write manual pages to", &dir, err))?;
    let count = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
    output::line(&format!("wrote {count} manual pages to {}", dir.display()))?;
    Ok(0)
}
