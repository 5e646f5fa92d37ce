//! `--config-file`: etcd's YAML configuration (`embed.ConfigFromFile` plus etcdmain's proxy
//! keys).
//!
//! etcd converts the YAML (1.1, via go-yaml) to JSON and decodes it into typed Go structs, so:
//! keys match flag names case-insensitively, unknown keys are ignored (braid warns), `null`
//! leaves the default, later duplicate keys win, numbers must be unquoted, `time.Duration` keys
//! are integer nanoseconds and `heartbeat-interval`/`election-timeout` integer milliseconds,
//! URL lists are comma-separated strings and `log-outputs`/`cipher-suites` YAML lists. Type
//! errors use Go's wording (checked against etcd 3.4.23, e.g. `error unmarshaling JSON: while
//! decoding JSON: json: cannot unmarshal string into Go struct field
//! configYAML.grpc-keepalive-min-time of type time.Duration`).
//!
//! braid is more lenient in one place: a plain scalar such as `1` or `off` is accepted for a
//! string key (go-yaml would type it as a number or bool and etcd would refuse it).

use std::path::Path;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::flag_kinds::{SetError, YamlShape};
use super::flag_table::{self, FlagSpec, FLAGS};
use super::goparse::{go_quote, parse_int, parse_uint};
use super::server_config::{ServerConfig, DEFAULT_INITIAL_CLUSTER};
use super::{validate, ConfigError, Warning};

/// Flags with no top-level YAML key (etcd keeps them elsewhere or not at all), besides
/// the TLS flags (`settings::TLS_FLAGS`), which nest under `*-transport-security`.
const NOT_TOP_LEVEL: &[&str] = &[
    "raft-read-timeout",
    "raft-write-timeout",
    "socket-reuse-port",
    "socket-reuse-address",
    "experimental-peer-skip-client-san-verification",
    "experimental-snapshot-catchup-entries",
];

/// Keys etcdmain decodes into its `configProxy` struct rather than `configYAML`.
const PROXY_KEYS: &[&str] = &[
    "proxy",
    "proxy-failure-wait",
    "proxy-refresh-interval",
    "proxy-dial-timeout",
    "proxy-write-timeout",
    "proxy-read-timeout",
    "discovery-fallback",
];

/// (YAML key under `client-transport-security`, client flag, peer flag).
const SECURITY_KEYS: &[(&str, &str, &str)] = &[
    ("cert-file", "cert-file", "peer-cert-file"),
    ("key-file", "key-file", "peer-key-file"),
    ("client-cert-file", "client-cert-file", "peer-client-cert-file"),
    ("client-key-file", "client-key-file", "peer-client-key-file"),
    ("client-cert-auth", "client-cert-auth", "peer-client-cert-auth"),
    ("trusted-ca-file", "trusted-ca-file", "peer-trusted-ca-file"),
    ("auto-tls", "auto-tls", "peer-auto-tls"),
    // The client side has no allowed-cn flag; handled specially.
    ("allowed-cn", "", "peer-cert-allowed-cn"),
    (
        "allowed-hostname",
        "client-cert-allowed-hostname",
        "peer-cert-allowed-hostname",
    ),
];

const SOCKET_KEYS: &[(&str, &str)] = &[
    ("reuse-port", "socket-reuse-port"),
    ("reuse-address", "socket-reuse-address"),
];

/// A YAML node with what go-yaml needs to resolve scalars (quoted scalars are always strings).
#[derive(Debug, Clone)]
enum Node {
    Scalar { text: String, plain: bool },
    Sequence(Vec<Node>),
    Mapping(Vec<(Node, Node)>),
}

/// A scalar as YAML 1.1 (go-yaml v2) types it.
#[derive(Debug, Clone, PartialEq)]
enum Resolved {
    Null,
    Bool(bool),
    Integer(i128),
    /// A float that is not an integer-valued literal; kept as written.
    Float {
        value: f64,
        text: String,
    },
    Text(String),
}

fn resolve(text: &str, plain: bool) -> Resolved {
    if !plain {
        return Resolved::Text(text.to_string());
    }
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Resolved::Null,
        "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "true" | "True" | "TRUE" => {
            return Resolved::Bool(true)
        }
        "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" | "false" | "False" | "FALSE" => {
            return Resolved::Bool(false)
        }
        _ => {}
    }
    let without_underscores = text.replace('_', "");
    if let Ok(value) = parse_int(&without_underscores, 64) {
        return Resolved::Integer(i128::from(value));
    }
    if let Ok(value) = parse_uint(&without_underscores, 64) {
        return Resolved::Integer(i128::from(value));
    }
    if is_yaml_float(&without_underscores) {
        if let Ok(value) = without_underscores.parse::<f64>() {
            return Resolved::Float {
                value,
                text: text.to_string(),
            };
        }
    }
    Resolved::Text(text.to_string())
}

