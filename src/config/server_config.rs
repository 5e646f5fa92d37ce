//! `ServerConfig`: one typed field per etcd 3.5 server flag (COMPAT.md §5), with etcd's defaults.
//!
//! Fields hold what the user configured. Where etcd treats 0 as "use the built-in default"
//! (snapshot count, backend batching, compaction pacing, quota) the field keeps the 0 and an
//! `*_effective()` method returns the value the server must use.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::url::Url;

/// The member name etcd uses when `--name` is not given.
pub const DEFAULT_NAME: &str = "default";
/// `--initial-cluster` when neither it nor `--name` is given.
pub const DEFAULT_INITIAL_CLUSTER: &str = "default=http://localhost:2380";
/// etcd's `DefaultQuotaBytes` (2 GiB), used when `--quota-backend-bytes` is 0.
pub const DEFAULT_QUOTA_BACKEND_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// etcd's `MaxQuotaBytes` (8 GiB): larger quotas only draw a warning.
pub const MAX_QUOTA_BACKEND_BYTES: u64 = 8 * 1024 * 1024 * 1024;
/// etcd's `maxElectionMs`.
pub const MAX_ELECTION_TIMEOUT_MS: u64 = 50_000;
/// etcd's `recommendedMaxRequestBytes` (10 MiB): larger limits only draw a warning.
pub const RECOMMENDED_MAX_REQUEST_BYTES: u64 = 10 * 1024 * 1024;
/// Peer connection timeouts below this are raised to it (etcd's rafthttp defaults).
pub const MIN_RAFT_CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);

/// `--initial-cluster-state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterState {
    New,
    Existing,
}

/// `--discovery-fallback`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscoveryFallback {
    Exit,
    Proxy,
}

/// `--proxy` (etcd's v2 proxy). braid accepts only `Off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    Off,
    Readonly,
    On,
}

/// `--auto-compaction-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoCompactionMode {
    /// Retention is a time window.
    Periodic,
    /// Retention is a number of revisions.
    Revision,
}

/// The compaction policy derived from `--auto-compaction-mode` and `--auto-compaction-retention`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoCompaction {
    Disabled,
    /// Keep this much history (etcd compacts every window/10, at most hourly).
    Periodic(Duration),
    /// Keep this many revisions (checked every 5 minutes).
    Revision(u64),
}

/// `--log-level` (zap's levels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
    DPanic,
    Panic,
    Fatal,
}

/// `--tls-min-version` / `--tls-max-version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

impl TlsVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            TlsVersion::Tls12 => "TLS1.2",
            TlsVersion::Tls13 => "TLS1.3",
        }
    }
}

/// `--v2-deprecation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V2Deprecation {
    NotYet,
    WriteOnly,
    WriteOnlySkipCheck,
    WriteOnlyDropData,
    Gone,
}

impl V2Deprecation {
    pub fn as_str(self) -> &'static str {
        match self {
            V2Deprecation::NotYet => "not-yet",
            V2Deprecation::WriteOnly => "write-only",
            V2Deprecation::WriteOnlySkipCheck => "write-only-skip-check",
            V2Deprecation::WriteOnlyDropData => "write-only-drop-data",
            V2Deprecation::Gone => "gone",
        }
    }

    /// etcd's deprecation level (0..=3); `--enable-v2` needs level 0.
    pub fn level(self) -> u8 {
        match self {
            V2Deprecation::NotYet => 0,
            V2Deprecation::WriteOnly | V2Deprecation::WriteOnlySkipCheck => 1,
            V2Deprecation::WriteOnlyDropData => 2,
            V2Deprecation::Gone => 3,
        }
    }
}

/// The token provider named by `--auth-token`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthTokenKind {
    Simple,
    Jwt,
    /// `--auth-token=''`: etcd's "nop" provider that cannot issue tokens.
    Disabled,
}

/// `--auth-token` decomposed: `jwt,pub-key=…,priv-key=…,sign-method=RS256,ttl=5m`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthTokenSpec {
    pub kind: AuthTokenKind,
    /// `key=value` options after the kind (unvalidated beyond etcd's syntax check).
    pub options: BTreeMap<String, String>,
}

