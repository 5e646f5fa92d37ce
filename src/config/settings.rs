//! Derived views of a `ServerConfig`: the bootstrap member list and its first-boot checks,
//! the compaction policy, the auth token provider, and the settings braid does not act on.

use std::collections::{BTreeMap, BTreeSet};

use super::flag_table;
use super::goparse::{go_quote_list, parse_duration};
use super::server_config::{
    AuthTokenKind, AuthTokenSpec, AutoCompaction, AutoCompactionMode, ClusterState, ServerConfig,
};
use super::url::Url;
use super::ConfigError;

/// Flags braid parses and records but does not implement (yet). `unsupported_settings` reports
/// those set to a non-default value so the server can warn or refuse. Trim this list as
/// features land.
/// The TLS flags of the client and peer listeners. In YAML they live under
/// `client-transport-security` / `peer-transport-security`, not at the top level.
pub const TLS_FLAGS: &[&str] = &[
    "cert-file",
    "key-file",
    "client-cert-auth",
    "client-cert-file",
    "client-key-file",
    "client-crl-file",
    "client-cert-allowed-hostname",
    "trusted-ca-file",
    "auto-tls",
    "peer-cert-file",
    "peer-key-file",
    "peer-client-cert-auth",
    "peer-trusted-ca-file",
    "peer-cert-allowed-cn",
    "peer-cert-allowed-hostname",
    "peer-auto-tls",
    "peer-client-cert-file",
    "peer-client-key-file",
    "peer-crl-file",
];

pub const UNSUPPORTED_FLAGS: &[&str] = &[
    // Bootstrap through a discovery service or DNS SRV records.
    "discovery",
    "discovery-srv",
    "discovery-srv-name",
    "discovery-proxy",
    "discovery-fallback",
    // The v2 API, its emulation and the v2 proxy (`--proxy` other than off is refused outright).
    "enable-v2",
    "experimental-enable-v2v3",
    "v2-deprecation",
    "proxy-failure-wait",
    "proxy-refresh-interval",
    "proxy-dial-timeout",
    "proxy-write-timeout",
    "proxy-read-timeout",
    // TLS (client and peer): see TLS_FLAGS, checked alongside this list.
    "self-signed-cert-validity",
    "cipher-suites",
    "tls-min-version",
    "tls-max-version",
    "experimental-peer-skip-client-san-verification",
    // bbolt-specific tuning with no braid equivalent.
    "backend-bbolt-freelist-type",
    "experimental-txn-mode-write-with-shared-buffer",
    "experimental-memory-mlock",
    "experimental-bootstrap-defrag-threshold-megabytes",
    // Observability extras.
    "enable-pprof",
    "enable-log-rotation",
    "log-rotation-config-json",
    "experimental-enable-distributed-tracing",
    "experimental-distributed-tracing-address",
    "experimental-distributed-tracing-service-name",
    "experimental-distributed-tracing-instance-id",
    "experimental-distributed-tracing-sampling-rate",
];

impl ServerConfig {
    /// The value of a flag as etcd would print it (`--name` → "default", durations as "5s"),
    /// or `None` for an unknown flag name (given without dashes).
    pub fn flag_value(&self, flag_name: &str) -> Option<String> {
        flag_table::lookup(flag_name).map(|flag| (flag.get)(self))
    }

    /// `--flag=value` for every flag in [`UNSUPPORTED_FLAGS`] whose value differs from etcd's
    /// default, plus the YAML-only client `allowed-cn`.
    pub fn unsupported_settings(&self) -> Vec<String> {
        let default = ServerConfig::default();
        let mut settings: Vec<String> = UNSUPPORTED_FLAGS
            .iter()
            .chain(TLS_FLAGS)
            .filter_map(|name| {
                let flag = flag_table::lookup(name)?;
                let value = (flag.get)(self);
                (value != (flag.get)(&default)).then(|| format!("--{name}={value}"))
            })
            .collect();
        if !self.client_tls.allowed_cns.is_empty() {
            settings.push(format!(
                "client-transport-security.allowed-cn={}",
                self.client_tls.allowed_cns.join(",")
            ));
        }
        settings
    }

