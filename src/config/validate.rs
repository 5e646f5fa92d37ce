//! etcd's configuration checks with etcd's messages: `embed.Config.Validate` (run for flags and
//! YAML alike) and the checks `etcdmain`/`embed.StartEtcd` make before the server starts.
//! Texts verified against etcd 3.4.23 are marked in the tests.

use std::net::IpAddr;
use std::path::PathBuf;

use super::goparse::{format_go_duration, go_quote};
use super::server_config::{
    ProxyMode, ServerConfig, TlsVersion, DEFAULT_INITIAL_CLUSTER, DEFAULT_NAME, MAX_ELECTION_TIMEOUT_MS,
    MAX_QUOTA_BACKEND_BYTES, RECOMMENDED_MAX_REQUEST_BYTES,
};
use super::url::Url;
use super::{ConfigError, Warning};

/// etcd's `ErrUnsetAdvertiseClientURLsFlag`.
pub(crate) const UNSET_ADVERTISE_CLIENT_URLS: &str =
    "--advertise-client-urls is required when --listen-client-urls is set explicitly";

const MAX_SAMPLING_RATE_PER_MILLION: i64 = 1_000_000;

/// `embed.Config.Validate`, in etcd's order.
pub(crate) fn validate_embed(config: &ServerConfig) -> Result<(), ConfigError> {
    validate_logging(config)?;
    for urls in [
        &config.listen_peer_urls,
        &config.listen_client_urls,
        &config.listen_client_http_urls,
        &config.listen_metrics_urls,
    ] {
        check_bind_urls(urls)?;
    }
    check_host_urls("--initial-advertise-peer-urls", &config.initial_advertise_peer_urls)?;
    check_host_urls("--advertise-client-urls", &config.advertise_client_urls)?;
    let bootstrap_sources = [
        !config.discovery.is_empty(),
        !config.initial_cluster.is_empty(),
        !config.discovery_srv.is_empty(),
    ];
    if bootstrap_sources.iter().filter(|set| **set).count() > 1 {
        return Err(ConfigError::invalid(
            "multiple discovery or bootstrap flags are set. Choose one of \"initial-cluster\", \"discovery\" or \"discovery-srv\"",
        ));
    }
    let heartbeat_ms = config.heartbeat_interval.as_millis();
    let election_ms = config.election_timeout.as_millis();
    if heartbeat_ms == 0 {
        return Err(ConfigError::invalid(format!(
            "--heartbeat-interval must be >0 (set to {heartbeat_ms}ms)"
        )));
    }
    if election_ms == 0 {
        return Err(ConfigError::invalid(format!(
            "--election-timeout must be >0 (set to {election_ms}ms)"
        )));
    }
    if 5 * heartbeat_ms > election_ms {
        return Err(ConfigError::invalid(format!(
            "--election-timeout[{election_ms}ms] should be at least as 5 times as --heartbeat-interval[{heartbeat_ms}ms]"
        )));
    }
    if election_ms > u128::from(MAX_ELECTION_TIMEOUT_MS) {
        return Err(ConfigError::invalid(format!(
            "--election-timeout[{election_ms}ms] is too long, and should be set less than {MAX_ELECTION_TIMEOUT_MS}ms"
        )));
    }
    if !config.listen_client_urls.is_empty() && config.advertise_client_urls.is_empty() {
        return Err(ConfigError::invalid(UNSET_ADVERTISE_CLIENT_URLS));
    }
    if config.experimental_enable_lease_checkpoint_persist && !config.experimental_enable_lease_checkpoint {
        return Err(ConfigError::invalid(
            "setting experimental-enable-lease-checkpoint-persist requires experimental-enable-lease-checkpoint",
        ));
    }
    if config.experimental_compact_hash_check_time.is_zero() {
        return Err(ConfigError::invalid(format!(
            "--experimental-compact-hash-check-time must be >0 (set to {})",
            format_go_duration(config.experimental_compact_hash_check_time)
        )));
    }
    if let (Some(min), Some(max)) = (config.tls_min_version, config.tls_max_version) {
        if min > max {
            return Err(ConfigError::invalid(format!(
                "min version ({}) is greater than max version ({})",
                min.as_str(),
                max.as_str()
            )));
        }
    }
    if config.tls_min_version == Some(TlsVersion::Tls13) && !config.cipher_suites.is_empty() {
        return Err(ConfigError::invalid(
            "cipher suites cannot be configured when only TLS1.3 is enabled",
        ));
    }
    if config.distributed_tracing.enabled {
        let rate = config.distributed_tracing.sampling_rate_per_million;
        let problem = if rate < 0 {
            Some("tracing sampling rate must be positive".to_string())
        } else if rate > MAX_SAMPLING_RATE_PER_MILLION {
            Some(format!(
                "tracing sampling rate must be less than {MAX_SAMPLING_RATE_PER_MILLION}"
            ))
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(ConfigError::invalid(format!(
                "distributed tracing configurition is not valid: ({problem})"
            )));
        }
    }
    Ok(())
}

