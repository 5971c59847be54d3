//! The man pages render without warnings, and banguardctl(8), generated
//! from the clap definitions, names every subcommand.

use banguard_e2e::{artifacts, require, workspace_root};
use std::path::Path;
use std::process::Command;

fn generated_page(page: &str) -> String {
    let out =
        Command::new(&artifacts().banguardctl).args(["man", page]).output().expect("run banguardctl man");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("roff is UTF-8")
}

fn mandoc_lint(page: &Path) {
    let out =
        Command::new("mandoc").args(["-T", "lint", "-W", "warning"]).arg(page).output().expect("run mandoc");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.trim().is_empty(), "{}:\n{text}", page.display());
}

fn groff_warnings(page: &Path) {
    // -t: tbl, as man(1) runs it for a page that starts with '\" t.
    let out = Command::new("groff").args(["-t", "-ww", "-man", "-z"]).arg(page).output().expect("run groff");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.trim().is_empty(), "{}:\n{text}", page.display());
}

#[test]
fn man_pages_lint_clean() {
    if !require("man_pages_lint_clean", false, &["mandoc", "groff"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ctl = dir.path().join("banguardctl.8");
    std::fs::write(&ctl, generated_page("banguardctl")).unwrap();
    let pam = dir.path().join("pam_banguard.8");
    std::fs::write(&pam, generated_page("pam_banguard")).unwrap();
    let root = workspace_root();
    for page in [pam, root.join("doc/man/banguard.toml.5"), ctl] {
        mandoc_lint(&page);
        groff_warnings(&page);
    }
}

#[test]
fn banguardctl_page_names_every_subcommand() {
    let page = generated_page("banguardctl");
    let help = Command::new(&artifacts().banguardctl).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout).to_string();
    // The subcommands --help lists (minus clap's own `help`).
    let commands: Vec<&str> = help
        .split("Commands:")
        .nth(1)
        .expect("--help has a Commands: section")
        .lines()
        .skip(1) // the rest of the `Commands:` line itself
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.len() >= 8, "{commands:?}");
    for c in &commands {
        // `import` is shown as each thing it imports.
        let c = if *c == "import" { "import fail2ban" } else { c };
        assert!(page.contains(&format!(".SS \"{c}\"")), "banguardctl(8) lacks `{c}`");
    }
    for section in [
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "COMMANDS",
        "\"EXIT STATUS\"",
        "ENVIRONMENT",
        "FILES",
        "\"SEE ALSO\"",
    ] {
        assert!(page.contains(&format!(".SH {section}")), "banguardctl(8) lacks {section}");
    }
    assert!(!page.contains(".SS \"man\""), "the hidden man command is not documented");
}

#[test]
fn banguard_toml_page_names_every_key() {
    let root = workspace_root();
    let conf = std::fs::read_to_string(root.join("conf/banguard.toml")).unwrap();
    let page = std::fs::read_to_string(root.join("doc/man/banguard.toml.5")).unwrap();
    for line in conf.lines() {
        if let Some((key, _)) = line.split_once(" = ")
            && !line.starts_with('#')
        {
            let key = key.trim();
            assert!(page.contains(&format!("\\fB{key}\\fR = ")), "banguard.toml(5) lacks `{key}`");
        }
    }
}