    /// `--initial-cluster` parsed as etcd's `types.NewURLsMap`: members sorted by name, each
    /// member's URLs sorted. The error is what etcd prints when it starts a fresh member.
    pub fn initial_cluster(&self) -> Result<Vec<(String, Vec<Url>)>, ConfigError> {
        let mut grouped: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for entry in self.initial_cluster.split(',') {
            if entry.is_empty() {
                continue;
            }
            let (name, url) = entry.split_once('=').unwrap_or((entry, ""));
            grouped.entry(name).or_default().push(url);
        }
        grouped
            .into_iter()
            .map(|(name, urls)| {
                let mut parsed = Vec::new();
                for url in urls {
                    parsed.push(
                        Url::parse(url).map_err(|error| {
                            ConfigError::invalid(format!("error setting up initial cluster: {error}"))
                        })?,
                    );
                }
                parsed.sort_by_key(Url::to_string);
                Ok((name.to_string(), parsed))
            })
            .collect()
    }

    /// The checks etcd makes when a member starts with an empty data directory (they are skipped
    /// on restarts, where `--initial-*` flags are ignored): state `new` needs this member in the
    /// cluster with exactly its advertised peer URLs; `existing` needs the member listed.
    /// Returns the member list to bootstrap with.
    ///
    /// Peer URLs are compared as text; etcd also resolves host names (so `localhost` and
    /// `127.0.0.1` can match there).
    pub fn verify_initial_cluster(&self) -> Result<Vec<(String, Vec<Url>)>, ConfigError> {
        if !self.discovery_srv.is_empty() {
            return Err(ConfigError::invalid("--discovery-srv is not supported by braid"));
        }
        let members = if self.discovery.is_empty() {
            self.initial_cluster()?
        } else {
            // etcd bootstraps a discovery member from its own advertised peer URLs.
            vec![(self.name.clone(), self.initial_advertise_peer_urls.clone())]
        };
        let Some((_, local_urls)) = members.iter().find(|(name, _)| *name == self.name) else {
            return Err(ConfigError::invalid(format!(
                "couldn't find local name {} in the initial cluster configuration",
                super::goparse::go_quote(&self.name)
            )));
        };
        if self.initial_cluster_state == ClusterState::New {
            self.check_advertise_matches_cluster(local_urls)?;
        }
        let mut seen = BTreeSet::new();
        if members
            .iter()
            .flat_map(|(_, urls)| urls)
            .any(|url| !seen.insert(url.to_string()))
        {
            return Err(ConfigError::invalid(format!(
                "initial cluster {} has duplicate url",
                members_string(&members)
            )));
        }
        if self.initial_cluster_state == ClusterState::Existing && !self.discovery.is_empty() {
            return Err(ConfigError::invalid(
                "discovery URL should not be set when joining existing initial cluster",
            ));
        }
        Ok(members)
    }