/// TLS settings of one side (client-facing or peer).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Certificate presented when this server dials out as a client.
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    pub trusted_ca_file: Option<PathBuf>,
    pub crl_file: Option<PathBuf>,
    pub client_cert_auth: bool,
    /// Generate a self-signed certificate when no cert/key is given.
    pub auto_tls: bool,
    /// Accepted client-certificate CNs (peer side: `--peer-cert-allowed-cn`).
    pub allowed_cns: Vec<String>,
    /// Accepted client-certificate SAN hostnames.
    pub allowed_hostnames: Vec<String>,
}

impl TlsSettings {
    /// etcd's `TLSInfo.Empty()`: no certificate and no key configured.
    pub fn is_empty(&self) -> bool {
        self.cert_file.is_none() && self.key_file.is_none()
    }
}

/// etcd's deprecated v2 proxy (`--proxy*`); only `mode == Off` is accepted by braid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V2ProxySettings {
    pub mode: ProxyMode,
    pub failure_wait: Duration,
    pub refresh_interval: Duration,
    pub dial_timeout: Duration,
    pub write_timeout: Duration,
    pub read_timeout: Duration,
}

/// `--experimental-*distributed-tracing*` (OpenTelemetry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracingSettings {
    pub enabled: bool,
    pub address: String,
    pub service_name: String,
    pub instance_id: String,
    pub sampling_rate_per_million: i64,
}

