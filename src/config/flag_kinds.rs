//! How each kind of flag value is parsed from text and rendered back, mirroring the Go
//! `flag.Value` etcd registers for it (`BoolVar`, `UintVar`, `DurationVar`, etcd's
//! `UniqueURLs`, `SelectiveStringValue`, …).

use std::path::PathBuf;
use std::time::Duration;

use super::goparse::{format_go_duration, go_quote, parse_bool, parse_duration, parse_int, parse_uint, IntError};
use super::server_config::{
    AutoCompactionMode, ClusterState, DiscoveryFallback, LogLevel, ProxyMode, TlsVersion, V2Deprecation,
};
use super::url::{join_urls, parse_url_list, Url};

/// Why a value was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SetError {
    /// Refused by the flag value itself: etcd's Go flag package reports it at parse time
    /// (`invalid value "x" for flag -name: <text>`, exit 2).
    Syntax(String),
    /// Accepted by etcd's flag parser but rejected later by its validation (exit 1); the text is
    /// the complete message.
    Invalid(String),
}

/// One kind of flag value.
pub(crate) trait FlagValue {
    type Value;
    /// Go bool flags take no argument (`--flag` means true).
    const IS_BOOL: bool = false;
    /// The Go type etcd decodes the YAML key into, for `cannot unmarshal` messages.
    const GO_TYPE: &'static str;
    /// How the YAML value is shaped.
    const YAML_SHAPE: YamlShape;
    fn parse(text: &str) -> Result<Self::Value, SetError>;
    /// The value as etcd's `flag.Value.String()` would show it.
    fn render(value: &Self::Value) -> String;
}

/// What a YAML key must hold (etcd decodes YAML through JSON into typed Go fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum YamlShape {
    String,
    Bool,
    /// A non-negative integer that fits the given number of bits.
    Unsigned(u32),
    /// A signed integer that fits the given number of bits.
    Signed(u32),
    /// A `time.Duration`: integer nanoseconds.
    Nanoseconds,
    /// A YAML sequence of strings.
    StringList,
}

fn syntax_from_int(error: IntError) -> SetError {
    SetError::Syntax(error.flag_text().to_string())
}

pub(crate) struct Str;
impl FlagValue for Str {
    type Value = String;
    const GO_TYPE: &'static str = "string";
    const YAML_SHAPE: YamlShape = YamlShape::String;
    fn parse(text: &str) -> Result<String, SetError> {
        Ok(text.to_string())
    }
    fn render(value: &String) -> String {
        value.clone()
    }
}

/// A file or directory path; empty means "not set".
pub(crate) struct OptionalPath;
impl FlagValue for OptionalPath {
    type Value = Option<PathBuf>;
    const GO_TYPE: &'static str = "string";
    const YAML_SHAPE: YamlShape = YamlShape::String;
    fn parse(text: &str) -> Result<Option<PathBuf>, SetError> {
        Ok((!text.is_empty()).then(|| PathBuf::from(text)))
    }
    fn render(value: &Option<PathBuf>) -> String {
        value
            .as_ref()
            .map(|path| path.display().to_string())
            .unwrap_or_default()
    }
}

/// `--data-dir`: empty until resolved to `${name}.braid` after parsing.
pub(crate) struct DataDir;
impl FlagValue for DataDir {
    type Value = PathBuf;
    const GO_TYPE: &'static str = "string";
    const YAML_SHAPE: YamlShape = YamlShape::String;
    fn parse(text: &str) -> Result<PathBuf, SetError> {
        Ok(PathBuf::from(text))
    }
    fn render(value: &PathBuf) -> String {
        value.display().to_string()
    }
}

pub(crate) struct Bool;
impl FlagValue for Bool {
    type Value = bool;
    const IS_BOOL: bool = true;
    const GO_TYPE: &'static str = "bool";
    const YAML_SHAPE: YamlShape = YamlShape::Bool;
    fn parse(text: &str) -> Result<bool, SetError> {
        parse_bool(text).ok_or_else(|| SetError::Syntax("parse error".to_string()))
    }
    fn render(value: &bool) -> String {
        value.to_string()
    }
}

/// Go `uint` (64-bit on the platforms etcd ships for).
pub(crate) struct Uint;
impl FlagValue for Uint {
    type Value = u64;
    const GO_TYPE: &'static str = "uint";
    const YAML_SHAPE: YamlShape = YamlShape::Unsigned(64);
    fn parse(text: &str) -> Result<u64, SetError> {
        parse_uint(text, 64).map_err(syntax_from_int)
    }
    fn render(value: &u64) -> String {
        value.to_string()
    }
}