/// go-yaml's `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`.
fn is_yaml_float(text: &str) -> bool {
    let body = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(index) => (&body[..index], Some(&body[index + 1..])),
        None => (body, None),
    };
    let all_digits = |text: &str| text.bytes().all(|byte| byte.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        // "5." and ".5" are floats, "." is not.
        Some((whole, fraction)) => {
            all_digits(whole) && all_digits(fraction) && !(whole.is_empty() && fraction.is_empty())
        }
        None => !mantissa.is_empty() && all_digits(mantissa),
    };
    let exponent_ok = exponent.is_none_or(|exponent| {
        let digits = exponent.strip_prefix(['-', '+']).unwrap_or(exponent);
        !digits.is_empty() && digits.bytes().all(|byte| byte.is_ascii_digit())
    });
    mantissa_ok && exponent_ok
}

/// Builds `Node`s from parser events (aliases are expanded).
#[derive(Default)]
struct TreeBuilder {
    stack: Vec<(Vec<Node>, bool, usize)>,
    documents: Vec<Node>,
    anchors: Vec<(usize, Node)>,
}

impl TreeBuilder {
    fn push(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.push((anchor, node.clone()));
        }
        match self.stack.last_mut() {
            Some((children, _, _)) => children.push(node),
            None => self.documents.push(node),
        }
    }
}

impl MarkedEventReceiver for TreeBuilder {
    fn on_event(&mut self, event: Event, _mark: Marker) {
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                // An explicit !!str tag makes a plain scalar a string, as a quote would.
                let tagged_string = tag.as_ref().is_some_and(|tag| tag.suffix == "str");
                let plain = style == TScalarStyle::Plain && !tagged_string;
                self.push(Node::Scalar { text, plain }, anchor);
            }
            Event::SequenceStart(anchor, _) => self.stack.push((Vec::new(), false, anchor)),
            Event::MappingStart(anchor, _) => self.stack.push((Vec::new(), true, anchor)),
            Event::SequenceEnd | Event::MappingEnd => {
                let Some((children, is_mapping, anchor)) = self.stack.pop() else {
                    panic!("YAML parser closed a collection that was never opened");
                };
                let node = if is_mapping {
                    let mut pairs = Vec::with_capacity(children.len() / 2);
                    let mut items = children.into_iter();
                    while let (Some(key), Some(value)) = (items.next(), items.next()) {
                        pairs.push((key, value));
                    }
                    Node::Mapping(pairs)
                } else {
                    Node::Sequence(children)
                };
                self.push(node, anchor);
            }
            Event::Alias(anchor) => {
                let node = self
                    .anchors
                    .iter()
                    .rev()
                    .find(|(id, _)| *id == anchor)
                    .map(|(_, node)| node.clone());
                self.push(
                    node.unwrap_or(Node::Scalar {
                        text: String::new(),
                        plain: true,
                    }),
                    0,
                );
            }
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentStart | Event::DocumentEnd => {}
        }
    }
}

fn parse_yaml(text: &str) -> Result<Option<Node>, ConfigError> {
    let mut builder = TreeBuilder::default();
    Parser::new_from_str(text).load(&mut builder, false).map_err(|error| {
        ConfigError::invalid(format!(
            "error converting YAML to JSON: yaml: line {}: {}",
            error.marker().line(),
            error.info()
        ))
    })?;
    Ok(builder.documents.into_iter().next())
}

/// Go's `os.ReadFile` error text: `open <path>: no such file or directory`.
fn io_error_text(path: &Path, error: &std::io::Error) -> String {
    let mut reason = error.to_string();
    if let Some(index) = reason.find(" (os error") {
        reason.truncate(index);
    }
    if let Some(first) = reason.get(..1) {
        reason = first.to_ascii_lowercase() + &reason[1..];
    }
    let operation = if error.kind() == std::io::ErrorKind::IsADirectory {
        "read"
    } else {
        "open"
    };
    format!("{operation} {}: {reason}", path.display())
}

