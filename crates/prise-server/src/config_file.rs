//! The TOML configuration file of `prise serve` (`--config FILE`).
//!
//! Every key of the file is a flag of the command, spelt with `_` for `-`
//! (`max_line = 4096` is `--max-line 4096`), so the file, the flags and the
//! `PRISE_*` variables can never drift apart: the file is read against the
//! command's own definition. Precedence, highest first: a flag on the command
//! line, its environment variable, the file, the built-in default.
//!
//! [`file_flags`] turns a file into the flags it stands for (skipping those
//! the command line or the environment already set); [`default_file`] writes
//! the whole file with every key, its default and its help as comments
//! (`prise config default`), followed by the policy tables
//! (`[[namespaces]]`, `[[rooms]]`, see [`crate::policy_file`]) commented out.

use clap::{Arg, ArgAction, Command};
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Largest configuration file read, in bytes.
pub const MAX_FILE_SIZE: u64 = 1 << 20;

/// Why a configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_FILE_SIZE`].
    #[error("{path} is larger than {MAX_FILE_SIZE} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// The file is not valid TOML.
    #[error("{path} is not valid TOML: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// A key that is not a setting of the command.
    #[error("{path}: unknown key `{key}` (see `prise config default`)")]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
    },
    /// A `[[namespaces]]` or `[[rooms]]` table that is not a valid policy.
    #[error("{path}: {message}")]
    Policy {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the table and the key.
        message: String,
    },
    /// A value of the wrong shape for its key.
    #[error("{path}: `{key}` {problem}")]
    BadValue {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// What is wrong.
        problem: &'static str,
    },
}

/// The key of a flag in the file: its long name with `_` for `-`.
fn key_of(arg: &Arg) -> Option<String> {
    arg.get_long().map(|l| l.replace('-', "_"))
}

/// Flags that are not settings: help, version and `--config` itself.
fn is_setting(arg: &Arg) -> bool {
    !matches!(
        arg.get_action(),
        ArgAction::Help | ArgAction::HelpShort | ArgAction::HelpLong | ArgAction::Version
    ) && arg.get_long().is_some_and(|l| l != "config")
}

/// True when `argv` (the command line after the command's name) sets `arg`.
fn given_on_command_line(arg: &Arg, argv: &[OsString]) -> bool {
    let Some(long) = arg.get_long() else {
        return false;
    };
    let flag = format!("--{long}");
    let with_value = format!("--{long}=");
    argv.iter().any(|a| {
        a.to_str()
            .is_some_and(|a| a == flag || a.starts_with(&with_value))
    })
}

/// True when the flag's environment variable is set.
fn given_in_environment(arg: &Arg) -> bool {
    arg.get_env().is_some_and(|v| std::env::var_os(v).is_some())
}

/// Reads `path` and returns the flags it stands for, for `command` (the
/// `serve` subcommand as clap knows it), leaving out every key that `argv`
/// (the flags given on the command line) or the environment already sets.
/// The result goes before `argv` when the command line is parsed again.
///
/// # Errors
/// An unreadable, oversized or invalid file; a key that is not a flag of
/// `command`; a value of the wrong shape (a table, or a list for a flag that
/// takes one value).
pub fn file_flags(
    command: &Command,
    path: &Path,
    argv: &[OsString],
) -> Result<Vec<OsString>, ConfigFileError> {
    flags_from_str(command, &read_file(path)?, path, argv)
}

/// The text of the file at `path`, refused when larger than
/// [`MAX_FILE_SIZE`].
///
/// # Errors
/// An unreadable or oversized file.
pub(crate) fn read_file(path: &Path) -> Result<String, ConfigFileError> {
    let read = |source| ConfigFileError::Read {
        path: path.to_owned(),
        source,
    };
    let size = std::fs::metadata(path).map_err(read)?.len();
    if size > MAX_FILE_SIZE {
        return Err(ConfigFileError::TooLarge {
            path: path.to_owned(),
        });
    }
    std::fs::read_to_string(path).map_err(read)
}

