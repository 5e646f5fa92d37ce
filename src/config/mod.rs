//! Server configuration: etcd 3.5's command-line flags, `ETCD_*` environment variables and
//! `--config-file` YAML, parsed into a typed [`ServerConfig`] (COMPAT.md §4.10 and §5).
//!
//! The parser never reads the process environment or argv itself: the binary passes
//! `std::env::args().skip(1)` and `std::env::vars()`. It reads the file named by
//! `--config-file` through [`parse_command`] (std::fs) or a caller-supplied reader
//! ([`parse_command_with_reader`], used by simulation and tests).
//!
//! Precedence, as etcd: with `--config-file` (or `ETCD_CONFIG_FILE`) the YAML alone decides and
//! all other flags and env vars are ignored (flags must still be well-formed). Otherwise flags
//! beat defaults, env vars fill flags not given on the command line, and a flag given both ways
//! is a fatal error.
//!
//! Exit codes follow etcd: 2 when Go's flag package would reject the command line (unknown
//! flag, malformed value), 1 for everything rejected afterwards (validation, env, YAML).
//!
//! Code map: `flag_table` (every flag) → `flag_kinds` (value syntax) → `command_line`
//! (argv + env) / `yaml` (config file) → `validate` (etcd's checks) → `help` (texts).

mod command_line;
mod flag_kinds;
mod flag_table;
mod goparse;
mod help;
mod server_config;
mod settings;
mod url;
mod validate;
mod yaml;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

pub use goparse::{format_go_duration, go_quote};
pub use help::{help_text, usage_text, version_text, VersionInfo};
pub use server_config::{
    AuthTokenKind, AuthTokenSpec, AutoCompaction, AutoCompactionMode, ClusterState, DiscoveryFallback, LogLevel,
    ProxyMode, ServerConfig, TlsSettings, TlsVersion, TracingSettings, V2Deprecation, V2ProxySettings,
    DEFAULT_INITIAL_CLUSTER, DEFAULT_NAME, DEFAULT_QUOTA_BACKEND_BYTES, MAX_ELECTION_TIMEOUT_MS,
    MAX_QUOTA_BACKEND_BYTES, RECOMMENDED_MAX_REQUEST_BYTES,
};
pub use settings::UNSUPPORTED_FLAGS;
pub use url::{parse_url_list, Url, UrlScheme};

/// What the command line asks for.
// Built once per process and matched immediately; boxing the config would only add noise.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Start the server with this configuration; print the warnings first.
    Run(ServerConfig, Vec<Warning>),
    /// `--version`: print this text to stdout and exit 0.
    Version(String),
    /// `-h`/`--help`: print this text and exit 0. (etcd writes the usage part to stderr and
    /// the flag list to stdout; braid prints all of it to stdout.)
    Help(String),
}

/// A problem that does not stop the server (etcd logs these at warn level).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub message: String,
}

impl Warning {
    pub(crate) fn new(message: impl Into<String>) -> Warning {
        Warning {
            message: message.into(),
        }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.message)
    }
}

/// The configuration cannot be used; the process should print [`ConfigError::stderr_text`]
/// and exit with `exit_code`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// etcd's message, without any usage text.
    pub message: String,
    /// 2 for command-line syntax errors (Go's flag package), 1 for invalid configurations.
    pub exit_code: i32,
}

impl ConfigError {
    /// A command line Go's flag package rejects: exit 2 and print usage.
    pub(crate) fn usage(message: impl Into<String>) -> ConfigError {
        ConfigError {
            message: message.into(),
            exit_code: 2,
        }
    }

    /// A configuration etcd rejects after parsing: exit 1.
    pub(crate) fn invalid(message: impl Into<String>) -> ConfigError {
        ConfigError {
            message: message.into(),
            exit_code: 1,
        }
    }

    /// What to write to stderr. Usage errors are followed by the usage summary, as Go's flag
    /// package prints them; other errors are prefixed the way etcd reports failed flag
    /// verification.
    pub fn stderr_text(&self) -> String {
        if self.exit_code == 2 {
            format!("{}\n{}", self.message, usage_text())
        } else {
            format!("braid: error verifying flags, {}. See 'braid --help'.\n", self.message)
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Parses the arguments after the program name and the environment, reading `--config-file`
/// from disk when one is named.
pub fn parse_command(args: &[String], env: &BTreeMap<String, String>) -> Result<Command, ConfigError> {
    parse_command_with_reader(args, env, &|path: &Path| std::fs::read_to_string(path))
}

/// [`parse_command`] with the config file read through `read_file`.
pub fn parse_command_with_reader(
    args: &[String],
    env: &BTreeMap<String, String>,
    read_file: &dyn Fn(&Path) -> std::io::Result<String>,
) -> Result<Command, ConfigError> {
    let mut parsed = match command_line::parse_arguments(args)? {
        command_line::Parsed::Help => return Ok(Command::Help(help_text())),
        command_line::Parsed::Flags(parsed) => *parsed,
    };
    if let Some(first) = parsed.positional.first() {
        return Err(ConfigError::invalid(format!("'{first}' is not a valid flag")));
    }
    if parsed.print_version {
        return Ok(Command::Version(version_text(&VersionInfo::default())));
    }
    // etcd reads ETCD_CONFIG_FILE before anything else so it can decide whether the other
    // variables count at all.
    let mut config_file = parsed.config_file.clone();
    if config_file.is_empty() {
        config_file = env.get("ETCD_CONFIG_FILE").cloned().unwrap_or_default();
    }
    let mut warnings = Vec::new();
    let mut config = if config_file.is_empty() {
        command_line::configure_from_command_line(&mut parsed, env, &mut warnings)?
    } else {
        warnings.extend(parsed.warnings.iter().cloned());
        yaml::configure_from_file(Path::new(&config_file), read_file, &mut warnings)?
    };
    for name in flag_table::DEPRECATED_FLAGS {
        if parsed.set_flags.contains(*name) {
            warnings.push(Warning::new(format!(
                "--{name} is deprecated in 3.5 and will be decommissioned in 3.6."
            )));
        }
    }
    validate::finish(&mut config, &mut warnings)?;
    Ok(Command::Run(config, warnings))
}