/// Every etcd 3.5 server setting. Field docs give the flag; defaults are etcd's (see
/// `Default`), except `data_dir`, whose default is `${name}.braid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    // ---- member ----
    /// `--name`
    pub name: String,
    /// `--data-dir`; already resolved to `${name}.braid` when not given.
    pub data_dir: PathBuf,
    /// `--wal-dir`
    pub wal_dir: Option<PathBuf>,
    /// `--snapshot-count` (0 = default, see `snapshot_count_effective`)
    pub snapshot_count: u64,
    /// `--heartbeat-interval` (integer milliseconds on the command line and in YAML)
    pub heartbeat_interval: Duration,
    /// `--election-timeout` (integer milliseconds)
    pub election_timeout: Duration,
    /// `--initial-election-tick-advance`
    pub initial_election_tick_advance: bool,
    /// `--listen-peer-urls` (sorted, deduplicated, like etcd)
    pub listen_peer_urls: Vec<Url>,
    /// `--listen-client-urls`
    pub listen_client_urls: Vec<Url>,
    /// `--listen-client-http-urls`
    pub listen_client_http_urls: Vec<Url>,
    /// `--listen-metrics-urls`
    pub listen_metrics_urls: Vec<Url>,
    /// `--max-snapshots` (0 = keep all)
    pub max_snapshots: u64,
    /// `--max-wals` (0 = keep all)
    pub max_wals: u64,
    /// `--quota-backend-bytes` (0 = 2 GiB, negative = no quota; see `quota_backend_bytes_effective`)
    pub quota_backend_bytes: i64,
    /// `--backend-bbolt-freelist-type` (recorded; braid has no bbolt)
    pub backend_bbolt_freelist_type: String,
    /// `--backend-batch-interval` (0 = default 100ms)
    pub backend_batch_interval: Duration,
    /// `--backend-batch-limit` (0 = default 10000)
    pub backend_batch_limit: i64,
    /// `--max-txn-ops`
    pub max_txn_ops: u64,
    /// `--max-request-bytes`
    pub max_request_bytes: u64,
    /// `--max-concurrent-streams`
    pub max_concurrent_streams: u32,
    /// `--enable-grpc-gateway`
    pub enable_grpc_gateway: bool,
    /// `--grpc-keepalive-min-time`
    pub grpc_keepalive_min_time: Duration,
    /// `--grpc-keepalive-interval` (0 = off)
    pub grpc_keepalive_interval: Duration,
    /// `--grpc-keepalive-timeout` (0 = off)
    pub grpc_keepalive_timeout: Duration,
    /// `--socket-reuse-port`
    pub socket_reuse_port: bool,
    /// `--socket-reuse-address`
    pub socket_reuse_address: bool,
    /// `--raft-read-timeout` (never below 5s)
    pub raft_read_timeout: Duration,
    /// `--raft-write-timeout` (never below 5s)
    pub raft_write_timeout: Duration,

    // ---- clustering ----
    /// `--initial-advertise-peer-urls`
    pub initial_advertise_peer_urls: Vec<Url>,
    /// `--initial-cluster`, kept as text because etcd parses it only on first boot (see
    /// `initial_cluster()`). Empty when discovery is used.
    pub initial_cluster: String,
    /// `--initial-cluster-state`
    pub initial_cluster_state: ClusterState,
    /// `--initial-cluster-token`
    pub initial_cluster_token: String,
    /// `--advertise-client-urls`; empty when `--listen-client-urls` was given without it.
    pub advertise_client_urls: Vec<Url>,
    /// `--discovery`
    pub discovery: String,
    /// `--discovery-fallback`
    pub discovery_fallback: DiscoveryFallback,
    /// `--discovery-proxy`
    pub discovery_proxy: String,
    /// `--discovery-srv`
    pub discovery_srv: String,
    /// `--discovery-srv-name`
    pub discovery_srv_name: String,
    /// `--strict-reconfig-check`
    pub strict_reconfig_check: bool,
    /// `--pre-vote`
    pub pre_vote: bool,
    /// `--auto-compaction-retention`, as text: its meaning depends on the mode (see `auto_compaction`).
    pub auto_compaction_retention: String,
    /// `--auto-compaction-mode`
    pub auto_compaction_mode: AutoCompactionMode,
    /// `--enable-v2`
    pub enable_v2: bool,
    /// `--v2-deprecation`
    pub v2_deprecation: V2Deprecation,
    /// `--experimental-enable-v2v3`
    pub experimental_enable_v2v3: String,

    // ---- security ----
    /// `--cert-file`, `--key-file`, `--client-cert-file`, `--client-key-file`, `--trusted-ca-file`,
    /// `--client-crl-file`, `--client-cert-auth`, `--auto-tls`, `--client-cert-allowed-hostname`
    /// (YAML `client-transport-security`)
    pub client_tls: TlsSettings,
    /// The `--peer-*` TLS flags (YAML `peer-transport-security`)
    pub peer_tls: TlsSettings,
    /// `--self-signed-cert-validity` (years)
    pub self_signed_cert_validity_years: u64,
    /// `--cipher-suites`
    pub cipher_suites: Vec<String>,
    /// `--tls-min-version` (`None` = `''`, the TLS library decides)
    pub tls_min_version: Option<TlsVersion>,
    /// `--tls-max-version`
    pub tls_max_version: Option<TlsVersion>,
    /// `--experimental-peer-skip-client-san-verification`
    pub experimental_peer_skip_client_san_verification: bool,
    /// `--cors` (`*` or origin URLs, sorted)
    pub cors: Vec<String>,
    /// `--host-whitelist` (sorted, deduplicated)
    pub host_whitelist: Vec<String>,

    // ---- auth ----
    /// `--auth-token` as given (see `auth_token_spec`)
    pub auth_token: String,
    /// `--bcrypt-cost` (etcd falls back to 10 outside 4..=31, with a warning)
    pub bcrypt_cost: u64,
    /// `--auth-token-ttl` (integer seconds)
    pub auth_token_ttl: Duration,

    // ---- profiling, monitoring, logging ----
    /// `--enable-pprof`
    pub enable_pprof: bool,
    /// `--metrics` (`basic` or `extensive`; etcd treats anything else as basic)
    pub metrics: String,
    /// `--logger` (only `zap`)
    pub logger: String,
    /// `--log-outputs` (sorted, deduplicated: `default`, `stderr`, `stdout`, `journal` or paths)
    pub log_outputs: Vec<String>,
    /// `--log-level`
    pub log_level: LogLevel,
    /// `--enable-log-rotation`
    pub enable_log_rotation: bool,
    /// `--log-rotation-config-json`
    pub log_rotation_config_json: String,
    /// `--experimental-enable-distributed-tracing` and its `-address`, `-service-name`,
    /// `-instance-id`, `-sampling-rate` companions
    pub distributed_tracing: TracingSettings,

    // ---- v2 proxy ----
    /// `--proxy`, `--proxy-failure-wait`, `--proxy-refresh-interval`, `--proxy-dial-timeout`,
    /// `--proxy-write-timeout`, `--proxy-read-timeout` (integer milliseconds)
    pub v2_proxy: V2ProxySettings,

    // ---- experimental ----
    /// `--experimental-initial-corrupt-check`
    pub experimental_initial_corrupt_check: bool,
    /// `--experimental-corrupt-check-time` (0 = off)
    pub experimental_corrupt_check_time: Duration,
    /// `--experimental-compact-hash-check-enabled`
    pub experimental_compact_hash_check_enabled: bool,
    /// `--experimental-compact-hash-check-time`
    pub experimental_compact_hash_check_time: Duration,
    /// `--experimental-enable-lease-checkpoint`
    pub experimental_enable_lease_checkpoint: bool,
    /// `--experimental-enable-lease-checkpoint-persist`
    pub experimental_enable_lease_checkpoint_persist: bool,
    /// `--experimental-compaction-batch-limit` (0 = default 1000)
    pub experimental_compaction_batch_limit: i64,
    /// `--experimental-compaction-sleep-interval` (0 = default 10ms)
    pub experimental_compaction_sleep_interval: Duration,
    /// `--experimental-watch-progress-notify-interval` (0 = default 10m)
    pub experimental_watch_progress_notify_interval: Duration,
    /// `--experimental-downgrade-check-time`
    pub experimental_downgrade_check_time: Duration,
    /// `--experimental-warning-apply-duration`
    pub experimental_warning_apply_duration: Duration,
    /// `--experimental-memory-mlock`
    pub experimental_memory_mlock: bool,
    /// `--experimental-txn-mode-write-with-shared-buffer`
    pub experimental_txn_mode_write_with_shared_buffer: bool,
    /// `--experimental-stop-grpc-service-on-defrag`
    pub experimental_stop_grpc_service_on_defrag: bool,
    /// `--experimental-bootstrap-defrag-threshold-megabytes` (0 = off)
    pub experimental_bootstrap_defrag_threshold_megabytes: u64,
    /// `--experimental-snapshot-catchup-entries` (YAML `experimental-snapshot-catch-up-entries`;
    /// 0 = default 5000)
    pub experimental_snapshot_catchup_entries: u64,

    // ---- unsafe ----
    /// `--force-new-cluster`
    pub force_new_cluster: bool,
    /// `--unsafe-no-fsync`
    pub unsafe_no_fsync: bool,
}