/// Go `uint64`.
pub(crate) struct Uint64;
impl FlagValue for Uint64 {
    type Value = u64;
    const GO_TYPE: &'static str = "uint64";
    const YAML_SHAPE: YamlShape = YamlShape::Unsigned(64);
    fn parse(text: &str) -> Result<u64, SetError> {
        Uint::parse(text)
    }
    fn render(value: &u64) -> String {
        value.to_string()
    }
}

/// Go `int` (64-bit).
pub(crate) struct Int;
impl FlagValue for Int {
    type Value = i64;
    const GO_TYPE: &'static str = "int";
    const YAML_SHAPE: YamlShape = YamlShape::Signed(64);
    fn parse(text: &str) -> Result<i64, SetError> {
        parse_int(text, 64).map_err(syntax_from_int)
    }
    fn render(value: &i64) -> String {
        value.to_string()
    }
}

/// Go `int64`.
pub(crate) struct Int64;
impl FlagValue for Int64 {
    type Value = i64;
    const GO_TYPE: &'static str = "int64";
    const YAML_SHAPE: YamlShape = YamlShape::Signed(64);
    fn parse(text: &str) -> Result<i64, SetError> {
        Int::parse(text)
    }
    fn render(value: &i64) -> String {
        value.to_string()
    }
}

/// etcd's own `uint32Value` (`--max-concurrent-streams`), which passes strconv's error through.
pub(crate) struct Uint32;
impl FlagValue for Uint32 {
    type Value = u32;
    const GO_TYPE: &'static str = "uint32";
    const YAML_SHAPE: YamlShape = YamlShape::Unsigned(32);
    fn parse(text: &str) -> Result<u32, SetError> {
        match parse_uint(text, 32) {
            Ok(value) => Ok(value as u32),
            Err(error) => Err(SetError::Syntax(error.strconv_text("ParseUint", text))),
        }
    }
    fn render(value: &u32) -> String {
        value.to_string()
    }
}

/// Go `time.Duration` (`5s`, `2h`, `100ms`); YAML holds integer nanoseconds.
pub(crate) struct GoDuration;
impl FlagValue for GoDuration {
    type Value = Duration;
    const GO_TYPE: &'static str = "time.Duration";
    const YAML_SHAPE: YamlShape = YamlShape::Nanoseconds;
    fn parse(text: &str) -> Result<Duration, SetError> {
        // Go's flag package hides time's message behind "parse error"; braid keeps that
        // wording except for negative durations, which Go accepts and braid cannot hold.
        parse_duration(text).map_err(|error| match error {
            super::goparse::DurationError::Negative => SetError::Syntax(error.message(text)),
            super::goparse::DurationError::Go(_) => SetError::Syntax("parse error".to_string()),
        })
    }
    fn render(value: &Duration) -> String {
        format_go_duration(*value)
    }
}

/// A Go `uint` counting milliseconds (`--heartbeat-interval`, `--election-timeout`, `--proxy-*`).
pub(crate) struct Milliseconds;
impl FlagValue for Milliseconds {
    type Value = Duration;
    const GO_TYPE: &'static str = "uint";
    const YAML_SHAPE: YamlShape = YamlShape::Unsigned(64);
    fn parse(text: &str) -> Result<Duration, SetError> {
        Uint::parse(text).map(Duration::from_millis)
    }
    fn render(value: &Duration) -> String {
        value.as_millis().to_string()
    }
}

/// A Go `uint` counting seconds (`--auth-token-ttl`).
pub(crate) struct Seconds;
impl FlagValue for Seconds {
    type Value = Duration;
    const GO_TYPE: &'static str = "uint";
    const YAML_SHAPE: YamlShape = YamlShape::Unsigned(64);
    fn parse(text: &str) -> Result<Duration, SetError> {
        Uint::parse(text).map(Duration::from_secs)
    }
    fn render(value: &Duration) -> String {
        value.as_secs().to_string()
    }
}

/// etcd's `UniqueURLs`: comma-separated, each URL valid, sorted, deduplicated.
pub(crate) struct Urls;
impl FlagValue for Urls {
    type Value = Vec<Url>;
    const GO_TYPE: &'static str = "string";
    const YAML_SHAPE: YamlShape = YamlShape::String;
    fn parse(text: &str) -> Result<Vec<Url>, SetError> {
        parse_url_list(text).map_err(SetError::Syntax)
    }
    fn render(value: &Vec<Url>) -> String {
        join_urls(value)
    }
}