/// Reads and applies the config file; command-line flags and environment are not consulted.
pub(crate) fn configure_from_file(
    path: &Path,
    read_file: &dyn Fn(&Path) -> std::io::Result<String>,
    warnings: &mut Vec<Warning>,
) -> Result<ServerConfig, ConfigError> {
    let text = read_file(path).map_err(|error| ConfigError::invalid(io_error_text(path, &error)))?;
    // data_dir stays empty until the name is known.
    let mut config = ServerConfig {
        data_dir: Default::default(),
        ..Default::default()
    };
    if let Some(root) = parse_yaml(&text)? {
        apply_root(&mut config, &root, warnings)?;
    }
    // etcd's configFromFile fix-ups.
    if (!config.discovery.is_empty() || !config.discovery_srv.is_empty())
        && config.initial_cluster == DEFAULT_INITIAL_CLUSTER
    {
        config.initial_cluster.clear();
    }
    if config.self_signed_cert_validity_years == 0 {
        config.self_signed_cert_validity_years = 1;
    }
    if config.log_outputs.is_empty() {
        config.log_outputs = vec!["default".to_string()];
    }
    validate::validate_embed(&config)?;
    Ok(config)
}

fn json_kind(node: &Node) -> &'static str {
    match node {
        Node::Sequence(_) => "array",
        Node::Mapping(_) => "object",
        Node::Scalar { text, plain } => match resolve(text, *plain) {
            Resolved::Null => "null",
            Resolved::Bool(_) => "bool",
            Resolved::Integer(_) | Resolved::Float { .. } => "number",
            Resolved::Text(_) => "string",
        },
    }
}

fn type_error(kind: &str, field: &str, go_type: &str) -> ConfigError {
    ConfigError::invalid(format!(
        "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal {kind} into Go struct field {field} of type {go_type}"
    ))
}

fn is_null(node: &Node) -> bool {
    matches!(node, Node::Scalar { text, plain } if resolve(text, *plain) == Resolved::Null)
}

fn key_text(key: &Node) -> String {
    match key {
        Node::Scalar { text, .. } => text.clone(),
        _ => String::new(),
    }
}

/// Go's encoding/json matches keys exactly first, then case-insensitively.
fn find_key<'a, T>(key: &str, candidates: impl Iterator<Item = (&'a str, T)> + Clone) -> Option<T> {
    candidates
        .clone()
        .find(|(name, _)| *name == key)
        .or_else(|| candidates.into_iter().find(|(name, _)| name.eq_ignore_ascii_case(key)))
        .map(|(_, value)| value)
}

fn yaml_key_of(flag: &FlagSpec) -> Option<&'static str> {
    match flag.name {
        "experimental-snapshot-catchup-entries" => Some("experimental-snapshot-catch-up-entries"),
        name if NOT_TOP_LEVEL.contains(&name) || super::settings::TLS_FLAGS.contains(&name) => None,
        name => Some(name),
    }
}

fn apply_root(config: &mut ServerConfig, root: &Node, warnings: &mut Vec<Warning>) -> Result<(), ConfigError> {
    let pairs = match root {
        Node::Mapping(pairs) => pairs,
        other if is_null(other) => return Ok(()),
        other => {
            return Err(ConfigError::invalid(format!(
                "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal {} into Go value of type embed.configYAML",
                json_kind(other)
            )))
        }
    };
    let top_level = || FLAGS.iter().filter_map(|flag| yaml_key_of(flag).map(|key| (key, flag)));
    for (key_node, value) in pairs {
        let key = key_text(key_node);
        if let Some(flag) = find_key(&key, top_level()) {
            let go_struct = if PROXY_KEYS.contains(&flag.name) {
                "configProxy"
            } else {
                "configYAML"
            };
            let yaml_key = yaml_key_of(flag).unwrap_or(flag.name);
            apply_flag(config, flag, value, &format!("{go_struct}.{yaml_key}"))?;
        } else if let Some(client) = find_key(
            &key,
            [("client-transport-security", true), ("peer-transport-security", false)].into_iter(),
        ) {
            apply_security(config, client, value)?;
        } else if find_key(&key, [("socket-options", ())].into_iter()).is_some() {
            apply_socket_options(config, value)?;
        } else {
            warnings.push(Warning::new(format!(
                "unrecognized configuration file key {}",
                go_quote(&key)
            )));
        }
    }
    Ok(())
}