fn localhost(port: u16) -> Vec<Url> {
    vec![Url {
        scheme: super::url::UrlScheme::Http,
        host: "localhost".to_string(),
        port: Some(port),
    }]
}

impl Default for ServerConfig {
    /// The configuration `etcd` (as braid) runs with when given no flags at all.
    fn default() -> Self {
        ServerConfig {
            name: DEFAULT_NAME.to_string(),
            data_dir: PathBuf::from(format!("{DEFAULT_NAME}.braid")),
            wal_dir: None,
            snapshot_count: 100_000,
            heartbeat_interval: Duration::from_millis(100),
            election_timeout: Duration::from_millis(1000),
            initial_election_tick_advance: true,
            listen_peer_urls: localhost(2380),
            listen_client_urls: localhost(2379),
            listen_client_http_urls: Vec::new(),
            listen_metrics_urls: Vec::new(),
            max_snapshots: 5,
            max_wals: 5,
            quota_backend_bytes: 0,
            backend_bbolt_freelist_type: "map".to_string(),
            backend_batch_interval: Duration::ZERO,
            backend_batch_limit: 0,
            max_txn_ops: 128,
            max_request_bytes: 1_572_864,
            max_concurrent_streams: u32::MAX,
            enable_grpc_gateway: true,
            grpc_keepalive_min_time: Duration::from_secs(5),
            grpc_keepalive_interval: Duration::from_secs(2 * 3600),
            grpc_keepalive_timeout: Duration::from_secs(20),
            socket_reuse_port: false,
            socket_reuse_address: false,
            raft_read_timeout: MIN_RAFT_CONNECTION_TIMEOUT,
            raft_write_timeout: MIN_RAFT_CONNECTION_TIMEOUT,
            initial_advertise_peer_urls: localhost(2380),
            initial_cluster: DEFAULT_INITIAL_CLUSTER.to_string(),
            initial_cluster_state: ClusterState::New,
            initial_cluster_token: "etcd-cluster".to_string(),
            advertise_client_urls: localhost(2379),
            discovery: String::new(),
            discovery_fallback: DiscoveryFallback::Proxy,
            discovery_proxy: String::new(),
            discovery_srv: String::new(),
            discovery_srv_name: String::new(),
            strict_reconfig_check: true,
            pre_vote: true,
            auto_compaction_retention: "0".to_string(),
            auto_compaction_mode: AutoCompactionMode::Periodic,
            enable_v2: false,
            v2_deprecation: V2Deprecation::NotYet,
            experimental_enable_v2v3: String::new(),
            client_tls: TlsSettings::default(),
            peer_tls: TlsSettings::default(),
            self_signed_cert_validity_years: 1,
            cipher_suites: Vec::new(),
            tls_min_version: Some(TlsVersion::Tls12),
            tls_max_version: None,
            experimental_peer_skip_client_san_verification: false,
            cors: vec!["*".to_string()],
            host_whitelist: vec!["*".to_string()],
            auth_token: "simple".to_string(),
            bcrypt_cost: 10,
            auth_token_ttl: Duration::from_secs(300),
            enable_pprof: false,
            metrics: "basic".to_string(),
            logger: "zap".to_string(),
            log_outputs: vec!["default".to_string()],
            log_level: LogLevel::Info,
            enable_log_rotation: false,
            log_rotation_config_json:
                r#"{"maxsize": 100, "maxage": 0, "maxbackups": 0, "localtime": false, "compress": false}"#.to_string(),
            distributed_tracing: TracingSettings {
                enabled: false,
                address: "localhost:4317".to_string(),
                service_name: "etcd".to_string(),
                instance_id: String::new(),
                sampling_rate_per_million: 0,
            },
            v2_proxy: V2ProxySettings {
                mode: ProxyMode::Off,
                failure_wait: Duration::from_millis(5000),
                refresh_interval: Duration::from_millis(30_000),
                dial_timeout: Duration::from_millis(1000),
                write_timeout: Duration::from_millis(5000),
                read_timeout: Duration::ZERO,
            },
            experimental_initial_corrupt_check: false,
            experimental_corrupt_check_time: Duration::ZERO,
            experimental_compact_hash_check_enabled: false,
            experimental_compact_hash_check_time: Duration::from_secs(60),
            experimental_enable_lease_checkpoint: false,
            experimental_enable_lease_checkpoint_persist: false,
            experimental_compaction_batch_limit: 1000,
            experimental_compaction_sleep_interval: Duration::from_millis(10),
            experimental_watch_progress_notify_interval: Duration::from_secs(600),
            experimental_downgrade_check_time: Duration::from_secs(5),
            experimental_warning_apply_duration: Duration::from_millis(100),
            experimental_memory_mlock: false,
            experimental_txn_mode_write_with_shared_buffer: true,
            experimental_stop_grpc_service_on_defrag: false,
            experimental_bootstrap_defrag_threshold_megabytes: 0,
            experimental_snapshot_catchup_entries: 5000,
            force_new_cluster: false,
            unsafe_no_fsync: false,
        }
    }
}