    /// etcd's `advertiseMatchesCluster`, with its three messages.
    fn check_advertise_matches_cluster(&self, cluster_urls: &[Url]) -> Result<(), ConfigError> {
        let mut advertised: Vec<String> = self.initial_advertise_peer_urls.iter().map(Url::to_string).collect();
        let mut listed: Vec<String> = cluster_urls.iter().map(Url::to_string).collect();
        advertised.sort();
        listed.sort();
        if advertised == listed {
            return Ok(());
        }
        let comparison = if advertised.len() != listed.len() {
            format!("len({}) != len({})", go_quote_list(&advertised), go_quote_list(&listed))
        } else {
            let (left, right) = advertised
                .iter()
                .zip(&listed)
                .find(|(left, right)| left != right)
                .unwrap_or_else(|| panic!("sorted URL lists {advertised:?} and {listed:?} differ but no element does"));
            format!(
                "resolved urls: {} != {}",
                super::goparse::go_quote(left),
                super::goparse::go_quote(right)
            )
        };
        let advertised_set: BTreeSet<&String> = advertised.iter().collect();
        let listed_set: BTreeSet<&String> = listed.iter().collect();
        let advertised_text = advertised.join(",");
        let missing_from_advertised: Vec<String> = listed_set
            .difference(&advertised_set)
            .map(|url| format!("{}={url}", self.name))
            .collect();
        if !missing_from_advertised.is_empty() {
            return Err(ConfigError::invalid(format!(
                "--initial-cluster has {} but missing from --initial-advertise-peer-urls={advertised_text} ({comparison})",
                missing_from_advertised.join(",")
            )));
        }
        let own_entry = members_string(&[(self.name.clone(), self.initial_advertise_peer_urls.clone())]);
        let missing_from_cluster: Vec<&str> = advertised_set.difference(&listed_set).map(|url| url.as_str()).collect();
        if !missing_from_cluster.is_empty() {
            return Err(ConfigError::invalid(format!(
                "--initial-advertise-peer-urls has {} but missing from --initial-cluster={own_entry}",
                missing_from_cluster.join(",")
            )));
        }
        Err(ConfigError::invalid(format!(
            "failed to resolve {advertised_text} to match --initial-cluster={own_entry} ({comparison})"
        )))
    }

    /// The compaction policy (`parseCompactionRetention`): a bare integer is hours in periodic
    /// mode and a revision count in revision mode; anything else must be a Go duration.
    pub fn auto_compaction(&self) -> Result<AutoCompaction, ConfigError> {
        let retention = if self.auto_compaction_retention.is_empty() {
            "0"
        } else {
            &self.auto_compaction_retention
        };
        let policy = match retention.parse::<i64>() {
            Ok(count) if count >= 0 => match self.auto_compaction_mode {
                AutoCompactionMode::Periodic => {
                    AutoCompaction::Periodic(std::time::Duration::from_secs(count as u64 * 3600))
                }
                AutoCompactionMode::Revision => AutoCompaction::Revision(count as u64),
            },
            _ => {
                let window = parse_duration(retention).map_err(|error| {
                    ConfigError::invalid(format!(
                        "error parsing CompactionRetention: {}",
                        error.message(retention)
                    ))
                })?;
                match self.auto_compaction_mode {
                    AutoCompactionMode::Periodic => AutoCompaction::Periodic(window),
                    // etcd takes the duration's nanoseconds as the revision count.
                    AutoCompactionMode::Revision => AutoCompaction::Revision(window.as_nanos() as u64),
                }
            }
        };
        Ok(match policy {
            AutoCompaction::Periodic(window) if window.is_zero() => AutoCompaction::Disabled,
            AutoCompaction::Revision(0) => AutoCompaction::Disabled,
            other => other,
        })
    }

    /// `--auth-token` split into provider and options (etcd's `decomposeOpts`).
    pub fn auth_token_spec(&self) -> Result<AuthTokenSpec, ConfigError> {
        let invalid = || ConfigError::invalid("auth: invalid auth options");
        let mut parts = self.auth_token.split(',');
        let kind = match parts.next().unwrap_or_default() {
            "simple" => AuthTokenKind::Simple,
            "jwt" => AuthTokenKind::Jwt,
            "" => AuthTokenKind::Disabled,
            _ => return Err(invalid()),
        };
        let mut options = BTreeMap::new();
        for part in parts {
            let pieces: Vec<&str> = part.split('=').collect();
            let [key, value] = pieces[..] else {
                return Err(invalid());
            };
            if options.insert(key.to_string(), value.to_string()).is_some() {
                return Err(invalid());
            }
        }
        Ok(AuthTokenSpec { kind, options })
    }
}

/// etcd's `URLsMap.String()`: `name=url` pairs sorted as text.
fn members_string(members: &[(String, Vec<Url>)]) -> String {
    let mut pairs: Vec<String> = members
        .iter()
        .flat_map(|(name, urls)| urls.iter().map(move |url| format!("{name}={url}")))
        .collect();
    pairs.sort();
    pairs.join(",")
}
