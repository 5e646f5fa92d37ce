//! Proves that braid's server configuration (flags, ETCD_* env vars, --config-file YAML) behaves
//! like etcd 3.5's: defaults, precedence, and the exact error texts and exit codes.
//! Texts marked "etcd 3.4.23" were compared with the real binary's output.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use braid::config::{
    help_text, parse_command, parse_command_with_reader, AuthTokenKind, AutoCompaction, ClusterState, Command,
    ConfigError, LogLevel, ServerConfig, TlsVersion, Url, UrlScheme,
};

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|item| item.to_string()).collect()
}

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

fn run_with_env(args: &[&str], environment: &[(&str, &str)]) -> Result<Command, ConfigError> {
    parse_command(&strings(args), &env(environment))
}

fn run(args: &[&str]) -> (ServerConfig, Vec<String>) {
    match run_with_env(args, &[]) {
        Ok(Command::Run(config, warnings)) => (config, warnings.into_iter().map(|warning| warning.message).collect()),
        other => panic!("{args:?}: expected a runnable config, got {other:?}"),
    }
}

fn error(args: &[&str], environment: &[(&str, &str)]) -> ConfigError {
    match run_with_env(args, environment) {
        Err(error) => error,
        other => panic!("{args:?}: expected an error, got {other:?}"),
    }
}

fn url(text: &str) -> Url {
    Url::parse(text).unwrap()
}