/// The checks of etcd's `setupLogging` that do not need a logger.
fn validate_logging(config: &ServerConfig) -> Result<(), ConfigError> {
    match config.logger.as_str() {
        "zap" => {}
        "capnslog" => return Err(ConfigError::invalid("--logger=capnslog is removed in v3.5")),
        other => {
            return Err(ConfigError::invalid(format!(
                "unknown logger option {}",
                go_quote(other)
            )))
        }
    }
    let outputs = &config.log_outputs;
    if outputs.len() > 1 && outputs.iter().any(|output| output == "default") {
        return Err(ConfigError::invalid(
            "multi logoutput for \"default\" is not supported yet",
        ));
    }
    if config.enable_log_rotation {
        let file_outputs = outputs
            .iter()
            .filter(|output| !matches!(output.as_str(), "default" | "stderr" | "stdout"))
            .count();
        if (outputs.len() == 1 && file_outputs == 0) || file_outputs > 1 {
            return Err(ConfigError::invalid(
                "--log-outputs requires a single file path when --log-rotate-config-json is defined",
            ));
        }
    }
    Ok(())
}

/// etcd's `checkBindURLs`: listeners need an IP literal or `localhost` (unix sockets exempt).
fn check_bind_urls(urls: &[Url]) -> Result<(), ConfigError> {
    for url in urls {
        if url.scheme.is_unix() || url.host == "localhost" {
            continue;
        }
        if url.host.parse::<IpAddr>().is_err() {
            return Err(ConfigError::invalid(format!("expected IP in URL for binding ({url})")));
        }
    }
    Ok(())
}

/// etcd's `checkHostURLs` wrapped in its `must be "host:port"` message.
fn check_host_urls(flag: &str, urls: &[Url]) -> Result<(), ConfigError> {
    for url in urls {
        let problem = if url.port.is_none() {
            Some(format!("address {}: missing port in address", url.address()))
        } else if url.host.is_empty() {
            Some(format!("unexpected empty host ({url})"))
        } else {
            None
        };
        if let Some(problem) = problem {
            let all = urls.iter().map(Url::to_string).collect::<Vec<_>>().join(",");
            return Err(ConfigError::invalid(format!(
                "{flag} {} must be \"host:port\" ({problem})",
                go_quote(&all)
            )));
        }
    }
    Ok(())
}