impl ServerConfig {
    /// Election timeout in heartbeat ticks (etcd's `ElectionTicks`); validation guarantees ≥ 5.
    pub fn election_ticks(&self) -> u64 {
        let heartbeat_ms = self.heartbeat_interval.as_millis().max(1);
        (self.election_timeout.as_millis() / heartbeat_ms) as u64
    }

    /// The backend quota in bytes, `None` when disabled by a negative value.
    pub fn quota_backend_bytes_effective(&self) -> Option<u64> {
        match self.quota_backend_bytes {
            quota if quota < 0 => None,
            0 => Some(DEFAULT_QUOTA_BACKEND_BYTES),
            quota => Some(quota as u64),
        }
    }

    pub fn snapshot_count_effective(&self) -> u64 {
        if self.snapshot_count == 0 {
            100_000
        } else {
            self.snapshot_count
        }
    }

    pub fn backend_batch_interval_effective(&self) -> Duration {
        if self.backend_batch_interval.is_zero() {
            Duration::from_millis(100)
        } else {
            self.backend_batch_interval
        }
    }

    pub fn backend_batch_limit_effective(&self) -> u64 {
        if self.backend_batch_limit <= 0 {
            10_000
        } else {
            self.backend_batch_limit as u64
        }
    }

    pub fn compaction_batch_limit_effective(&self) -> u64 {
        if self.experimental_compaction_batch_limit <= 0 {
            1000
        } else {
            self.experimental_compaction_batch_limit as u64
        }
    }