/// etcd's `StringsValue`: comma-separated, order kept. Empty elements are dropped.
pub(crate) struct Strings;
impl FlagValue for Strings {
    type Value = Vec<String>;
    const GO_TYPE: &'static str = "[]string";
    const YAML_SHAPE: YamlShape = YamlShape::StringList;
    fn parse(text: &str) -> Result<Vec<String>, SetError> {
        Ok(text
            .split(',')
            .filter(|item| !item.is_empty())
            .map(str::to_string)
            .collect())
    }
    fn render(value: &Vec<String>) -> String {
        value.join(",")
    }
}

/// etcd's `UniqueStringsValue`: comma-separated, sorted, deduplicated.
pub(crate) struct UniqueStrings;
impl FlagValue for UniqueStrings {
    type Value = Vec<String>;
    const GO_TYPE: &'static str = "[]string";
    const YAML_SHAPE: YamlShape = YamlShape::StringList;
    fn parse(text: &str) -> Result<Vec<String>, SetError> {
        let mut values: Vec<String> = text.split(',').map(str::to_string).collect();
        values.sort();
        values.dedup();
        Ok(values)
    }
    fn render(value: &Vec<String>) -> String {
        value.join(",")
    }
}

/// `--host-whitelist`: like `UniqueStrings` but written as one comma-separated YAML string.
pub(crate) struct HostList;
impl FlagValue for HostList {
    type Value = Vec<String>;
    const GO_TYPE: &'static str = "string";
    const YAML_SHAPE: YamlShape = YamlShape::String;
    fn parse(text: &str) -> Result<Vec<String>, SetError> {
        UniqueStrings::parse(text)
    }
    fn render(value: &Vec<String>) -> String {
        value.join(",")
    }
}

/// `--cors`: `*` or a list of origin URLs (etcd's `UniqueURLs` with `*` as the exception).
pub(crate) struct Cors;
impl FlagValue for Cors {
    type Value = Vec<String>;
    const GO_TYPE: &'static str = "string";
    const YAML_SHAPE: YamlShape = YamlShape::String;
    fn parse(text: &str) -> Result<Vec<String>, SetError> {
        if text == "*" {
            return Ok(vec!["*".to_string()]);
        }
        Urls::parse(text).map(|urls| urls.iter().map(Url::to_string).collect())
    }
    fn render(value: &Vec<String>) -> String {
        value.join(",")
    }
}

/// etcd's `SelectiveStringValue` answers "invalid value" for anything outside its set.
fn selective<T: Copy>(text: &str, choices: &[(&str, T)]) -> Result<T, SetError> {
    choices
        .iter()
        .find(|(name, _)| *name == text)
        .map(|(_, value)| *value)
        .ok_or_else(|| SetError::Syntax("invalid value".to_string()))
}

