//! The table of etcd 3.5 server flags (`server/etcdmain/config.go` at v3.5.33): name, value
//! kind, the `ServerConfig` field it sets, and a one-line description for `--help`.
//!
//! `--config-file` and `--version` are handled by the command-line parser itself; the legacy
//! names etcd still accepts and ignores are in [`IGNORED_FLAGS`].

use super::flag_kinds::{
    Bool, ClusterStateFlag, CompactionModeFlag, Cors, DataDir, FallbackFlag, FlagValue, GoDuration, HostList, Int,
    Int64, LogLevelFlag, Milliseconds, OptionalPath, ProxyFlag, Seconds, SetError, Str, Strings, TlsVersionFlag, Uint,
    Uint32, Uint64, UniqueStrings, Urls, V2DeprecationFlag, YamlShape,
};
use super::server_config::ServerConfig;

/// The `--help` section a flag is listed under (etcd's headings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Section {
    Member,
    Clustering,
    Security,
    Auth,
    Monitoring,
    Logging,
    Tracing,
    V2Proxy,
    Experimental,
    Unsafe,
}

impl Section {
    pub(crate) const ALL: [Section; 10] = [
        Section::Member,
        Section::Clustering,
        Section::Security,
        Section::Auth,
        Section::Monitoring,
        Section::Logging,
        Section::Tracing,
        Section::V2Proxy,
        Section::Experimental,
        Section::Unsafe,
    ];

    pub(crate) fn title(self) -> &'static str {
        match self {
            Section::Member => "Member",
            Section::Clustering => "Clustering",
            Section::Security => "Security",
            Section::Auth => "Auth",
            Section::Monitoring => "Profiling and Monitoring",
            Section::Logging => "Logging",
            Section::Tracing => "Experimental distributed tracing",
            Section::V2Proxy => "v2 Proxy (accepted for compatibility; braid only supports 'off')",
            Section::Experimental => "Experimental feature",
            Section::Unsafe => "Unsafe feature",
        }
    }
}

/// One server flag.
pub(crate) struct FlagSpec {
    pub name: &'static str,
    pub section: Section,
    pub help: &'static str,
    /// Bool flags need no argument (`--flag` = `--flag=true`) and never take the next argument.
    pub is_bool: bool,
    pub go_type: &'static str,
    pub yaml_shape: YamlShape,
    pub set: fn(&mut ServerConfig, &str) -> Result<(), SetError>,
    pub get: fn(&ServerConfig) -> String,
}

/// `ETCD_` + upper snake case (etcd's `flags.FlagToEnv`).
pub(crate) fn env_name_of(flag_name: &str) -> String {
    format!("ETCD_{}", flag_name.replace('-', "_").to_ascii_uppercase())
}

macro_rules! flag {
    ($section:ident, $name:literal, $kind:ty, $help:literal, $($field:ident).+) => {
        FlagSpec {
            name: $name,
            section: Section::$section,
            help: $help,
            is_bool: <$kind as FlagValue>::IS_BOOL,
            go_type: <$kind as FlagValue>::GO_TYPE,
            yaml_shape: <$kind as FlagValue>::YAML_SHAPE,
            set: |config, text| {
                config.$($field).+ = <$kind as FlagValue>::parse(text)?;
                Ok(())
            },
            get: |config| <$kind as FlagValue>::render(&config.$($field).+),
        }
    };
}

/// Legacy flag names etcd 3.5 still accepts as no-argument flags and ignores.
pub(crate) const IGNORED_FLAGS: &[&str] = &[
    "cluster-active-size",
    "cluster-remove-delay",
    "cluster-sync-interval",
    "config",
    "force",
    "max-result-buffer",
    "max-retry-attempts",
    "peer-heartbeat-interval",
    "peer-election-timeout",
    "retry-interval",
    "snapshot",
    "v",
    "vv",
];

/// Flags etcd 3.5 marks deprecated (it warns when they are set).
pub(crate) const DEPRECATED_FLAGS: &[&str] = &[
    "enable-v2",
    "experimental-enable-v2v3",
    "proxy",
    "proxy-failure-wait",
    "proxy-refresh-interval",
    "proxy-dial-timeout",
    "proxy-write-timeout",
    "proxy-read-timeout",
];

pub(crate) fn lookup(name: &str) -> Option<&'static FlagSpec> {
    FLAGS.iter().find(|flag| flag.name == name)
}

