//! What an install needs from the binary: completion scripts and manual pages.

mod support;

use support::{PRISE, run, text};

#[test]
fn completion_scripts_for_bash_zsh_and_fish() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef prise"),
        ("fish", "complete -c prise"),
    ] {
        let o = run(PRISE, &["completions", shell], b"");
        assert!(o.status.success(), "{o:?}");
        let script = text(&o.stdout);
        assert!(script.contains(marker), "{shell}");
        assert!(script.contains("http-proxy"), "{shell}");
    }
    let o = run(PRISE, &["completions", "tcsh"], b"");
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn manual_pages_on_stdout_or_one_per_command() {
    let o = run(PRISE, &["man"], b"");
    assert!(o.status.success(), "{o:?}");
    assert!(
        text(&o.stdout).starts_with(".ie \\n(.g .ds Aq \\(aq")
            || text(&o.stdout).contains(".TH prise")
    );
    let dir = prise_testkit::TestDir::new();
    let o = run(PRISE, &["man", "--dir", &dir.path().to_string_lossy()], b"");
    assert!(o.status.success(), "{o:?}");
    for page in [
        "prise.1",
        "prise-ss.1",
        "prise-http-proxy.1",
        "prise-connect.1",
    ] {
        let body = std::fs::read_to_string(dir.path().join(page)).unwrap_or_default();
        assert!(body.contains(".TH"), "{page}");
    }
}