/// A YAML file under the system temp dir, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(contents: &str) -> TempFile {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "braid-config-test-{}-{}.yaml",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        std::fs::write(&path, contents).unwrap();
        TempFile(path)
    }

    fn flag(&self) -> String {
        format!("--config-file={}", self.0.display())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn no_flags_gives_etcds_defaults_with_a_braid_data_dir() {
    let (config, warnings) = run(&[]);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(config, ServerConfig::default());
    assert_eq!(config.name, "default");
    assert_eq!(config.data_dir, PathBuf::from("default.braid"));
    assert_eq!(config.listen_client_urls, vec![url("http://localhost:2379")]);
    assert_eq!(config.listen_peer_urls, vec![url("http://localhost:2380")]);
    assert_eq!(config.advertise_client_urls, vec![url("http://localhost:2379")]);
    assert_eq!(config.initial_advertise_peer_urls, vec![url("http://localhost:2380")]);
    assert_eq!(config.initial_cluster, "default=http://localhost:2380");
    assert_eq!(
        config.initial_cluster().unwrap(),
        vec![("default".to_string(), vec![url("http://localhost:2380")])]
    );
    assert_eq!(config.verify_initial_cluster().unwrap().len(), 1);
    assert_eq!(config.auto_compaction().unwrap(), AutoCompaction::Disabled);
    assert_eq!(config.auth_token_spec().unwrap().kind, AuthTokenKind::Simple);
    assert_eq!(config.quota_backend_bytes_effective(), Some(2 << 30));
    assert!(config.unsupported_settings().is_empty());
}

/// Every default from COMPAT.md §5, as etcd prints it in `--help`.
#[test]
fn every_default_matches_the_compat_table() {
    let (config, _) = run(&[]);
    let expected = [
        ("name", "default"),
        ("data-dir", "default.braid"),
        ("wal-dir", ""),
        ("snapshot-count", "100000"),
        ("heartbeat-interval", "100"),
        ("election-timeout", "1000"),
        ("initial-election-tick-advance", "true"),
        ("listen-peer-urls", "http://localhost:2380"),
        ("listen-client-urls", "http://localhost:2379"),
        ("listen-client-http-urls", ""),
        ("listen-metrics-urls", ""),
        ("initial-advertise-peer-urls", "http://localhost:2380"),
        ("advertise-client-urls", "http://localhost:2379"),
        ("initial-cluster", "default=http://localhost:2380"),
        ("initial-cluster-state", "new"),
        ("initial-cluster-token", "etcd-cluster"),
        ("discovery", ""),
        ("discovery-srv", ""),
        ("discovery-srv-name", ""),
        ("discovery-proxy", ""),
        ("discovery-fallback", "proxy"),
        ("strict-reconfig-check", "true"),
        ("pre-vote", "true"),
        ("max-snapshots", "5"),
        ("max-wals", "5"),
        ("quota-backend-bytes", "0"),
        ("backend-batch-interval", "0s"),
        ("backend-batch-limit", "0"),
        ("backend-bbolt-freelist-type", "map"),
        ("auto-compaction-mode", "periodic"),
        ("auto-compaction-retention", "0"),
        ("max-txn-ops", "128"),
        ("max-request-bytes", "1572864"),
        ("max-concurrent-streams", "4294967295"),
        ("grpc-keepalive-min-time", "5s"),
        ("grpc-keepalive-interval", "2h0m0s"),
        ("grpc-keepalive-timeout", "20s"),
        ("enable-grpc-gateway", "true"),
        ("socket-reuse-port", "false"),
        ("socket-reuse-address", "false"),
        ("raft-read-timeout", "5s"),
        ("raft-write-timeout", "5s"),
        ("cert-file", ""),
        ("key-file", ""),
        ("trusted-ca-file", ""),
        ("client-cert-auth", "false"),
        ("client-cert-file", ""),
        ("client-key-file", ""),
        ("client-crl-file", ""),
        ("client-cert-allowed-hostname", ""),
        ("auto-tls", "false"),
        ("peer-auto-tls", "false"),
        ("self-signed-cert-validity", "1"),
        ("peer-cert-file", ""),
        ("peer-key-file", ""),
        ("peer-trusted-ca-file", ""),
        ("peer-client-cert-auth", "false"),
        ("peer-crl-file", ""),
        ("peer-cert-allowed-cn", ""),
        ("peer-cert-allowed-hostname", ""),
        ("peer-client-cert-file", ""),
        ("peer-client-key-file", ""),
        ("cipher-suites", ""),
        ("tls-min-version", "TLS1.2"),
        ("tls-max-version", ""),
        ("cors", "*"),
        ("host-whitelist", "*"),
        ("auth-token", "simple"),
        ("bcrypt-cost", "10"),
        ("auth-token-ttl", "300"),
        ("enable-pprof", "false"),
        ("metrics", "basic"),
        ("logger", "zap"),
        ("log-level", "info"),
        ("log-outputs", "default"),
        ("enable-log-rotation", "false"),
        (
            "log-rotation-config-json",
            r#"{"maxsize": 100, "maxage": 0, "maxbackups": 0, "localtime": false, "compress": false}"#,
        ),
        ("force-new-cluster", "false"),
        ("unsafe-no-fsync", "false"),
        ("enable-v2", "false"),
        ("v2-deprecation", "not-yet"),
        ("experimental-enable-v2v3", ""),
        ("experimental-initial-corrupt-check", "false"),
        ("experimental-corrupt-check-time", "0s"),
        ("experimental-compact-hash-check-enabled", "false"),
        ("experimental-compact-hash-check-time", "1m0s"),
        ("experimental-enable-lease-checkpoint", "false"),
        ("experimental-enable-lease-checkpoint-persist", "false"),
        ("experimental-compaction-batch-limit", "1000"),
        ("experimental-compaction-sleep-interval", "10ms"),
        ("experimental-watch-progress-notify-interval", "10m0s"),
        ("experimental-warning-apply-duration", "100ms"),
        ("experimental-downgrade-check-time", "5s"),
        ("experimental-stop-grpc-service-on-defrag", "false"),
        ("experimental-memory-mlock", "false"),
        ("experimental-txn-mode-write-with-shared-buffer", "true"),
        ("experimental-peer-skip-client-san-verification", "false"),
        ("experimental-bootstrap-defrag-threshold-megabytes", "0"),
        ("experimental-snapshot-catchup-entries", "5000"),
        ("experimental-enable-distributed-tracing", "false"),
        ("experimental-distributed-tracing-address", "localhost:4317"),
        ("experimental-distributed-tracing-service-name", "etcd"),
        ("experimental-distributed-tracing-instance-id", ""),
        ("experimental-distributed-tracing-sampling-rate", "0"),
        ("proxy", "off"),
        ("proxy-failure-wait", "5000"),
        ("proxy-refresh-interval", "30000"),
        ("proxy-dial-timeout", "1000"),
        ("proxy-write-timeout", "5000"),
        ("proxy-read-timeout", "0"),
    ];
    for (flag, value) in expected {
        assert_eq!(config.flag_value(flag).as_deref(), Some(value), "--{flag}");
    }
    // Every flag in help appears in the table above (so no default goes unchecked).
    let help = help_text();
    let listed = help.lines().filter(|line| line.starts_with("  --")).count();
    assert_eq!(listed, expected.len());
}

#[test]
fn flag_forms_follow_go() {
    let (config, _) = run(&[
        "--name=a",
        "-snapshot-count",
        "7",
        "--election-timeout",
        "2000",
        "-pre-vote=false",
    ]);
    assert_eq!(config.name, "a");
    assert_eq!(config.snapshot_count, 7);
    assert_eq!(config.election_timeout, Duration::from_millis(2000));
    assert!(!config.pre_vote);
    let (config, _) = run(&["--enable-pprof", "-force-new-cluster", "--strict-reconfig-check=0"]);
    assert!(config.enable_pprof && config.force_new_cluster && !config.strict_reconfig_check);
    // The last occurrence wins, as in Go.
    let (config, _) = run(&["--name=a", "--name=b"]);
    assert_eq!(config.name, "b");
    let (config, _) = run(&[
        "--grpc-keepalive-interval=90m",
        "--heartbeat-interval=0x32",
        "--election-timeout=1_000",
    ]);
    assert_eq!(config.grpc_keepalive_interval, Duration::from_secs(5400));
    assert_eq!(config.heartbeat_interval, Duration::from_millis(50));
    assert_eq!(config.election_timeout, Duration::from_millis(1000));
}

#[test]
fn name_alone_names_the_bootstrap_member_and_data_dir() {
    let (config, _) = run(&["--name", "infra1"]);
    assert_eq!(config.initial_cluster, "infra1=http://localhost:2380");
    assert_eq!(config.data_dir, PathBuf::from("infra1.braid"));
    assert_eq!(config.verify_initial_cluster().unwrap()[0].0, "infra1");
    let (config, _) = run(&["--name=a", "--data-dir=/var/lib/braid"]);
    assert_eq!(config.data_dir, PathBuf::from("/var/lib/braid"));
}

#[test]
fn urls_are_parsed_sorted_and_deduplicated() {
    let (config, _) = run(&[
        "--listen-client-urls=http://127.0.0.1:2379,unix://localhost:12345,http://127.0.0.1:2379",
        "--advertise-client-urls=https://node1.example:2379",
    ]);
    assert_eq!(
        config.listen_client_urls,
        vec![url("http://127.0.0.1:2379"), url("unix://localhost:12345")]
    );
    assert_eq!(config.listen_client_urls[1].scheme, UrlScheme::Unix);
    assert_eq!(config.listen_client_urls[1].address(), "localhost:12345");
    assert_eq!(config.advertise_client_urls[0].scheme, UrlScheme::Https);
}

#[test]
fn usage_errors_exit_2_with_go_flag_texts() {
    // All five texts compared with etcd 3.4.23.
    let cases: &[(&[&str], &str)] = &[
        (&["--foo"], "flag provided but not defined: -foo"),
        (&["--election-timeout=abc"], "invalid value \"abc\" for flag -election-timeout: parse error"),
        (&["--initial-cluster-state=foo"], "invalid value \"foo\" for flag -initial-cluster-state: invalid value"),
        (&["--name"], "flag needs an argument: -name"),
        (&["---name=x"], "bad flag syntax: ---name=x"),
        (&["--pre-vote=maybe"], "invalid boolean value \"maybe\" for -pre-vote: parse error"),
        (&["--snapshot-count=-1"], "invalid value \"-1\" for flag -snapshot-count: parse error"),
        (
            &["--max-concurrent-streams=abc"],
            "invalid value \"abc\" for flag -max-concurrent-streams: strconv.ParseUint: parsing \"abc\": invalid syntax",
        ),
        (
            &["--max-concurrent-streams=4294967296"],
            "invalid value \"4294967296\" for flag -max-concurrent-streams: strconv.ParseUint: parsing \"4294967296\": value out of range",
        ),
        (
            &["--listen-client-urls=foo://127.0.0.1:2379"],
            "invalid value \"foo://127.0.0.1:2379\" for flag -listen-client-urls: URL scheme must be http, https, unix, or unixs: foo://127.0.0.1:2379",
        ),
        (
            &["--listen-client-urls=http://127.0.0.1"],
            "invalid value \"http://127.0.0.1\" for flag -listen-client-urls: URL address does not have the form \"host:port\": http://127.0.0.1",
        ),
        (&["--grpc-keepalive-timeout=5"], "invalid value \"5\" for flag -grpc-keepalive-timeout: parse error"),
    ];
    for (args, message) in cases {
        let error = error(args, &[]);
        assert_eq!((error.message.as_str(), error.exit_code), (*message, 2), "{args:?}");
        assert!(error.stderr_text().starts_with(&format!("{message}\nUsage:\n")));
    }
    // A usage error wins over a config file: flags are parsed before the file is considered.
    assert_eq!(error(&["--config-file=/nonexistent.yaml", "--foo"], &[]).exit_code, 2);
}

#[test]
fn help_and_version() {
    for args in [
        &["-h"][..],
        &["--help"],
        &["-help"],
        &["--h"],
        &["--help=x"],
        &["--name=a", "-h", "--foo"],
    ] {
        match run_with_env(args, &[]) {
            Ok(Command::Help(text)) => {
                assert!(text.contains("Usage:") && text.contains("\nMember:\n") && text.contains("  --name 'default'"))
            }
            other => panic!("{args:?}: {other:?}"),
        }
    }
    // An unknown flag before -h is reported first, as in Go.
    assert_eq!(error(&["--foo", "-h"], &[]).exit_code, 2);
    for args in [&["--version"][..], &["-version"], &["--version=true", "--name=x"]] {
        match run_with_env(args, &[("ETCD_NAME", "ignored")]) {
            Ok(Command::Version(text)) => {
                let lines: Vec<&str> = text.lines().collect();
                assert_eq!(lines[0], "etcd Version: 3.5.17");
                assert!(lines[1].starts_with("Git SHA: "));
                assert!(lines[2].starts_with("Go Version: "));
                assert!(lines[3].starts_with("Go OS/Arch: "));
                assert_eq!(lines[4], format!("braid Version: {}", env!("CARGO_PKG_VERSION")));
            }
            other => panic!("{args:?}: {other:?}"),
        }
    }
    let (config, _) = run(&["--version=false"]);
    assert_eq!(config, ServerConfig::default());
}

#[test]
fn leftover_arguments_are_invalid_flags() {
    // etcd 3.4.23: "'extra' is not a valid flag", exit 1, even with --version.
    for args in [&["extra"][..], &["--version", "extra"], &["--enable-pprof", "false"]] {
        let error = error(args, &[]);
        assert_eq!(error.exit_code, 1);
        assert_eq!(error.message, format!("'{}' is not a valid flag", args.last().unwrap()));
    }
}

#[test]
fn environment_variables_fill_unset_flags() {
    let Ok(Command::Run(config, warnings)) = run_with_env(
        &["--name=n1"],
        &[
            (
                "ETCD_INITIAL_CLUSTER",
                "n1=http://10.0.0.1:2380,n2=http://10.0.0.2:2380",
            ),
            ("ETCD_INITIAL_ADVERTISE_PEER_URLS", "http://10.0.0.1:2380"),
            ("ETCD_LISTEN_PEER_URLS", "http://10.0.0.1:2380"),
            ("ETCD_ENABLE_PPROF", "true"),
            ("ETCD_HEARTBEAT_INTERVAL", "50"),
            ("ETCD_WAL_DIR", ""),
            ("PATH", "/usr/bin"),
        ],
    ) else {
        panic!("expected a config");
    };
    assert_eq!(config.name, "n1");
    assert_eq!(
        config.initial_cluster,
        "n1=http://10.0.0.1:2380,n2=http://10.0.0.2:2380"
    );
    assert!(config.enable_pprof);
    assert_eq!(config.heartbeat_interval, Duration::from_millis(50));
    assert_eq!(config.verify_initial_cluster().unwrap().len(), 2);
    // An empty variable is not used, so etcd reports it as unrecognized.
    assert_eq!(
        warnings
            .iter()
            .map(|warning| warning.message.as_str())
            .collect::<Vec<_>>(),
        vec!["unrecognized environment variable ETCD_WAL_DIR="]
    );
}

#[test]
fn environment_conflicts_unknowns_and_bad_values() {
    // etcd 3.4.23: C | pkg/flags: conflicting environment variable "ETCD_NAME" is shadowed by ...
    let conflict = error(&["--name=y"], &[("ETCD_NAME", "x")]);
    assert_eq!(conflict.exit_code, 1);
    assert_eq!(
        conflict.message,
        "conflicting environment variable \"ETCD_NAME\" is shadowed by corresponding command-line flag \
         (either unset environment variable or disable flag)"
    );
    // etcd 3.4.23: W | pkg/flags: unrecognized environment variable ETCD_FOO=bar
    let Ok(Command::Run(_, warnings)) = run_with_env(&[], &[("ETCD_FOO", "bar"), ("ETCDCTL_API", "3")]) else {
        panic!("unknown ETCD_ variables only warn");
    };
    assert_eq!(warnings.len(), 1);
    assert_eq!(warnings[0].message, "unrecognized environment variable ETCD_FOO=bar");
    // etcd 3.4.23: invalid value "abc" for ETCD_ELECTION_TIMEOUT: parse error (exit 1).
    let bad = error(&[], &[("ETCD_ELECTION_TIMEOUT", "abc")]);
    assert_eq!(
        (bad.message.as_str(), bad.exit_code),
        ("invalid value \"abc\" for ETCD_ELECTION_TIMEOUT: parse error", 1)
    );
    let bad = error(&[], &[("ETCD_PRE_VOTE", "maybe")]);
    assert_eq!(bad.message, "invalid value \"maybe\" for ETCD_PRE_VOTE: parse error");
    // ETCD_VERSION is never a flag value.
    let Ok(Command::Run(_, warnings)) = run_with_env(&[], &[("ETCD_VERSION", "3.5.0")]) else {
        panic!("ETCD_VERSION only warns");
    };
    assert_eq!(
        warnings[0].message,
        "cannot set special environment variable ETCD_VERSION=3.5.0"
    );
}

#[test]
fn listen_client_urls_need_advertise_client_urls() {
    // etcd 3.4.23: "--advertise-client-urls is required when --listen-client-urls is set explicitly".
    let unset = error(&["--listen-client-urls=http://127.0.0.1:2379"], &[]);
    assert_eq!(
        unset.message,
        "--advertise-client-urls is required when --listen-client-urls is set explicitly"
    );
    assert_eq!(unset.exit_code, 1);
    let environment = [("ETCD_LISTEN_CLIENT_URLS", "http://127.0.0.1:2379")];
    assert_eq!(error(&[], &environment).message, unset.message);
    let Ok(Command::Run(config, _)) = run_with_env(&["--advertise-client-urls=http://10.0.0.1:2379"], &environment)
    else {
        panic!("advertise given");
    };
    assert_eq!(config.advertise_client_urls, vec![url("http://10.0.0.1:2379")]);
}

#[test]
fn validation_errors_exit_1_with_etcd_texts() {
    let cases: &[(&[&str], &str)] = &[
        // etcd 3.4.23 for the next five.
        (&["--election-timeout=100"], "--election-timeout[100ms] should be at least as 5 times as --heartbeat-interval[100ms]"),
        (&["--election-timeout=60000"], "--election-timeout[60000ms] is too long, and should be set less than 50000ms"),
        (&["--heartbeat-interval=0"], "--heartbeat-interval must be >0 (set to 0ms)"),
        (&["--auto-compaction-mode=foo"], "unknown auto-compaction-mode \"foo\""),
        (
            &["--listen-client-urls=http://example.com:2379", "--advertise-client-urls=http://x:1"],
            "expected IP in URL for binding (http://example.com:2379)",
        ),
        (
            &["--discovery=https://d.example/x", "--initial-cluster=a=http://1.2.3.4:5"],
            "multiple discovery or bootstrap flags are set. Choose one of \"initial-cluster\", \"discovery\" or \"discovery-srv\"",
        ),
        (&["--auto-compaction-retention=abc"], "error parsing CompactionRetention: time: invalid duration \"abc\""),
        (&["--auto-compaction-retention=-1"], "error parsing CompactionRetention: time: missing unit in duration \"-1\""),
        (&["--auth-token=foo"], "auth: invalid auth options"),
        (&["--auth-token=jwt,ttl"], "auth: invalid auth options"),
        // etcd 3.5 (from its source).
        (&["--log-level=loud"], "unrecognized level: \"loud\""),
        (&["--logger=capnslog"], "--logger=capnslog is removed in v3.5"),
        (&["--tls-min-version=TLS1.1"], "unexpected TLS version \"TLS1.1\" (must be one of: TLS1.2, TLS1.3)"),
        (&["--tls-min-version=TLS1.3", "--tls-max-version=TLS1.2"], "min version (TLS1.3) is greater than max version (TLS1.2)"),
        (&["--enable-v2", "--v2-deprecation=write-only"], "--enable-v2 and --v2-deprecation=write-only are mutually exclusive"),
        (
            &["--experimental-enable-lease-checkpoint-persist"],
            "setting experimental-enable-lease-checkpoint-persist requires experimental-enable-lease-checkpoint",
        ),
        (&["--experimental-compact-hash-check-time=0s"], "--experimental-compact-hash-check-time must be >0 (set to 0s)"),
        // braid refuses the v2 proxy.
        (&["--proxy=on"], "--proxy=on is not supported: braid does not implement the etcd v2 proxy (only 'off' is accepted)"),
    ];
    for (args, message) in cases {
        let error = error(args, &[]);
        assert_eq!((error.message.as_str(), error.exit_code), (*message, 1), "{args:?}");
    }
}

#[test]
fn compaction_retention_is_hours_or_duration_or_revisions() {
    let policy = |args: &[&str]| run(args).0.auto_compaction().unwrap();
    assert_eq!(
        policy(&["--auto-compaction-retention=1"]),
        AutoCompaction::Periodic(Duration::from_secs(3600))
    );
    assert_eq!(
        policy(&["--auto-compaction-retention=30m"]),
        AutoCompaction::Periodic(Duration::from_secs(1800))
    );
    assert_eq!(
        policy(&["--auto-compaction-mode=revision", "--auto-compaction-retention=1000"]),
        AutoCompaction::Revision(1000)
    );
    assert_eq!(policy(&["--auto-compaction-retention=0s"]), AutoCompaction::Disabled);
}

#[test]
fn typed_values_and_warnings() {
    let (config, warnings) = run(&[
        "--log-level=debug",
        "--tls-min-version=TLS1.3",
        "--quota-backend-bytes=10737418240",
        "--max-request-bytes=20971520",
        "--bcrypt-cost=40",
        "--raft-read-timeout=1s",
        "--auth-token=jwt,pub-key=a.pub,priv-key=a.key,sign-method=RS256,ttl=5m",
        "--experimental-enable-lease-checkpoint",
        "--enable-v2",
    ]);
    assert_eq!(config.log_level, LogLevel::Debug);
    assert_eq!(config.tls_min_version, Some(TlsVersion::Tls13));
    assert_eq!(config.raft_read_timeout, Duration::from_secs(5));
    let token = config.auth_token_spec().unwrap();
    assert_eq!(token.kind, AuthTokenKind::Jwt);
    assert_eq!(token.options["sign-method"], "RS256");
    assert_eq!(config.bcrypt_cost_effective(), 10);
    let expected_warnings = [
        "raft-read-timeout increased to minimum value: 5s",
        "--enable-v2 is deprecated in 3.5 and will be decommissioned in 3.6.",
        "quota exceeds the maximum value",
        "exceeded recommended request limit",
        "use default bcrypt cost",
        "Detected that checkpointing is enabled without persistence",
    ];
    assert_eq!(warnings.len(), expected_warnings.len(), "{warnings:?}");
    for (warning, expected) in warnings.iter().zip(expected_warnings) {
        assert!(warning.starts_with(expected), "{warning} vs {expected}");
    }
    assert_eq!(
        config.unsupported_settings(),
        vec!["--enable-v2=true", "--tls-min-version=TLS1.3"]
    );
}

#[test]
fn discovery_clears_the_default_initial_cluster_and_is_unsupported() {
    let (config, _) = run(&["--discovery=https://discovery.example/token"]);
    assert_eq!(config.initial_cluster, "");
    assert_eq!(
        config.unsupported_settings(),
        vec!["--discovery=https://discovery.example/token"]
    );
    let (config, _) = run(&["--discovery-srv=example.com"]);
    assert_eq!(
        config.verify_initial_cluster().unwrap_err().message,
        "--discovery-srv is not supported by braid"
    );
}

#[test]
fn first_boot_checks_match_etcd() {
    let config_for = |args: &[&str]| {
        let mut all = vec!["--initial-advertise-peer-urls=http://127.0.0.1:23800", "--name=x"];
        all.extend_from_slice(args);
        run(&all).0
    };
    // The four messages below were printed by etcd 3.4.23 for the same settings.
    let check = |args: &[&str]| config_for(args).verify_initial_cluster().unwrap_err().message;
    assert_eq!(
        check(&["--initial-cluster=y=http://127.0.0.1:23800"]),
        "couldn't find local name \"x\" in the initial cluster configuration"
    );
    assert_eq!(
        check(&["--initial-cluster=x=http://127.0.0.1:23801"]),
        "--initial-cluster has x=http://127.0.0.1:23801 but missing from --initial-advertise-peer-urls=http://127.0.0.1:23800 \
         (resolved urls: \"http://127.0.0.1:23800\" != \"http://127.0.0.1:23801\")"
    );
    assert_eq!(
        check(&["--initial-cluster=x=http://127.0.0.1:23800,x=http://127.0.0.1:23802"]),
        "--initial-cluster has x=http://127.0.0.1:23802 but missing from --initial-advertise-peer-urls=http://127.0.0.1:23800 \
         (len([\"http://127.0.0.1:23800\"]) != len([\"http://127.0.0.1:23800\" \"http://127.0.0.1:23802\"]))"
    );
    assert_eq!(
        check(&[
            "--initial-cluster=x=http://127.0.0.1:23800",
            "--initial-advertise-peer-urls=http://127.0.0.1:23800,http://127.0.0.1:23803"
        ]),
        "--initial-advertise-peer-urls has http://127.0.0.1:23803 but missing from \
         --initial-cluster=x=http://127.0.0.1:23800,x=http://127.0.0.1:23803"
    );
    assert_eq!(
        check(&["--initial-cluster=x=foo://a"]),
        "error setting up initial cluster: URL scheme must be http, https, unix, or unixs: foo://a"
    );
    assert_eq!(
        check(&["--initial-cluster=x=http://127.0.0.1:23800,y=http://127.0.0.1:23800"]),
        "initial cluster x=http://127.0.0.1:23800,y=http://127.0.0.1:23800 has duplicate url"
    );
    // Joining an existing cluster only needs this member listed, whatever its URLs.
    let joining = config_for(&[
        "--initial-cluster-state=existing",
        "--initial-cluster=x=http://127.0.0.9:1,y=http://127.0.0.2:1",
    ]);
    assert_eq!(joining.initial_cluster_state, ClusterState::Existing);
    assert_eq!(joining.verify_initial_cluster().unwrap().len(), 2);
    // Parsing itself does not check the member list: etcd ignores it once a member has data.
    let (config, _) = run(&["--name=x"]);
    assert_eq!(config.initial_cluster, "x=http://localhost:2380");
    let (config, _) = run(&["--initial-cluster=other=http://127.0.0.1:1"]);
    assert!(config.verify_initial_cluster().is_err());
}

#[test]
fn config_file_overrides_flags_and_environment() {
    let file = TempFile::new(
        "name: from-file\n\
         data-dir: /tmp/from-file\n\
         listen-client-urls: http://127.0.0.1:3379,http://127.0.0.1:3379\n\
         advertise-client-urls: http://127.0.0.1:3379\n\
         initial-advertise-peer-urls: http://127.0.0.1:3380\n\
         initial-cluster: from-file=http://127.0.0.1:3380\n\
         heartbeat-interval: 50\n\
         election-timeout: 500\n\
         grpc-keepalive-interval: 60000000000\n\
         auto-compaction-mode: revision\n\
         auto-compaction-retention: '100'\n\
         log-outputs: [stderr, stdout]\n\
         cipher-suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]\n\
         client-transport-security:\n  cert-file: /tls/server.crt\n  key-file: /tls/server.key\n  client-cert-auth: true\n\
         peer-transport-security:\n  allowed-cn: [peer-a]\n\
         Enable-Pprof: true\n\
         no-such-key: 1\n",
    );
    // Conflicting flag and env, unknown env, and an invalid flag value that etcd's validation
    // would reject are all ignored once a config file is given.
    let args = [file.flag(), "--name=flag".to_string(), "--log-level=loud".to_string()];
    let environment = env(&[("ETCD_NAME", "env"), ("ETCD_FOO", "x")]);
    let Ok(Command::Run(config, warnings)) = parse_command(&args, &environment) else {
        panic!("config file should load");
    };
    assert_eq!(config.name, "from-file");
    assert_eq!(config.data_dir, PathBuf::from("/tmp/from-file"));
    assert_eq!(config.listen_client_urls, vec![url("http://127.0.0.1:3379")]);
    assert_eq!(config.heartbeat_interval, Duration::from_millis(50));
    assert_eq!(config.election_timeout, Duration::from_millis(500));
    assert_eq!(config.grpc_keepalive_interval, Duration::from_secs(60));
    assert_eq!(config.auto_compaction().unwrap(), AutoCompaction::Revision(100));
    assert_eq!(config.log_outputs, strings(&["stderr", "stdout"]));
    assert_eq!(
        config.client_tls.cert_file.as_deref(),
        Some(Path::new("/tls/server.crt"))
    );
    assert!(config.client_tls.client_cert_auth);
    assert_eq!(config.peer_tls.allowed_cns, strings(&["peer-a"]));
    assert!(config.enable_pprof, "keys match case-insensitively");
    assert_eq!(config.log_level, LogLevel::Info);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(
        warnings[0].message,
        "unrecognized configuration file key \"no-such-key\""
    );
    assert_eq!(config.verify_initial_cluster().unwrap()[0].0, "from-file");

    // The same file through ETCD_CONFIG_FILE.
    let environment = env(&[
        ("ETCD_CONFIG_FILE", &file.0.display().to_string()),
        ("ETCD_NAME", "env"),
    ]);
    let Ok(Command::Run(from_env, _)) = parse_command(&[], &environment) else {
        panic!("ETCD_CONFIG_FILE should load");
    };
    assert_eq!(from_env, config);
}

#[test]
fn config_file_defaults_and_fixups() {
    let file = TempFile::new("# nothing but a comment\n");
    let Ok(Command::Run(config, warnings)) = parse_command(&[file.flag()], &BTreeMap::new()) else {
        panic!("empty file is fine");
    };
    assert_eq!(config, ServerConfig::default());
    assert!(warnings.is_empty());
    // --name in YAML also renames the default bootstrap member and data dir, and
    // listen-client-urls alone keeps the default advertise URL (unlike the flag).
    let file = TempFile::new("name: solo\nlisten-client-urls: http://0.0.0.0:2379\nself-signed-cert-validity: 0\n");
    let Ok(Command::Run(config, _)) = parse_command(&[file.flag()], &BTreeMap::new()) else {
        panic!("valid file");
    };
    assert_eq!(config.initial_cluster, "solo=http://localhost:2380");
    assert_eq!(config.data_dir, PathBuf::from("solo.braid"));
    assert_eq!(config.advertise_client_urls, vec![url("http://localhost:2379")]);
    assert_eq!(config.self_signed_cert_validity_years, 1);
}

#[test]
fn config_file_errors_match_etcd() {
    // Each text compared with etcd 3.4.23 `--config-file=<same YAML>`.
    let cases = [
        (
            "grpc-keepalive-min-time: 5s\n",
            "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal string into Go struct field configYAML.grpc-keepalive-min-time of type time.Duration",
        ),
        (
            "heartbeat-interval: \"100\"\n",
            "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal string into Go struct field configYAML.heartbeat-interval of type uint",
        ),
        (
            "heartbeat-interval: -1\n",
            "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal number -1 into Go struct field configYAML.heartbeat-interval of type uint",
        ),
        (
            "strict-reconfig-check: \"true\"\n",
            "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal string into Go struct field configYAML.strict-reconfig-check of type bool",
        ),
        (
            "log-outputs: stderr\n",
            "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal string into Go struct field configYAML.log-outputs of type []string",
        ),
        ("- a\n- b\n", "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal array into Go value of type embed.configYAML"),
        (
            "listen-client-urls: foo://x\n",
            "unexpected error setting up listen-client-urls: URL scheme must be http, https, unix, or unixs: foo://x",
        ),
        (
            "listen-peer-urls: http://127.0.0.1\n",
            "unexpected error setting up listen-peer-urls: URL address does not have the form \"host:port\": http://127.0.0.1",
        ),
        ("initial-cluster-state: foo\n", "unexpected clusterState \"foo\""),
        ("proxy: foo\n", "unexpected error setting up proxyFlag: invalid value"),
        ("heartbeat-interval: 1000\n", "--election-timeout[1000ms] should be at least as 5 times as --heartbeat-interval[1000ms]"),
        (
            "heartbeat-interval: 1000\nheartbeat-interval: 2000\n",
            "--election-timeout[1000ms] should be at least as 5 times as --heartbeat-interval[2000ms]",
        ),
        ("HEARTBEAT-INTERVAL: 1e3\n", "--election-timeout[1000ms] should be at least as 5 times as --heartbeat-interval[1000ms]"),
        (
            "heartbeat-interval: 1.5\n",
            "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal number 1.5 into Go struct field configYAML.heartbeat-interval of type uint",
        ),
    ];
    for (yaml, message) in cases {
        let file = TempFile::new(yaml);
        let error = match parse_command(&[file.flag()], &BTreeMap::new()) {
            Err(error) => error,
            other => panic!("{yaml}: {other:?}"),
        };
        assert_eq!((error.message.as_str(), error.exit_code), (message, 1), "{yaml}");
    }
    // YAML 1.1 spellings and Go integer forms that etcd accepts.
    let file = TempFile::new("strict-reconfig-check: no\nheartbeat-interval: 0x10\nelection-timeout: 100.0\n");
    let Ok(Command::Run(config, _)) = parse_command(&[file.flag()], &BTreeMap::new()) else {
        panic!("accepted by etcd");
    };
    assert!(!config.strict_reconfig_check);
    assert_eq!(config.heartbeat_interval, Duration::from_millis(16));
    assert_eq!(config.election_timeout, Duration::from_millis(100));
    // Reading failures.
    let missing = std::env::temp_dir().join(format!("braid-config-test-{}-missing.yaml", std::process::id()));
    let error = error(&[&format!("--config-file={}", missing.display())], &[]);
    assert_eq!(
        error.message,
        format!("open {}: no such file or directory", missing.display())
    );
    let syntax = TempFile::new("name: a\n: : :\n  - x\n");
    let message = parse_command(&[syntax.flag()], &BTreeMap::new()).unwrap_err().message;
    assert!(
        message.starts_with("error converting YAML to JSON: yaml: line 3: "),
        "{message}"
    );
}

#[test]
fn config_file_can_come_from_any_reader() {
    let read = |path: &Path| -> std::io::Result<String> {
        assert_eq!(path, Path::new("/virtual/braid.yaml"));
        Ok("name: virtual\n".to_string())
    };
    let args = strings(&["--config-file", "/virtual/braid.yaml"]);
    let Ok(Command::Run(config, _)) = parse_command_with_reader(&args, &BTreeMap::new(), &read) else {
        panic!("reader-provided file");
    };
    assert_eq!(config.name, "virtual");
}