    pub fn compaction_sleep_interval_effective(&self) -> Duration {
        if self.experimental_compaction_sleep_interval.is_zero() {
            Duration::from_millis(10)
        } else {
            self.experimental_compaction_sleep_interval
        }
    }

    pub fn watch_progress_notify_interval_effective(&self) -> Duration {
        if self.experimental_watch_progress_notify_interval.is_zero() {
            Duration::from_secs(600)
        } else {
            self.experimental_watch_progress_notify_interval
        }
    }

    pub fn snapshot_catchup_entries_effective(&self) -> u64 {
        if self.experimental_snapshot_catchup_entries == 0 {
            5000
        } else {
            self.experimental_snapshot_catchup_entries
        }
    }

    /// bcrypt cost to use: etcd replaces values outside 4..=31 by 10.
    pub fn bcrypt_cost_effective(&self) -> u32 {
        if (4..=31).contains(&self.bcrypt_cost) {
            self.bcrypt_cost as u32
        } else {
            10
        }
    }

    /// Whether `/metrics` exports the extensive (histogram) gRPC metrics.
    pub fn metrics_extensive(&self) -> bool {
        self.metrics == "extensive"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> ServerConfig {
        ServerConfig::default()
    }

    #[test]
    fn effective_values_replace_zero_with_etcd_defaults() {
        let mut config = defaults();
        assert_eq!(config.quota_backend_bytes_effective(), Some(2 * 1024 * 1024 * 1024));
        config.quota_backend_bytes = -1;
        assert_eq!(config.quota_backend_bytes_effective(), None);
        config.quota_backend_bytes = 4096;
        assert_eq!(config.quota_backend_bytes_effective(), Some(4096));
        config.snapshot_count = 0;
        assert_eq!(config.snapshot_count_effective(), 100_000);
        assert_eq!(config.backend_batch_interval_effective(), Duration::from_millis(100));
        assert_eq!(config.backend_batch_limit_effective(), 10_000);
        config.experimental_compaction_batch_limit = 0;
        assert_eq!(config.compaction_batch_limit_effective(), 1000);
        config.experimental_compaction_sleep_interval = Duration::ZERO;
        assert_eq!(config.compaction_sleep_interval_effective(), Duration::from_millis(10));
        config.experimental_watch_progress_notify_interval = Duration::ZERO;
        assert_eq!(
            config.watch_progress_notify_interval_effective(),
            Duration::from_secs(600)
        );
        config.experimental_snapshot_catchup_entries = 0;
        assert_eq!(config.snapshot_catchup_entries_effective(), 5000);
        config.bcrypt_cost = 3;
        assert_eq!(config.bcrypt_cost_effective(), 10);
        config.bcrypt_cost = 12;
        assert_eq!(config.bcrypt_cost_effective(), 12);
        assert_eq!(config.election_ticks(), 10);
    }
}