/// `argv` with the flags of the file at `path` inserted at `insert_at` (just
/// after the command's name), for `command`: parse the result again to get
/// the settings with the file applied.
///
/// # Errors
/// As [`file_flags`].
pub fn with_file(
    command: &Command,
    mut argv: Vec<OsString>,
    insert_at: usize,
    path: &Path,
) -> Result<Vec<OsString>, ConfigFileError> {
    let at = insert_at.min(argv.len());
    let extra = file_flags(command, path, &argv[at..])?;
    argv.splice(at..at, extra);
    Ok(argv)
}

fn flags_from_str(
    command: &Command,
    text: &str,
    path: &Path,
    argv: &[OsString],
) -> Result<Vec<OsString>, ConfigFileError> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigFileError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
    let mut out = Vec::new();
    for (key, value) in &table {
        if crate::policy_file::POLICY_KEYS.contains(&key.as_str()) {
            // Policies, read by `crate::policy_file::policies`.
            continue;
        }
        let Some(arg) = command
            .get_arguments()
            .find(|a| is_setting(a) && key_of(a).as_deref() == Some(key.as_str()))
        else {
            return Err(ConfigFileError::UnknownKey {
                path: path.to_owned(),
                key: key.clone(),
            });
        };
        let bad = |problem| ConfigFileError::BadValue {
            path: path.to_owned(),
            key: key.clone(),
            problem,
        };
        if given_on_command_line(arg, argv) || given_in_environment(arg) {
            continue;
        }
        let flag = OsString::from(format!("--{}", arg.get_long().unwrap_or_default()));
        match (arg.get_action(), value) {
            (ArgAction::SetTrue, toml::Value::Boolean(on)) => {
                if *on {
                    out.push(flag);
                }
            }
            (ArgAction::SetTrue, _) => return Err(bad("must be true or false")),
            (ArgAction::Append, toml::Value::Array(items)) => {
                for item in items {
                    out.push(flag.clone());
                    out.push(scalar(item).ok_or_else(|| bad("must be a list of values"))?);
                }
            }
            (_, toml::Value::Array(_)) => return Err(bad("takes one value, not a list")),
            (_, v) => {
                out.push(flag);
                out.push(scalar(v).ok_or_else(|| bad("must be a string, number or boolean"))?);
            }
        }
    }
    Ok(out)
}

/// A scalar TOML value as the text of a flag's value.
fn scalar(v: &toml::Value) -> Option<OsString> {
    Some(OsString::from(match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Datetime(d) => d.to_string(),
        toml::Value::Array(_) | toml::Value::Table(_) => return None,
    }))
}

/// A default value as TOML: numbers and booleans bare, the rest quoted.
fn toml_literal(text: &str) -> String {
    if text.parse::<i64>().is_ok() || text == "true" || text == "false" {
        text.to_owned()
    } else {
        toml::Value::String(text.to_owned()).to_string()
    }
}