fn name_of<T: Copy + PartialEq>(value: T, choices: &[(&'static str, T)]) -> String {
    choices
        .iter()
        .find(|(_, choice)| *choice == value)
        .map(|(name, _)| name.to_string())
        .unwrap_or_default()
}

const CLUSTER_STATES: &[(&str, ClusterState)] = &[("new", ClusterState::New), ("existing", ClusterState::Existing)];
pub(crate) struct ClusterStateFlag;
impl FlagValue for ClusterStateFlag {
    type Value = ClusterState;
    const GO_TYPE: &'static str = "string";
    const YAML_SHAPE: YamlShape = YamlShape::String;
    fn parse(text: &str) -> Result<ClusterState, SetError> {
        selective(text, CLUSTER_STATES)
    }
    fn render(value: &ClusterState) -> String {
        name_of(*value, CLUSTER_STATES)
    }
}

const FALLBACKS: &[(&str, DiscoveryFallback)] =
    &[("exit", DiscoveryFallback::Exit), ("proxy", DiscoveryFallback::Proxy)];
pub(crate) struct FallbackFlag;
impl FlagValue for FallbackFlag {
    type Value = DiscoveryFallback;
    const GO_TYPE: &'static str = "string";
    const YAML_SHAPE: YamlShape = YamlShape::String;
    fn parse(text: &str) -> Result<DiscoveryFallback, SetError> {
        selective(text, FALLBACKS)
    }
    fn render(value: &DiscoveryFallback) -> String {
        name_of(*value, FALLBACKS)
    }
}

const PROXY_MODES: &[(&str, ProxyMode)] = &[
    ("off", ProxyMode::Off),
    ("readonly", ProxyMode::Readonly),
    ("on", ProxyMode::On),
];
pub(crate) struct ProxyFlag;
impl FlagValue for ProxyFlag {
    type Value = ProxyMode;
    const GO_TYPE: &'static str = "string";
    const YAML_SHAPE: YamlShape = YamlShape::String;
    fn parse(text: &str) -> Result<ProxyMode, SetError> {
        selective(text, PROXY_MODES)
    }
    fn render(value: &ProxyMode) -> String {
        name_of(*value, PROXY_MODES)
    }
}

const V2_DEPRECATIONS: &[(&str, V2Deprecation)] = &[
    ("not-yet", V2Deprecation::NotYet),
    ("write-only", V2Deprecation::WriteOnly),
    ("write-only-skip-check", V2Deprecation::WriteOnlySkipCheck),
    ("write-only-drop-data", V2Deprecation::WriteOnlyDropData),
    ("gone", V2Deprecation::Gone),
];
pub(crate) struct V2DeprecationFlag;
impl FlagValue for V2DeprecationFlag {
    type Value = V2Deprecation;
    const GO_TYPE: &'static str = "config.V2DeprecationEnum";
    const YAML_SHAPE: YamlShape = YamlShape::String;
    fn parse(text: &str) -> Result<V2Deprecation, SetError> {
        // etcd's SelectiveStringsValue names the offending element.
        selective(text, V2_DEPRECATIONS).map_err(|_| SetError::Syntax(format!("invalid value {}", go_quote(text))))
    }
    fn render(value: &V2Deprecation) -> String {
        value.as_str().to_string()
    }
}

/// `--auto-compaction-mode`; etcd validates it after parsing (`unknown auto-compaction-mode`).
pub(crate) struct CompactionModeFlag;
impl FlagValue for CompactionModeFlag {
    type Value = AutoCompactionMode;
    const GO_TYPE: &'static str = "string";
    const YAML_SHAPE: YamlShape = YamlShape::String;
    fn parse(text: &str) -> Result<AutoCompactionMode, SetError> {
        match text {
            // etcd's Validate also lets "" through; braid reads it as the flag default.
            "periodic" | "" => Ok(AutoCompactionMode::Periodic),
            "revision" => Ok(AutoCompactionMode::Revision),
            _ => Err(SetError::Invalid(format!(
                "unknown auto-compaction-mode {}",
                go_quote(text)
            ))),
        }
    }
    fn render(value: &AutoCompactionMode) -> String {
        match value {
            AutoCompactionMode::Periodic => "periodic".to_string(),
            AutoCompactionMode::Revision => "revision".to_string(),
        }
    }
}

/// `--log-level`, with zap's accepted spellings.
pub(crate) struct LogLevelFlag;
impl FlagValue for LogLevelFlag {
    type Value = LogLevel;
    const GO_TYPE: &'static str = "string";
    const YAML_SHAPE: YamlShape = YamlShape::String;
    fn parse(text: &str) -> Result<LogLevel, SetError> {
        match text {
            "debug" | "DEBUG" => Ok(LogLevel::Debug),
            "info" | "INFO" | "" => Ok(LogLevel::Info),
            "warn" | "WARN" => Ok(LogLevel::Warn),
            "error" | "ERROR" => Ok(LogLevel::Error),
            "dpanic" | "DPANIC" => Ok(LogLevel::DPanic),
            "panic" | "PANIC" => Ok(LogLevel::Panic),
            "fatal" | "FATAL" => Ok(LogLevel::Fatal),
            // etcd 3.5 panics with zap's message (3.4.23 printed `unknown level "foo"`).
            _ => Err(SetError::Invalid(format!("unrecognized level: {}", go_quote(text)))),
        }
    }
    fn render(value: &LogLevel) -> String {
        match value {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
            LogLevel::DPanic => "dpanic",
            LogLevel::Panic => "panic",
            LogLevel::Fatal => "fatal",
        }
        .to_string()
    }
}

/// `--tls-min-version` / `--tls-max-version` (`''` lets the TLS library choose).
pub(crate) struct TlsVersionFlag;
impl FlagValue for TlsVersionFlag {
    type Value = Option<TlsVersion>;
    const GO_TYPE: &'static str = "string";
    const YAML_SHAPE: YamlShape = YamlShape::String;
    fn parse(text: &str) -> Result<Option<TlsVersion>, SetError> {
        match text {
            "" => Ok(None),
            "TLS1.2" => Ok(Some(TlsVersion::Tls12)),
            "TLS1.3" => Ok(Some(TlsVersion::Tls13)),
            _ => Err(SetError::Invalid(format!(
                "unexpected TLS version {} (must be one of: TLS1.2, TLS1.3)",
                go_quote(text)
            ))),
        }
    }
    fn render(value: &Option<TlsVersion>) -> String {
        value.map(|version| version.as_str().to_string()).unwrap_or_default()
    }
}