#[rustfmt::skip]
pub(crate) static FLAGS: &[FlagSpec] = &[
    // ---- member ----
    flag!(Member, "name", Str, "Human-readable name of this member.", name),
    flag!(Member, "data-dir", DataDir, "Data directory (default: the member name + '.braid').", data_dir),
    flag!(Member, "wal-dir", OptionalPath, "Separate directory for the write-ahead log.", wal_dir),
    flag!(Member, "snapshot-count", Uint64, "Committed entries between local Raft snapshots.", snapshot_count),
    flag!(Member, "heartbeat-interval", Milliseconds, "Leader heartbeat period, in milliseconds.", heartbeat_interval),
    flag!(Member, "election-timeout", Milliseconds, "Follower election timeout, in milliseconds.", election_timeout),
    flag!(Member, "initial-election-tick-advance", Bool, "Fast-forward election ticks at boot.", initial_election_tick_advance),
    flag!(Member, "listen-peer-urls", Urls, "URLs to listen on for peer traffic.", listen_peer_urls),
    flag!(Member, "listen-client-urls", Urls, "URLs to listen on for client gRPC (and HTTP unless --listen-client-http-urls is set).", listen_client_urls),
    flag!(Member, "listen-client-http-urls", Urls, "URLs to listen on for HTTP-only client traffic.", listen_client_http_urls),
    flag!(Member, "max-snapshots", Uint, "Snapshot files to keep (0 keeps all).", max_snapshots),
    flag!(Member, "max-wals", Uint, "Log files to keep (0 keeps all).", max_wals),
    flag!(Member, "quota-backend-bytes", Int64, "Backend size that raises the NOSPACE alarm (0 = 2 GiB).", quota_backend_bytes),
    flag!(Member, "backend-bbolt-freelist-type", Str, "Accepted for compatibility; braid has no bbolt backend.", backend_bbolt_freelist_type),
    flag!(Member, "backend-batch-interval", GoDuration, "Longest time before a backend commit.", backend_batch_interval),
    flag!(Member, "backend-batch-limit", Int, "Most operations before a backend commit.", backend_batch_limit),
    flag!(Member, "max-txn-ops", Uint, "Most operations in one transaction.", max_txn_ops),
    flag!(Member, "max-request-bytes", Uint, "Largest client request accepted, in bytes.", max_request_bytes),
    flag!(Member, "max-concurrent-streams", Uint32, "HTTP/2 streams per client connection.", max_concurrent_streams),
    flag!(Member, "enable-grpc-gateway", Bool, "Serve the /v3 JSON gateway.", enable_grpc_gateway),
    flag!(Member, "grpc-keepalive-min-time", GoDuration, "Shortest client ping interval tolerated.", grpc_keepalive_min_time),
    flag!(Member, "grpc-keepalive-interval", GoDuration, "Server-to-client ping period (0 disables).", grpc_keepalive_interval),
    flag!(Member, "grpc-keepalive-timeout", GoDuration, "Wait for a ping answer before closing (0 disables).", grpc_keepalive_timeout),
    flag!(Member, "socket-reuse-port", Bool, "Set SO_REUSEPORT on listeners.", socket_reuse_port),
    flag!(Member, "socket-reuse-address", Bool, "Set SO_REUSEADDR on listeners.", socket_reuse_address),
    flag!(Member, "raft-read-timeout", GoDuration, "Read timeout of peer connections (at least 5s).", raft_read_timeout),
    flag!(Member, "raft-write-timeout", GoDuration, "Write timeout of peer connections (at least 5s).", raft_write_timeout),
    // ---- clustering ----
    flag!(Clustering, "initial-advertise-peer-urls", Urls, "Peer URLs of this member announced to the cluster.", initial_advertise_peer_urls),
    flag!(Clustering, "initial-cluster", Str, "Bootstrap member list: name=peerURL,...", initial_cluster),
    flag!(Clustering, "initial-cluster-state", ClusterStateFlag, "'new' or 'existing'; ignored once the member has data.", initial_cluster_state),
    flag!(Clustering, "initial-cluster-token", Str, "Bootstrap token that keeps clusters apart.", initial_cluster_token),
    flag!(Clustering, "advertise-client-urls", Urls, "Client URLs of this member published to clients.", advertise_client_urls),
    flag!(Clustering, "discovery", Str, "Discovery service URL (not supported by braid).", discovery),
    flag!(Clustering, "discovery-fallback", FallbackFlag, "'exit' or 'proxy' when discovery fails.", discovery_fallback),
    flag!(Clustering, "discovery-proxy", Str, "HTTP proxy for the discovery service.", discovery_proxy),
    flag!(Clustering, "discovery-srv", Str, "DNS domain for SRV bootstrap (not supported by braid).", discovery_srv),
    flag!(Clustering, "discovery-srv-name", Str, "Suffix of the DNS SRV name.", discovery_srv_name),
    flag!(Clustering, "strict-reconfig-check", Bool, "Refuse membership changes that could lose quorum.", strict_reconfig_check),
    flag!(Clustering, "pre-vote", Bool, "Run Raft's pre-vote phase.", pre_vote),
    flag!(Clustering, "auto-compaction-retention", Str, "History to keep: hours or a duration (periodic), revisions (revision); 0 disables.", auto_compaction_retention),
    flag!(Clustering, "auto-compaction-mode", CompactionModeFlag, "'periodic' or 'revision'.", auto_compaction_mode),
    flag!(Clustering, "enable-v2", Bool, "Accepted for compatibility; the v2 API is not served.", enable_v2),
    flag!(Clustering, "v2-deprecation", V2DeprecationFlag, "v2store deprecation stage (not-yet, write-only, write-only-skip-check, write-only-drop-data, gone).", v2_deprecation),
    // ---- security ----
    flag!(Security, "cert-file", OptionalPath, "Client-facing TLS certificate.", client_tls.cert_file),
    flag!(Security, "key-file", OptionalPath, "Client-facing TLS key.", client_tls.key_file),
    flag!(Security, "client-cert-auth", Bool, "Require and verify client certificates.", client_tls.client_cert_auth),
    flag!(Security, "client-cert-file", OptionalPath, "Certificate used when this server connects as a client.", client_tls.client_cert_file),
    flag!(Security, "client-key-file", OptionalPath, "Key used when this server connects as a client.", client_tls.client_key_file),
    flag!(Security, "client-crl-file", OptionalPath, "Client certificate revocation list.", client_tls.crl_file),
    flag!(Security, "client-cert-allowed-hostname", Strings, "Comma-separated SAN hostnames accepted from clients.", client_tls.allowed_hostnames),
    flag!(Security, "trusted-ca-file", OptionalPath, "CA bundle for client certificates.", client_tls.trusted_ca_file),
    flag!(Security, "auto-tls", Bool, "Client TLS with a generated self-signed certificate.", client_tls.auto_tls),
    flag!(Security, "peer-cert-file", OptionalPath, "Peer TLS certificate.", peer_tls.cert_file),
    flag!(Security, "peer-key-file", OptionalPath, "Peer TLS key.", peer_tls.key_file),
    flag!(Security, "peer-client-cert-auth", Bool, "Require and verify peer certificates.", peer_tls.client_cert_auth),
    flag!(Security, "peer-trusted-ca-file", OptionalPath, "CA bundle for peer certificates.", peer_tls.trusted_ca_file),
    flag!(Security, "peer-cert-allowed-cn", Strings, "Comma-separated CNs accepted from peers.", peer_tls.allowed_cns),
    flag!(Security, "peer-cert-allowed-hostname", Strings, "Comma-separated SAN hostnames accepted from peers.", peer_tls.allowed_hostnames),
    flag!(Security, "peer-auto-tls", Bool, "Peer TLS with a generated self-signed certificate.", peer_tls.auto_tls),
    flag!(Security, "peer-client-cert-file", OptionalPath, "Certificate used when dialing peers.", peer_tls.client_cert_file),
    flag!(Security, "peer-client-key-file", OptionalPath, "Key used when dialing peers.", peer_tls.client_key_file),
    flag!(Security, "peer-crl-file", OptionalPath, "Peer certificate revocation list.", peer_tls.crl_file),
    flag!(Security, "self-signed-cert-validity", Uint, "Validity of generated certificates, in years.", self_signed_cert_validity_years),
    flag!(Security, "cipher-suites", Strings, "Comma-separated TLS cipher suites (empty: library default).", cipher_suites),
    flag!(Security, "cors", Cors, "Comma-separated CORS origins ('*' allows all).", cors),
    flag!(Security, "host-whitelist", HostList, "Comma-separated Host header values accepted on plain HTTP ('*' allows all).", host_whitelist),
    flag!(Security, "tls-min-version", TlsVersionFlag, "Lowest TLS version: TLS1.2 or TLS1.3.", tls_min_version),
    flag!(Security, "tls-max-version", TlsVersionFlag, "Highest TLS version: TLS1.2, TLS1.3 or empty.", tls_max_version),
    // ---- auth ----
    flag!(Auth, "auth-token", Str, "Token provider: 'simple' or 'jwt,<options>'.", auth_token),
    flag!(Auth, "bcrypt-cost", Uint, "bcrypt cost for password hashes (4-31).", bcrypt_cost),
    flag!(Auth, "auth-token-ttl", Seconds, "Lifetime of simple tokens, in seconds.", auth_token_ttl),
    // ---- profiling and monitoring ----
    flag!(Monitoring, "enable-pprof", Bool, "Serve profiling endpoints under /debug/pprof/.", enable_pprof),
    flag!(Monitoring, "metrics", Str, "'basic' or 'extensive' (adds gRPC latency histograms).", metrics),
    flag!(Monitoring, "listen-metrics-urls", Urls, "Extra URLs serving /metrics and /health.", listen_metrics_urls),
    // ---- logging ----
    flag!(Logging, "logger", Str, "Logger implementation; only 'zap' is accepted.", logger),
    flag!(Logging, "log-outputs", UniqueStrings, "Comma-separated log targets: default, stderr, stdout or file paths.", log_outputs),
    flag!(Logging, "log-level", LogLevelFlag, "debug, info, warn, error, panic or fatal.", log_level),
    flag!(Logging, "enable-log-rotation", Bool, "Rotate a single file log target.", enable_log_rotation),
    flag!(Logging, "log-rotation-config-json", Str, "Log rotation settings as JSON.", log_rotation_config_json),
    // ---- distributed tracing ----
    flag!(Tracing, "experimental-enable-distributed-tracing", Bool, "Export OpenTelemetry traces.", distributed_tracing.enabled),
    flag!(Tracing, "experimental-distributed-tracing-address", Str, "Trace collector address.", distributed_tracing.address),
    flag!(Tracing, "experimental-distributed-tracing-service-name", Str, "Service name in traces.", distributed_tracing.service_name),
    flag!(Tracing, "experimental-distributed-tracing-instance-id", Str, "Instance ID in traces (unique per member).", distributed_tracing.instance_id),
    flag!(Tracing, "experimental-distributed-tracing-sampling-rate", Int, "Sampled spans per million.", distributed_tracing.sampling_rate_per_million),
    // ---- v2 proxy ----
    flag!(V2Proxy, "proxy", ProxyFlag, "'off', 'readonly' or 'on'.", v2_proxy.mode),
    flag!(V2Proxy, "proxy-failure-wait", Milliseconds, "Milliseconds a failed endpoint is avoided.", v2_proxy.failure_wait),
    flag!(V2Proxy, "proxy-refresh-interval", Milliseconds, "Milliseconds between endpoint refreshes.", v2_proxy.refresh_interval),
    flag!(V2Proxy, "proxy-dial-timeout", Milliseconds, "Dial timeout in milliseconds.", v2_proxy.dial_timeout),
    flag!(V2Proxy, "proxy-write-timeout", Milliseconds, "Write timeout in milliseconds.", v2_proxy.write_timeout),
    flag!(V2Proxy, "proxy-read-timeout", Milliseconds, "Read timeout in milliseconds.", v2_proxy.read_timeout),
    // ---- experimental ----
    flag!(Experimental, "experimental-initial-corrupt-check", Bool, "Compare hashes with peers before serving.", experimental_initial_corrupt_check),
    flag!(Experimental, "experimental-corrupt-check-time", GoDuration, "Period of cluster corruption checks (0 disables).", experimental_corrupt_check_time),
    flag!(Experimental, "experimental-compact-hash-check-enabled", Bool, "Leader compares followers' compaction hashes.", experimental_compact_hash_check_enabled),
    flag!(Experimental, "experimental-compact-hash-check-time", GoDuration, "Period of compaction hash checks.", experimental_compact_hash_check_time),
    flag!(Experimental, "experimental-enable-v2v3", Str, "Accepted for compatibility; v2 emulation is not served.", experimental_enable_v2v3),
    flag!(Experimental, "experimental-enable-lease-checkpoint", Bool, "Checkpoint remaining lease TTLs to followers.", experimental_enable_lease_checkpoint),
    flag!(Experimental, "experimental-enable-lease-checkpoint-persist", Bool, "Persist lease checkpoints (needs lease checkpoints).", experimental_enable_lease_checkpoint_persist),
    flag!(Experimental, "experimental-compaction-batch-limit", Int, "Revisions deleted per compaction batch.", experimental_compaction_batch_limit),
    flag!(Experimental, "experimental-compaction-sleep-interval", GoDuration, "Pause between compaction batches.", experimental_compaction_sleep_interval),
    flag!(Experimental, "experimental-peer-skip-client-san-verification", Bool, "Skip SAN checks of peer client certificates.", experimental_peer_skip_client_san_verification),
    flag!(Experimental, "experimental-watch-progress-notify-interval", GoDuration, "Period of watch progress notifications.", experimental_watch_progress_notify_interval),
    flag!(Experimental, "experimental-downgrade-check-time", GoDuration, "Period of downgrade status checks.", experimental_downgrade_check_time),
    flag!(Experimental, "experimental-warning-apply-duration", GoDuration, "Warn when applying a request takes longer.", experimental_warning_apply_duration),
    flag!(Experimental, "experimental-memory-mlock", Bool, "Lock the backend's pages in RAM.", experimental_memory_mlock),
    flag!(Experimental, "experimental-txn-mode-write-with-shared-buffer", Bool, "Share the read buffer in write transactions.", experimental_txn_mode_write_with_shared_buffer),
    flag!(Experimental, "experimental-stop-grpc-service-on-defrag", Bool, "Report gRPC health NOT_SERVING during defragmentation.", experimental_stop_grpc_service_on_defrag),
    flag!(Experimental, "experimental-bootstrap-defrag-threshold-megabytes", Uint, "Defragment at boot when it frees at least this much (0 disables).", experimental_bootstrap_defrag_threshold_megabytes),
    flag!(Experimental, "experimental-snapshot-catchup-entries", Uint64, "Entries kept for slow followers after a snapshot.", experimental_snapshot_catchup_entries),
    // ---- unsafe ----
    flag!(Unsafe, "force-new-cluster", Bool, "Restart as a one-member cluster keeping the data.", force_new_cluster),
    flag!(Unsafe, "unsafe-no-fsync", Bool, "Never fsync (data loss on crash; tests only).", unsafe_no_fsync),
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn names_are_unique_and_env_names_follow_etcd() {
        let mut names = BTreeSet::new();
        for flag in FLAGS {
            assert!(names.insert(flag.name), "duplicate flag {}", flag.name);
            assert!(!IGNORED_FLAGS.contains(&flag.name), "{} is also ignored", flag.name);
        }
        assert_eq!(
            env_name_of(lookup("initial-cluster").unwrap().name),
            "ETCD_INITIAL_CLUSTER"
        );
        assert_eq!(
            env_name_of("experimental-enable-lease-checkpoint-persist"),
            "ETCD_EXPERIMENTAL_ENABLE_LEASE_CHECKPOINT_PERSIST"
        );
        for deprecated in DEPRECATED_FLAGS {
            assert!(lookup(deprecated).is_some(), "{deprecated}");
        }
    }

    #[test]
    fn setting_the_rendered_default_is_a_no_op() {
        // Every flag's default survives a render/parse round trip (except data-dir, which is
        // resolved after parsing and so renders empty in the parser's starting point).
        let default = ServerConfig::default();
        for flag in FLAGS {
            let mut config = ServerConfig::default();
            let rendered = (flag.get)(&default);
            if rendered.is_empty() && flag.yaml_shape == YamlShape::String && flag.go_type == "string" {
                // Empty URL lists cannot be given on etcd's command line either.
                if let Err(error) = (flag.set)(&mut config, &rendered) {
                    assert_eq!(
                        error,
                        SetError::Syntax("URL scheme must be http, https, unix, or unixs: ".into())
                    );
                    continue;
                }
            }
            (flag.set)(&mut config, &rendered).unwrap_or_else(|error| panic!("{}: {error:?}", flag.name));
            assert_eq!(config, default, "{} = {rendered:?}", flag.name);
        }
    }
}
