//! The command line and `ETCD_*` environment variables, handled the way etcd 3.5 handles them
//! with Go's `flag` package and its own `flags.SetFlagsFromEnv`.
//!
//! Go flag syntax: `-flag`, `--flag`, `-flag=value`, `--flag value` (the next argument is taken
//! even if it starts with `-`), bool flags never take the next argument; parsing stops at the
//! first non-flag argument or after `--`. Messages are Go's (checked against etcd 3.4.23:
//! `flag provided but not defined: -foo`, `invalid value "abc" for flag -election-timeout: parse
//! error`, exit 2; `'extra' is not a valid flag`, exit 1).

use std::collections::{BTreeMap, BTreeSet};

use super::flag_kinds::SetError;
use super::flag_table::{self, env_name_of, FlagSpec, FLAGS, IGNORED_FLAGS};
use super::goparse::{go_quote, parse_bool};
use super::server_config::{DiscoveryFallback, ProxyMode, ServerConfig, MIN_RAFT_CONNECTION_TIMEOUT};
use super::{validate, ConfigError, Warning};

/// The outcome of reading argv.
pub(crate) enum Parsed {
    /// `-h`, `--help` (Go's `flag.ErrHelp`).
    Help,
    Flags(Box<ParsedFlags>),
}

#[derive(Clone)]
pub(crate) struct ParsedFlags {
    /// Starts from the defaults with `data_dir` empty (resolved once the name is known).
    pub config: ServerConfig,
    /// Names of flags given on the command line, later also those set from the environment
    /// (Go's `FlagSet.Visit` sees both).
    pub set_flags: BTreeSet<&'static str>,
    /// Names given on the command line only (for env conflicts).
    pub command_line_flags: BTreeSet<&'static str>,
    /// Values etcd's flag parser accepts but its validation rejects; reported (first one) only
    /// if the command line is otherwise usable and no config file takes over.
    pub deferred_errors: Vec<String>,
    pub config_file: String,
    pub print_version: bool,
    pub positional: Vec<String>,
    pub warnings: Vec<Warning>,
}