/// The whole configuration file of `command`: every setting with its help,
/// flag and variable as comments, and its default (settings without a
/// default are shown commented out).
pub fn default_file(command: &Command) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# prise {} configuration: `prise {} --config FILE`.\n\
         # Every key is also a flag (`_` becomes `-`) and a PRISE_* variable;\n\
         # a flag or a variable overrides the file. Unknown keys are refused.",
        command.get_name(),
        command.get_name()
    );
    for arg in command.get_arguments().filter(|a| is_setting(a)) {
        let Some(key) = key_of(arg) else { continue };
        out.push('\n');
        if let Some(help) = arg.get_help() {
            for line in help.to_string().lines() {
                let _ = writeln!(out, "# {line}");
            }
        }
        let values: Vec<String> = arg
            .get_possible_values()
            .iter()
            .filter(|v| !v.is_hide_set())
            .map(|v| v.get_name().to_owned())
            .collect();
        if !values.is_empty() && !matches!(arg.get_action(), ArgAction::SetTrue) {
            let _ = writeln!(out, "# One of: {}.", values.join(", "));
        }
        let mut origin = format!("# Flag --{}", arg.get_long().unwrap_or_default());
        if let Some(env) = arg.get_env() {
            let _ = write!(origin, ", variable {}", env.to_string_lossy());
        }
        let _ = writeln!(out, "{origin}.");
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| toml_literal(&v.to_string_lossy()))
            .collect();
        match arg.get_action() {
            ArgAction::SetTrue => {
                let _ = writeln!(out, "{key} = false");
            }
            ArgAction::Append => {
                let _ = writeln!(out, "# {key} = [{}]", defaults.join(", "));
            }
            _ if defaults.is_empty() => {
                let _ = writeln!(out, "# {key} = \"\"");
            }
            _ => {
                let _ = writeln!(out, "{key} = {}", defaults.join(", "));
            }
        }
    }
    out.push_str(crate::policy_file::DEFAULT_POLICIES);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[derive(clap::Parser, Debug, PartialEq)]
    struct Demo {
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:1")]
        http: String,
        /// A count.
        #[arg(long, default_value_t = 5)]
        max_line: usize,
        /// A switch.
        #[arg(long)]
        self_signed: bool,
        /// Keys.
        #[arg(long = "api-key", value_delimiter = ',')]
        api_keys: Vec<String>,
        /// Optional.
        #[arg(long, env = "PRISE_TEST_CONFIG_FILE_REDIS")]
        redis: Option<String>,
    }

    fn flags(text: &str, argv: &[&str]) -> Result<Vec<String>, ConfigFileError> {
        let argv: Vec<OsString> = argv.iter().map(OsString::from).collect();
        flags_from_str(&Demo::command(), text, Path::new("t.toml"), &argv).map(|v| {
            v.into_iter()
                .map(|s| s.into_string().expect("utf-8"))
                .collect()
        })
    }

    #[test]
    fn keys_become_flags() {
        let got = flags(
            "http = \"0.0.0.0:80\"\nmax_line = 9\nself_signed = true\napi_key = [\"a\", \"b\"]\n",
            &[],
        )
        .unwrap();
        assert_eq!(
            got,
            [
                "--api-key",
                "a",
                "--api-key",
                "b",
                "--http",
                "0.0.0.0:80",
                "--max-line",
                "9",
                "--self-signed"
            ]
        );
        assert!(flags("self_signed = false", &[]).unwrap().is_empty());
    }

    #[test]
    fn command_line_wins_over_the_file() {
        let got = flags("http = \"0.0.0.0:80\"\nmax_line = 9", &["--max-line=3"]).unwrap();
        assert_eq!(got, ["--http", "0.0.0.0:80"]);
        let got = flags("http = \"0.0.0.0:80\"", &["--http", "1.2.3.4:5"]).unwrap();
        assert!(got.is_empty());
    }

    #[test]
    fn bad_files_are_refused_with_the_key() {
        let e = flags("nope = 1", &[]).unwrap_err().to_string();
        assert!(e.contains("unknown key `nope`"), "{e}");
        let e = flags("self_signed = \"yes\"", &[]).unwrap_err().to_string();
        assert!(e.contains("`self_signed` must be true or false"), "{e}");
        let e = flags("http = [\"a\"]", &[]).unwrap_err().to_string();
        assert!(e.contains("takes one value"), "{e}");
        let e = flags("http = {a = 1}", &[]).unwrap_err().to_string();
        assert!(e.contains("`http` must be"), "{e}");
        let e = flags("http = ", &[]).unwrap_err().to_string();
        assert!(e.contains("not valid TOML"), "{e}");
        // `--config` is not a key of its own file.
        let e = flags("config = \"x\"", &[]).unwrap_err().to_string();
        assert!(e.contains("unknown key"), "{e}");
    }

    #[test]
    fn the_default_file_parses_back_to_the_defaults() {
        let text = default_file(&Demo::command());
        assert!(text.contains("# Where to listen\n# Flag --http.\nhttp = \"127.0.0.1:1\""));
        assert!(text.contains("max_line = 5"));
        assert!(text.contains("self_signed = false"));
        assert!(text.contains("# api_key = []"));
        assert!(text.contains("variable PRISE_TEST_CONFIG_FILE_REDIS.\n# redis = \"\""));
        let extra = flags(&text, &[]).unwrap();
        let mut argv = vec!["demo".to_owned()];
        argv.extend(extra);
        let parsed = <Demo as clap::Parser>::try_parse_from(argv).unwrap();
        assert_eq!(
            parsed,
            <Demo as clap::Parser>::try_parse_from(["demo"]).unwrap()
        );
    }
}