/// What etcd does between parsing and starting the server, for both flags and YAML.
pub(crate) fn finish(config: &mut ServerConfig, warnings: &mut Vec<Warning>) -> Result<(), ConfigError> {
    // etcd's UpdateDefaultClusterFromName: `--name=x` alone bootstraps "x=<advertised peer URLs>".
    if config.name != DEFAULT_NAME && config.initial_cluster == DEFAULT_INITIAL_CLUSTER {
        let member = if config.name.is_empty() {
            DEFAULT_NAME
        } else {
            config.name.as_str()
        };
        config.initial_cluster = config
            .initial_advertise_peer_urls
            .iter()
            .map(|url| format!("{member}={url}"))
            .collect::<Vec<_>>()
            .join(",");
    }
    if config.data_dir.as_os_str().is_empty() {
        config.data_dir = PathBuf::from(format!("{}.braid", config.name));
    }
    if config.v2_proxy.mode != ProxyMode::Off {
        let mode = super::flag_table::lookup("proxy")
            .map(|flag| (flag.get)(config))
            .unwrap_or_default();
        return Err(ConfigError::invalid(format!(
            "--proxy={mode} is not supported: braid does not implement the etcd v2 proxy (only 'off' is accepted)"
        )));
    }
    config.auto_compaction()?;
    config.auth_token_spec()?;
    if config.enable_v2 && config.v2_deprecation.level() >= 1 {
        return Err(ConfigError::invalid(format!(
            "--enable-v2 and --v2-deprecation={} are mutually exclusive",
            config.v2_deprecation.as_str()
        )));
    }
    if config.quota_backend_bytes > 0 && config.quota_backend_bytes as u64 > MAX_QUOTA_BACKEND_BYTES {
        warnings.push(Warning::new(format!(
            "quota exceeds the maximum value: quota-backend-bytes {} is above the suggested maximum {MAX_QUOTA_BACKEND_BYTES}",
            config.quota_backend_bytes
        )));
    }
    if config.max_request_bytes > RECOMMENDED_MAX_REQUEST_BYTES {
        warnings.push(Warning::new(format!(
            "exceeded recommended request limit: max-request-bytes {} is above the recommended {RECOMMENDED_MAX_REQUEST_BYTES}",
            config.max_request_bytes
        )));
    }
    if !(4..=31).contains(&config.bcrypt_cost) {
        warnings.push(Warning::new(format!(
            "use default bcrypt cost instead of the invalid given cost: bcrypt-cost {} is outside 4..31, using 10",
            config.bcrypt_cost
        )));
    }
    if config.experimental_enable_lease_checkpoint && !config.experimental_enable_lease_checkpoint_persist {
        warnings.push(Warning::new(
            "Detected that checkpointing is enabled without persistence. Consider enabling experimental-enable-lease-checkpoint-persist",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The defaults, through a function so tests can mutate them field by field.
    fn defaults() -> ServerConfig {
        ServerConfig::default()
    }

    fn expect_error(config: &ServerConfig, message: &str) {
        assert_eq!(validate_embed(config), Err(ConfigError::invalid(message)));
    }

    #[test]
    fn defaults_pass() {
        assert_eq!(validate_embed(&ServerConfig::default()), Ok(()));
    }

    // Compared with etcd 3.4.23 (`--logger=zap --election-timeout=... --heartbeat-interval=...`).
    #[test]
    fn timing_checks_match_etcd_texts() {
        let mut config = defaults();
        config.election_timeout = Duration::from_millis(100);
        expect_error(
            &config,
            "--election-timeout[100ms] should be at least as 5 times as --heartbeat-interval[100ms]",
        );
        config.election_timeout = Duration::from_millis(60_000);
        expect_error(
            &config,
            "--election-timeout[60000ms] is too long, and should be set less than 50000ms",
        );
        config.heartbeat_interval = Duration::ZERO;
        expect_error(&config, "--heartbeat-interval must be >0 (set to 0ms)");
        config.heartbeat_interval = Duration::from_millis(100);
        config.election_timeout = Duration::ZERO;
        expect_error(&config, "--election-timeout must be >0 (set to 0ms)");
        config.election_timeout = Duration::from_millis(500);
        assert_eq!(validate_embed(&config), Ok(()));
    }

    #[test]
    fn bind_and_host_checks() {
        let mut config = defaults();
        config.listen_client_urls = vec![Url::parse("http://example.com:2379").unwrap()];
        // etcd 3.4.23: "expected IP in URL for binding (http://example.com:2379)".
        expect_error(&config, "expected IP in URL for binding (http://example.com:2379)");
        config.listen_client_urls = vec![
            Url::parse("http://[::1]:2379").unwrap(),
            Url::parse("unix://x:1").unwrap(),
        ];
        assert_eq!(validate_embed(&config), Ok(()));
        config.advertise_client_urls = vec![Url::parse("http://:2379").unwrap()];
        expect_error(
            &config,
            "--advertise-client-urls \"http://:2379\" must be \"host:port\" (unexpected empty host (http://:2379))",
        );
        config.advertise_client_urls.clear();
        // etcd 3.4.23: the same text when --listen-client-urls is given without advertise URLs.
        expect_error(&config, UNSET_ADVERTISE_CLIENT_URLS);
    }

    #[test]
    fn other_checks() {
        let mut config = defaults();
        config.discovery = "https://discovery.example/abc".to_string();
        // etcd 3.4.23 printed exactly this for --discovery plus --initial-cluster.
        expect_error(
            &config,
            "multiple discovery or bootstrap flags are set. Choose one of \"initial-cluster\", \"discovery\" or \"discovery-srv\"",
        );
        let mut config = defaults();
        config.logger = "capnslog".to_string();
        expect_error(&config, "--logger=capnslog is removed in v3.5");
        config.logger = "glog".to_string();
        expect_error(&config, "unknown logger option \"glog\"");
        let mut config = defaults();
        config.log_outputs = vec!["default".to_string(), "stderr".to_string()];
        expect_error(&config, "multi logoutput for \"default\" is not supported yet");
        let mut config = defaults();
        config.enable_log_rotation = true;
        expect_error(
            &config,
            "--log-outputs requires a single file path when --log-rotate-config-json is defined",
        );
        config.log_outputs = vec!["/var/log/braid.log".to_string()];
        assert_eq!(validate_embed(&config), Ok(()));
        let mut config = defaults();
        config.experimental_enable_lease_checkpoint_persist = true;
        expect_error(
            &config,
            "setting experimental-enable-lease-checkpoint-persist requires experimental-enable-lease-checkpoint",
        );
        let mut config = defaults();
        config.experimental_compact_hash_check_time = Duration::ZERO;
        expect_error(&config, "--experimental-compact-hash-check-time must be >0 (set to 0s)");
        let mut config = defaults();
        config.tls_min_version = Some(TlsVersion::Tls13);
        config.tls_max_version = Some(TlsVersion::Tls12);
        expect_error(&config, "min version (TLS1.3) is greater than max version (TLS1.2)");
        config.tls_max_version = None;
        config.cipher_suites = vec!["TLS_AES_128_GCM_SHA256".to_string()];
        expect_error(
            &config,
            "cipher suites cannot be configured when only TLS1.3 is enabled",
        );
        let mut config = defaults();
        config.distributed_tracing.enabled = true;
        config.distributed_tracing.sampling_rate_per_million = -1;
        expect_error(
            &config,
            "distributed tracing configurition is not valid: (tracing sampling rate must be positive)",
        );
        config.distributed_tracing.sampling_rate_per_million = 1_000_001;
        expect_error(
            &config,
            "distributed tracing configurition is not valid: (tracing sampling rate must be less than 1000000)",
        );
    }
}
