//! The versions braid reports to clients. COMPAT.md §4.1: `Status.version`, `/version`,
//! `etcd_server_version` and `--version` all show one etcd 3.5.x string, never below 3.5.13
//! (Kubernetes gates behaviour on it); braid's own version never goes into these fields.

/// The etcd server version braid reports (`Status.version`, `/version` `etcdserver`).
pub const SERVER_VERSION: &str = "3.5.17";

/// The cluster version (`/version` `etcdcluster`, `etcd_cluster_version`): major.minor.0.
pub const CLUSTER_VERSION: &str = "3.5.0";

/// The lowest server version braid may ever report (COMPAT.md §4.1).
pub const MIN_SERVER_VERSION: &str = "3.5.13";

/// `major.minor.patch` as numbers, or `None` if `version` is not of that form.
pub fn parse_version(version: &str) -> Option<(u32, u32, u32)> {
    let mut parts = version.split('.').map(|part| part.parse::<u32>().ok());
    let parsed = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reported_versions_keep_the_contract() {
        let server = parse_version(SERVER_VERSION).expect("server version parses");
        let minimum = parse_version(MIN_SERVER_VERSION).expect("minimum version parses");
        let cluster = parse_version(CLUSTER_VERSION).expect("cluster version parses");
        assert_eq!((server.0, server.1), (3, 5), "braid reports an etcd 3.5 release");
        assert!(server >= minimum, "{SERVER_VERSION} is below {MIN_SERVER_VERSION}");
        assert_eq!(cluster, (server.0, server.1, 0), "cluster version is major.minor.0");
    }

    #[test]
    fn parse_version_rejects_other_shapes() {
        assert_eq!(parse_version("3.5.17"), Some((3, 5, 17)));
        assert_eq!(parse_version("3.5"), None);
        assert_eq!(parse_version("3.5.17.1"), None);
        assert_eq!(parse_version("3.x.1"), None);
        assert_eq!(parse_version(""), None);
    }
}