fn nested_pairs<'a>(value: &'a Node, field: &str, go_type: &str) -> Result<Option<&'a [(Node, Node)]>, ConfigError> {
    match value {
        Node::Mapping(pairs) => Ok(Some(pairs)),
        other if is_null(other) => Ok(None),
        other => Err(type_error(json_kind(other), field, go_type)),
    }
}

fn apply_security(config: &mut ServerConfig, client: bool, value: &Node) -> Result<(), ConfigError> {
    let section = if client {
        "client-transport-security"
    } else {
        "peer-transport-security"
    };
    let Some(pairs) = nested_pairs(value, &format!("configYAML.{section}"), "embed.securityConfig")? else {
        return Ok(());
    };
    for (key_node, value) in pairs {
        let Some((yaml_key, client_flag, peer_flag)) =
            find_key(&key_text(key_node), SECURITY_KEYS.iter().map(|entry| (entry.0, *entry)))
        else {
            continue;
        };
        let field = format!("securityConfig.{section}.{yaml_key}");
        if client && client_flag.is_empty() {
            // allowed-cn on the client side: a list with no flag of its own.
            if let Some(list) = string_list(value, &field)? {
                config.client_tls.allowed_cns = list
                    .split(',')
                    .filter(|cn| !cn.is_empty())
                    .map(str::to_string)
                    .collect();
            }
            continue;
        }
        let name = if client { client_flag } else { peer_flag };
        let flag =
            flag_table::lookup(name).unwrap_or_else(|| panic!("security key {yaml_key} maps to unknown flag {name}"));
        apply_flag(config, flag, value, &field)?;
    }
    Ok(())
}

fn apply_socket_options(config: &mut ServerConfig, value: &Node) -> Result<(), ConfigError> {
    let Some(pairs) = nested_pairs(value, "configYAML.socket-options", "transport.SocketOpts")? else {
        return Ok(());
    };
    for (key_node, value) in pairs {
        if let Some((yaml_key, name)) = find_key(&key_text(key_node), SOCKET_KEYS.iter().map(|entry| (entry.0, *entry)))
        {
            let flag =
                flag_table::lookup(name).unwrap_or_else(|| panic!("socket key {yaml_key} maps to unknown flag {name}"));
            apply_flag(config, flag, value, &format!("SocketOpts.socket-options.{yaml_key}"))?;
        }
    }
    Ok(())
}

/// A YAML sequence of strings joined with commas; `None` for null.
fn string_list(value: &Node, field: &str) -> Result<Option<String>, ConfigError> {
    match value {
        Node::Sequence(items) => {
            let mut texts = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Node::Scalar { text, .. } if !is_null(item) => texts.push(text.clone()),
                    _ if is_null(item) => texts.push(String::new()),
                    other => return Err(type_error(json_kind(other), field, "string")),
                }
            }
            Ok(Some(texts.join(",")))
        }
        other if is_null(other) => Ok(None),
        other => Err(type_error(json_kind(other), field, "[]string")),
    }
}

/// Converts the YAML value to the flag's text form (checking its JSON type like Go would) and
/// sets it; `field` is Go's `Struct.path` for messages.
fn apply_flag(config: &mut ServerConfig, flag: &FlagSpec, value: &Node, field: &str) -> Result<(), ConfigError> {
    if is_null(value) {
        return Ok(());
    }
    let mismatch = || type_error(json_kind(value), field, flag.go_type);
    let text = match flag.yaml_shape {
        YamlShape::StringList => match string_list(value, field)? {
            Some(text) => text,
            None => return Ok(()),
        },
        shape => {
            let Node::Scalar { text, plain } = value else {
                return Err(mismatch());
            };
            match (shape, resolve(text, *plain)) {
                (YamlShape::String, _) => text.clone(),
                (YamlShape::Bool, Resolved::Bool(value)) => value.to_string(),
                (YamlShape::Unsigned(_) | YamlShape::Signed(_) | YamlShape::Nanoseconds, resolved) => {
                    number_text(shape, resolved, field, flag.go_type).ok_or_else(mismatch)??
                }
                _ => return Err(mismatch()),
            }
        }
    };
    // etcd only overrides these when the YAML string is non-empty.
    let skip_when_empty = matches!(
        flag.name,
        "listen-peer-urls"
            | "listen-client-urls"
            | "listen-client-http-urls"
            | "initial-advertise-peer-urls"
            | "advertise-client-urls"
            | "listen-metrics-urls"
            | "cors"
            | "host-whitelist"
            | "initial-cluster-state"
            | "proxy"
            | "discovery-fallback"
    );
    if skip_when_empty && text.is_empty() {
        return Ok(());
    }
    match (flag.set)(config, &text) {
        Ok(()) => Ok(()),
        Err(SetError::Invalid(message)) => Err(ConfigError::invalid(message)),
        Err(SetError::Syntax(reason)) => Err(ConfigError::invalid(match flag.name {
            "initial-cluster-state" => format!("unexpected clusterState {}", go_quote(&text)),
            "proxy" => format!("unexpected error setting up proxyFlag: {reason}"),
            "discovery-fallback" => format!("unexpected error setting up discovery-fallback flag: {reason}"),
            // etcd's message names the wrong flag here; kept for fidelity.
            "advertise-client-urls" => format!("unexpected error setting up advertise-peer-urls: {reason}"),
            "v2-deprecation" => reason,
            name => format!("unexpected error setting up {name}: {reason}"),
        })),
    }
}

