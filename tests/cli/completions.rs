//! Shell completion (real bash: commands and slot names) and manual pages.

use crate::support::*;

/// Completes `words` (the last one being typed) in a real bash with tokenkeeper's script.
fn bash_complete(env: &Env, words: &[&str]) -> Vec<String> {
    let script = env.cmd(&["completions", "bash"]).ok().stdout;
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let program = format!(
        "{script}\nCOMP_WORDS=({}); COMP_CWORD={}; COMP_TYPE=9\n_clap_complete_tokenkeeper tokenkeeper '{}' tokenkeeper\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"",
        quoted.join(" "),
        words.len() - 1,
        words.last().unwrap()
    );
    candidates(
        &env.run_program("bash", &["--norc", "-c", &program], &[]),
        '\n',
    )
}

#[test]
fn bash_completes_commands_and_slot_names() {
    let env = Env::new();
    env.add_fresh("work");
    env.add_fresh("wombat");
    env.add_fresh("home");
    assert_eq!(
        bash_complete(&env, &["tokenkeeper", "use", "w"]),
        vec!["work", "wombat"]
    );
    assert_eq!(
        bash_complete(&env, &["tokenkeeper", "get", "h"]),
        vec!["home"]
    );
    assert_eq!(bash_complete(&env, &["tokenkeeper", "ren"]), vec!["rename"]);
    let flags = bash_complete(&env, &["tokenkeeper", "check", "--wi"]);
    assert_eq!(flags, vec!["--within"]);
    // Every shell gets a script.
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = env.cmd(&["completions", shell]).ok();
        assert!(out.stdout.contains("tokenkeeper"), "{shell}");
    }
}

/// The first field of each line a shell printed (a candidate, before its description).
fn candidates(out: &str, separator: char) -> Vec<String> {
    out.lines()
        .map(|l| l.split(separator).next().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn fish_completes_slot_names() {
    let env = Env::new();
    env.add_fresh("work");
    env.add_fresh("wombat");
    let script = env.root.join("tokenkeeper.fish");
    std::fs::write(&script, env.cmd(&["completions", "fish"]).ok().stdout).unwrap();
    let program = format!(
        "source {}; complete -C 'tokenkeeper use w'",
        script.display()
    );
    let out = env.run_program("fish", &["--no-config", "-c", &program], &[]);
    assert_eq!(candidates(&out, '\t'), vec!["work", "wombat"]);
}

#[test]
fn zsh_runs_the_completer_for_slot_names() {
    let env = Env::new();
    env.add_fresh("work");
    env.add_fresh("wombat");
    env.add_fresh("home");
    let script = env.root.join("_tokenkeeper");
    std::fs::write(&script, env.cmd(&["completions", "zsh"]).ok().stdout).unwrap();
    // The script's own function runs in a real zsh; compsys's `compdef` and `_describe` are
    // stood in for (they need an interactive completion widget), the latter printing what it
    // was handed.
    let program = format!(
        "compdef() {{ :; }}; _describe() {{ print -l -- ${{(P)3}}; }}; source {}; words=(tokenkeeper use w); CURRENT=3; _clap_dynamic_completer_tokenkeeper",
        script.display()
    );
    let out = env.run_program("zsh", &["-f", "-c", &program], &[]);
    assert_eq!(candidates(&out, ':'), vec!["work", "wombat"]);
}

#[test]
fn man_prints_the_page_or_writes_one_per_command() {
    let env = Env::new();
    env.cmd(&["man"]).ok().stdout_has(".TH tokenkeeper 1");
    let dir = env.root.join("man1");
    env.cmd(&["man", dir.to_str().unwrap()])
        .ok()
        .stdout_has("manual pages to");
    for page in ["tokenkeeper.1", "tokenkeeper-use.1", "tokenkeeper-rename.1"] {
        assert!(dir.join(page).exists(), "{page}");
    }
}

#[test]
fn a_complete_variable_of_someone_elses_does_not_hijack_commands() {
    let env = Env::new();
    env.add_fresh("work");
    env.cmd(&["get", "work"])
        .env("COMPLETE", "1")
        .ok()
        .stdout_is(&format!("{}\n", access("work")));
}