enum Target {
    Table(&'static FlagSpec),
    Ignored(&'static str),
    ConfigFile,
    Version,
}

fn find_target(name: &str) -> Option<Target> {
    match name {
        "config-file" => Some(Target::ConfigFile),
        "version" => Some(Target::Version),
        _ => flag_table::lookup(name).map(Target::Table).or_else(|| {
            IGNORED_FLAGS
                .iter()
                .find(|ignored| **ignored == name)
                .map(|ignored| Target::Ignored(ignored))
        }),
    }
}

/// Go's `FlagSet.Parse` over the arguments that follow the program name.
pub(crate) fn parse_arguments(args: &[String]) -> Result<Parsed, ConfigError> {
    let mut parsed = ParsedFlags {
        // data_dir stays empty until the name is known.
        config: ServerConfig {
            data_dir: Default::default(),
            ..Default::default()
        },
        set_flags: BTreeSet::new(),
        command_line_flags: BTreeSet::new(),
        deferred_errors: Vec::new(),
        config_file: String::new(),
        print_version: false,
        positional: Vec::new(),
        warnings: Vec::new(),
    };
    let mut index = 0;
    while index < args.len() {
        let argument = &args[index];
        if argument.len() < 2 || !argument.starts_with('-') {
            break;
        }
        let minuses = if argument.as_bytes()[1] == b'-' { 2 } else { 1 };
        if argument == "--" {
            index += 1;
            break;
        }
        let body = &argument[minuses..];
        if body.is_empty() || body.starts_with('-') || body.starts_with('=') {
            return Err(ConfigError::usage(format!("bad flag syntax: {argument}")));
        }
        index += 1;
        // The '=' search starts after the first byte, as Go's does.
        let (name, mut value) = match body.bytes().skip(1).position(|byte| byte == b'=') {
            Some(offset) => (&body[..offset + 1], Some(body[offset + 2..].to_string())),
            None => (body, None),
        };
        let Some(target) = find_target(name) else {
            if name == "help" || name == "h" {
                return Ok(Parsed::Help);
            }
            return Err(ConfigError::usage(format!("flag provided but not defined: -{name}")));
        };
        let is_bool = match &target {
            Target::Table(flag) => flag.is_bool,
            Target::Ignored(_) | Target::Version => true,
            Target::ConfigFile => false,
        };
        if !is_bool && value.is_none() && index < args.len() {
            value = Some(args[index].clone());
            index += 1;
        }
        let text = match (is_bool, value) {
            (true, None) => "true".to_string(),
            (_, Some(text)) => text,
            (false, None) => return Err(ConfigError::usage(format!("flag needs an argument: -{name}"))),
        };
        let bool_error = || {
            ConfigError::usage(format!(
                "invalid boolean value {} for -{name}: parse error",
                go_quote(&text)
            ))
        };
        match target {
            Target::ConfigFile => parsed.config_file = text.clone(),
            Target::Version => parsed.print_version = parse_bool(&text).ok_or_else(bool_error)?,
            Target::Ignored(ignored) => {
                parsed.warnings.push(Warning::new(format!(
                    "flag --{ignored} is no longer supported - ignoring"
                )));
                parsed.command_line_flags.insert(ignored);
            }
            Target::Table(flag) => {
                match (flag.set)(&mut parsed.config, &text) {
                    Ok(()) => {}
                    Err(SetError::Syntax(_)) if flag.is_bool => return Err(bool_error()),
                    Err(SetError::Syntax(reason)) => {
                        return Err(ConfigError::usage(format!(
                            "invalid value {} for flag -{name}: {reason}",
                            go_quote(&text)
                        )))
                    }
                    Err(SetError::Invalid(message)) => parsed.deferred_errors.push(message),
                }
                parsed.set_flags.insert(flag.name);
                parsed.command_line_flags.insert(flag.name);
            }
        }
    }
    parsed.positional = args[index..].to_vec();
    Ok(Parsed::Flags(Box::new(parsed)))
}

/// Everything after argv when no config file is used: environment, etcd's flag fix-ups and
/// `embed.Config.Validate`.
pub(crate) fn configure_from_command_line(
    parsed: &mut ParsedFlags,
    env: &BTreeMap<String, String>,
    warnings: &mut Vec<Warning>,
) -> Result<ServerConfig, ConfigError> {
    warnings.append(&mut parsed.warnings);
    apply_environment(parsed, env, warnings)?;
    if let Some(first) = parsed.deferred_errors.first() {
        return Err(ConfigError::invalid(first.clone()));
    }
    let config = &mut parsed.config;
    for (name, timeout) in [
        ("raft-read-timeout", &mut config.raft_read_timeout),
        ("raft-write-timeout", &mut config.raft_write_timeout),
    ] {
        if *timeout < MIN_RAFT_CONNECTION_TIMEOUT {
            *timeout = MIN_RAFT_CONNECTION_TIMEOUT;
            warnings.push(Warning::new(format!("{name} increased to minimum value: 5s")));
        }
    }
    let may_be_proxy = config.v2_proxy.mode != ProxyMode::Off
        || (!config.discovery.is_empty() && config.discovery_fallback == DiscoveryFallback::Proxy);
    // Listening somewhere explicit without saying where clients should connect is an error
    // (etcd drops the default advertise URL so that Validate catches it).
    if parsed.set_flags.contains("listen-client-urls")
        && !parsed.set_flags.contains("advertise-client-urls")
        && !may_be_proxy
    {
        config.advertise_client_urls.clear();
    }
    let uses_discovery =
        !config.discovery.is_empty() || !config.discovery_srv.is_empty() || !config.discovery_srv_name.is_empty();
    if uses_discovery && !parsed.set_flags.contains("initial-cluster") {
        config.initial_cluster.clear();
    }
    match validate::validate_embed(config) {
        Err(error) if may_be_proxy && error.message == validate::UNSET_ADVERTISE_CLIENT_URLS => {}
        result => result?,
    }
    Ok(parsed.config.clone())
}

/// etcd's `flags.SetFlagsFromEnv`: each flag not given on the command line takes a non-empty
/// `ETCD_<NAME>`; a variable for a flag that was given is fatal; other `ETCD_*` variables
/// are reported as unrecognized.
fn apply_environment(
    parsed: &mut ParsedFlags,
    env: &BTreeMap<String, String>,
    warnings: &mut Vec<Warning>,
) -> Result<(), ConfigError> {
    // etcd unsets a non-empty ETCD_VERSION before looking at the environment.
    let version_key = "ETCD_VERSION";
    let version_removed = env.get(version_key).is_some_and(|value| !value.is_empty());
    if version_removed {
        warnings.push(Warning::new(format!(
            "cannot set special environment variable {version_key}={}",
            env[version_key]
        )));
    }
    let already_set: BTreeSet<String> = parsed.command_line_flags.iter().map(|name| env_name_of(name)).collect();
    let mut used = BTreeSet::new();
    let mut last_error = None;
    // Go's VisitAll walks flags in name order; the order decides which error is reported.
    let mut names: Vec<&'static str> = FLAGS
        .iter()
        .map(|flag| flag.name)
        .chain(IGNORED_FLAGS.iter().copied())
        .collect();
    names.sort_unstable();
    for name in names {
        let key = env_name_of(name);
        if already_set.contains(&key) {
            continue;
        }
        let Some(value) = env.get(&key).filter(|value| !value.is_empty()) else {
            continue;
        };
        used.insert(key.clone());
        let Some(flag) = flag_table::lookup(name) else {
            warnings.push(Warning::new(format!("flag --{name} is no longer supported - ignoring")));
            continue;
        };
        match (flag.set)(&mut parsed.config, value) {
            Ok(()) => {}
            Err(SetError::Syntax(reason)) => {
                last_error = Some(format!("invalid value {} for {key}: {reason}", go_quote(value)));
            }
            Err(SetError::Invalid(message)) => parsed.deferred_errors.push(message),
        }
        parsed.set_flags.insert(flag.name);
    }
    for (key, value) in env {
        if used.contains(key) || (key == version_key && version_removed) {
            continue;
        }
        if already_set.contains(key) {
            return Err(ConfigError::invalid(format!(
                "conflicting environment variable {} is shadowed by corresponding command-line flag \
                 (either unset environment variable or disable flag)",
                go_quote(key)
            )));
        }
        if key.starts_with("ETCD_") {
            warnings.push(Warning::new(format!("unrecognized environment variable {key}={value}")));
        }
    }
    match last_error {
        Some(message) => Err(ConfigError::invalid(message)),
        None => Ok(()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A non-default value for every flag and how etcd would print it back.
    pub(crate) fn sample(flag: &FlagSpec) -> (String, String) {
        let pair = |given: &str, shown: &str| (given.to_string(), shown.to_string());
        match flag.name {
            "initial-cluster-state" => pair("existing", "existing"),
            "discovery-fallback" => pair("exit", "exit"),
            "proxy" => pair("on", "on"),
            "auto-compaction-mode" => pair("revision", "revision"),
            "log-level" => pair("DEBUG", "debug"),
            "tls-min-version" => pair("TLS1.3", "TLS1.3"),
            "tls-max-version" => pair("TLS1.2", "TLS1.2"),
            "v2-deprecation" => pair("gone", "gone"),
            "cors" => pair(
                "http://b.example:1,http://a.example:1",
                "http://a.example:1,http://b.example:1",
            ),
            "host-whitelist" => pair("b.example,a.example,b.example", "a.example,b.example"),
            "max-concurrent-streams" => pair("0x10", "16"),
            name if name.ends_with("-urls") => pair(
                "http://127.0.0.2:7,http://127.0.0.1:7",
                "http://127.0.0.1:7,http://127.0.0.2:7",
            ),
            _ => match flag.go_type {
                "bool" => {
                    let flipped = (flag.get)(&ServerConfig::default()) != "true";
                    pair(&flipped.to_string(), &flipped.to_string())
                }
                "uint" | "uint64" | "int" | "int64" => pair("7", "7"),
                "time.Duration" => pair("90s", "1m30s"),
                "[]string" => pair("b,a", if flag.name == "log-outputs" { "a,b" } else { "b,a" }),
                _ => pair("/some/value", "/some/value"),
            },
        }
    }

    fn flags_of(parsed: Parsed) -> ParsedFlags {
        match parsed {
            Parsed::Flags(flags) => *flags,
            Parsed::Help => panic!("unexpected help"),
        }
    }

    #[test]
    fn every_flag_can_be_set_on_the_command_line_in_every_form() {
        let default = ServerConfig::default();
        for flag in FLAGS {
            let (given, shown) = sample(flag);
            assert_ne!(
                (flag.get)(&default),
                shown,
                "{}: the sample must differ from the default",
                flag.name
            );
            let mut forms = vec![
                vec![format!("--{}={given}", flag.name)],
                vec![format!("-{}={given}", flag.name)],
            ];
            if !flag.is_bool {
                forms.push(vec![format!("--{}", flag.name), given.clone()]);
                forms.push(vec![format!("-{}", flag.name), given.clone()]);
            }
            for args in forms {
                let parsed = flags_of(parse_arguments(&args).unwrap_or_else(|error| panic!("{args:?}: {error:?}")));
                assert_eq!((flag.get)(&parsed.config), shown, "{args:?}");
                assert!(parsed.set_flags.contains(flag.name));
                assert!(
                    parsed.positional.is_empty() && parsed.deferred_errors.is_empty(),
                    "{args:?}"
                );
            }
        }
    }

    #[test]
    fn every_flag_can_be_set_from_the_environment() {
        for flag in FLAGS {
            let (given, shown) = sample(flag);
            let mut parsed = flags_of(parse_arguments(&[]).unwrap());
            let env = BTreeMap::from([(env_name_of(flag.name), given)]);
            let mut warnings = Vec::new();
            apply_environment(&mut parsed, &env, &mut warnings)
                .unwrap_or_else(|error| panic!("{}: {error:?}", flag.name));
            assert_eq!((flag.get)(&parsed.config), shown, "{}", flag.name);
            assert!(warnings.is_empty(), "{}: {warnings:?}", flag.name);
            assert!(parsed.set_flags.contains(flag.name));
        }
    }

    #[test]
    fn bool_flags_without_value_mean_true_and_do_not_take_the_next_argument() {
        let args: Vec<String> = ["--enable-pprof", "false"].iter().map(|arg| arg.to_string()).collect();
        let parsed = flags_of(parse_arguments(&args).unwrap());
        assert!(parsed.config.enable_pprof);
        assert_eq!(parsed.positional, vec!["false".to_string()]);
        // A value flag takes the next argument even if it looks like a flag (Go semantics).
        let args: Vec<String> = ["--name", "--pre-vote"].iter().map(|arg| arg.to_string()).collect();
        let parsed = flags_of(parse_arguments(&args).unwrap());
        assert_eq!(parsed.config.name, "--pre-vote");
        assert!(parsed.config.pre_vote);
    }

    #[test]
    fn parsing_stops_at_the_first_non_flag_or_after_double_dash() {
        let args: Vec<String> = ["--name=a", "--", "--name=b"]
            .iter()
            .map(|arg| arg.to_string())
            .collect();
        let parsed = flags_of(parse_arguments(&args).unwrap());
        assert_eq!(parsed.config.name, "a");
        assert_eq!(parsed.positional, vec!["--name=b".to_string()]);
        let args: Vec<String> = ["-", "--name=b"].iter().map(|arg| arg.to_string()).collect();
        let parsed = flags_of(parse_arguments(&args).unwrap());
        assert_eq!(parsed.config.name, "default");
        assert_eq!(parsed.positional.len(), 2);
    }

    #[test]
    fn ignored_legacy_flags_are_accepted_with_a_warning() {
        let args: Vec<String> = ["-v", "--force=anything", "--name", "x"]
            .iter()
            .map(|arg| arg.to_string())
            .collect();
        let parsed = flags_of(parse_arguments(&args).unwrap());
        assert_eq!(parsed.config.name, "x");
        assert_eq!(parsed.warnings.len(), 2);
        assert_eq!(parsed.warnings[0].message, "flag --v is no longer supported - ignoring");
        // Like any flag, an ignored one given on the command line conflicts with its variable.
        let mut warnings = Vec::new();
        let env = BTreeMap::from([("ETCD_FORCE".to_string(), "1".to_string())]);
        let mut parsed = parsed;
        let error = apply_environment(&mut parsed, &env, &mut warnings).unwrap_err();
        assert!(
            error
                .message
                .starts_with("conflicting environment variable \"ETCD_FORCE\""),
            "{error:?}"
        );
    }
}