/// The decimal (or `<n>ns`) text of a YAML number for an integer-typed key. `None` when the
/// value is not a number at all; `Some(Err)` when it is a number Go cannot store in the type.
fn number_text(
    shape: YamlShape,
    resolved: Resolved,
    field: &str,
    go_type: &str,
) -> Option<Result<String, ConfigError>> {
    let (value, written) = match resolved {
        Resolved::Integer(value) => (value, value.to_string()),
        Resolved::Float { value, text } => {
            if value.fract() != 0.0 || !value.is_finite() || value.abs() > 9.2e18 {
                return Some(Err(type_error(&format!("number {text}"), field, go_type)));
            }
            (value as i128, text)
        }
        _ => return None,
    };
    let fits = match shape {
        YamlShape::Unsigned(bits) => value >= 0 && value < (1i128 << bits),
        YamlShape::Signed(bits) => value >= -(1i128 << (bits - 1)) && value < (1i128 << (bits - 1)),
        // braid's durations are unsigned.
        YamlShape::Nanoseconds => value >= 0 && value <= i128::from(i64::MAX),
        YamlShape::String | YamlShape::Bool | YamlShape::StringList => false,
    };
    if !fits {
        return Some(Err(type_error(&format!("number {written}"), field, go_type)));
    }
    Some(Ok(match shape {
        YamlShape::Nanoseconds => format!("{value}ns"),
        _ => value.to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_resolve_as_yaml_1_1() {
        assert_eq!(resolve("yes", true), Resolved::Bool(true));
        assert_eq!(resolve("Off", true), Resolved::Bool(false));
        assert_eq!(resolve("yes", false), Resolved::Text("yes".into()));
        assert_eq!(resolve("~", true), Resolved::Null);
        assert_eq!(resolve("", true), Resolved::Null);
        assert_eq!(resolve("0x10", true), Resolved::Integer(16));
        assert_eq!(resolve("010", true), Resolved::Integer(8));
        assert_eq!(resolve("1_000", true), Resolved::Integer(1000));
        assert_eq!(resolve("-5", true), Resolved::Integer(-5));
        assert_eq!(
            resolve("18446744073709551615", true),
            Resolved::Integer(i128::from(u64::MAX))
        );
        assert_eq!(
            resolve("1e3", true),
            Resolved::Float {
                value: 1000.0,
                text: "1e3".into()
            }
        );
        assert_eq!(
            resolve("1.5", true),
            Resolved::Float {
                value: 1.5,
                text: "1.5".into()
            }
        );
        assert_eq!(resolve("5s", true), Resolved::Text("5s".into()));
        assert_eq!(resolve("1.2.3", true), Resolved::Text("1.2.3".into()));
        assert!(!is_yaml_float("."));
        assert!(!is_yaml_float("e5"));
        assert!(is_yaml_float(".5"));
        assert!(is_yaml_float("5."));
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let error = parse_yaml("name: a\n: : :\n  - x\n").unwrap_err();
        assert_eq!(error.exit_code, 1);
        assert!(
            error.message.starts_with("error converting YAML to JSON: yaml: line "),
            "{}",
            error.message
        );
    }

    #[test]
    fn io_errors_read_like_go() {
        let error = std::io::Error::from_raw_os_error(2);
        assert_eq!(
            io_error_text(Path::new("x.yaml"), &error),
            "open x.yaml: no such file or directory"
        );
    }

    #[test]
    fn every_flag_is_reachable_from_yaml_or_deliberately_not() {
        for flag in FLAGS {
            let top = yaml_key_of(flag).is_some();
            let nested = SECURITY_KEYS
                .iter()
                .any(|(_, client, peer)| *client == flag.name || *peer == flag.name)
                || SOCKET_KEYS.iter().any(|(_, name)| *name == flag.name);
            let flag_only = matches!(
                flag.name,
                "raft-read-timeout"
                    | "raft-write-timeout"
                    | "client-crl-file"
                    | "peer-crl-file"
                    | "experimental-peer-skip-client-san-verification"
            );
            assert!(top || nested || flag_only, "{} has no YAML key", flag.name);
        }
    }

    fn apply_text(yaml: &str) -> Result<(ServerConfig, Vec<Warning>), ConfigError> {
        let mut config = ServerConfig::default();
        let mut warnings = Vec::new();
        let root = parse_yaml(yaml)?.expect("a document");
        apply_root(&mut config, &root, &mut warnings)?;
        Ok((config, warnings))
    }

    #[test]
    fn every_top_level_key_sets_its_flag() {
        for flag in FLAGS {
            let Some(key) = yaml_key_of(flag) else { continue };
            let (given, shown) = crate::config::command_line::tests::sample(flag);
            let value = match flag.yaml_shape {
                YamlShape::String => format!("'{given}'"),
                YamlShape::Nanoseconds => {
                    let duration = crate::config::goparse::parse_duration(&given).unwrap();
                    duration.as_nanos().to_string()
                }
                YamlShape::StringList => format!("[{}]", given.replace(',', ", ")),
                YamlShape::Bool | YamlShape::Unsigned(_) | YamlShape::Signed(_) => given.clone(),
            };
            let yaml = format!("{key}: {value}\n");
            let (config, warnings) = apply_text(&yaml).unwrap_or_else(|error| panic!("{yaml}: {error:?}"));
            assert_eq!((flag.get)(&config), shown, "{yaml}");
            assert!(warnings.is_empty(), "{yaml}: {warnings:?}");
        }
    }

    #[test]
    fn nested_security_and_socket_keys() {
        let yaml = "client-transport-security:\n  cert-file: /c.crt\n  key-file: /c.key\n  client-cert-file: /cc.crt\n  \
                    client-key-file: /cc.key\n  client-cert-auth: true\n  trusted-ca-file: /ca.crt\n  auto-tls: true\n  \
                    allowed-cn: [a, b]\n  allowed-hostname: [h]\n\
                    peer-transport-security:\n  cert-file: /p.crt\n  allowed-cn: [peer]\n  client-cert-auth: yes\n\
                    socket-options:\n  reuse-port: true\n  reuse-address: true\n";
        let (config, warnings) = apply_text(yaml).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        let client = &config.client_tls;
        assert_eq!(client.cert_file.as_deref(), Some(Path::new("/c.crt")));
        assert_eq!(client.key_file.as_deref(), Some(Path::new("/c.key")));
        assert_eq!(client.client_cert_file.as_deref(), Some(Path::new("/cc.crt")));
        assert_eq!(client.client_key_file.as_deref(), Some(Path::new("/cc.key")));
        assert_eq!(client.trusted_ca_file.as_deref(), Some(Path::new("/ca.crt")));
        assert!(client.client_cert_auth && client.auto_tls);
        assert_eq!(client.allowed_cns, vec!["a".to_string(), "b".to_string()]);
        assert_eq!(client.allowed_hostnames, vec!["h".to_string()]);
        assert_eq!(config.peer_tls.cert_file.as_deref(), Some(Path::new("/p.crt")));
        assert_eq!(config.peer_tls.allowed_cns, vec!["peer".to_string()]);
        assert!(config.peer_tls.client_cert_auth);
        assert!(config.socket_reuse_port && config.socket_reuse_address);
        // Lenient for strings (etcd 3.4.23 rejects `cert-file: 5`), strict for bools.
        assert!(apply_text("client-transport-security:\n  cert-file: 5\n").is_ok());
        let error = apply_text("client-transport-security:\n  client-cert-auth: 'true'\n")
            .map(|_| ())
            .unwrap_err();
        assert_eq!(
            error.message,
            "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal string into Go struct field \
             securityConfig.client-transport-security.client-cert-auth of type bool"
        );
        let error = apply_text("socket-options: true\n").map(|_| ()).unwrap_err();
        assert_eq!(
            error.message,
            "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal bool into Go struct field \
             configYAML.socket-options of type transport.SocketOpts"
        );
    }
}
