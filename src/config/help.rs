//! `--help`, usage and `--version` texts. The layout follows etcd's (sections, `--flag 'default'`
//! then an indented description); the descriptions are braid's own.

use super::flag_table::{Section, FLAGS};
use super::server_config::ServerConfig;

/// The short usage Go's flag package prints after a command-line error (etcd's `usageline`).
pub fn usage_text() -> String {
    "Usage:

  braid [flags]
    Start a braid server.

  braid --version
    Show the version of braid and the etcd version it is compatible with.

  braid -h | --help
    Show the help information about braid.

  braid --config-file
    Read the configuration from a YAML file; all other command-line flags and ETCD_* environment variables are then ignored.
"
    .to_string()
}

/// The full `--help` text: usage, then every flag with its default, by section.
pub fn help_text() -> String {
    let default = ServerConfig::default();
    let mut text = usage_text();
    for section in Section::ALL {
        text.push('\n');
        text.push_str(section.title());
        text.push_str(":\n");
        for flag in FLAGS.iter().filter(|flag| flag.section == section) {
            let shown_default = match flag.name {
                "data-dir" => "${name}.braid".to_string(),
                _ => (flag.get)(&default),
            };
            text.push_str(&format!("  --{} '{}'\n    {}\n", flag.name, shown_default, flag.help));
        }
    }
    text.push_str(
        "\nEvery flag can also be set through an environment variable named ETCD_ followed by the flag name in \
         upper case with '-' replaced by '_' (for example ETCD_INITIAL_CLUSTER). A flag given both ways is an error.\n\
         \nUnsafe flags can break the guarantees of the consensus protocol: use them only for disaster recovery or tests.\n",
    );
    text
}

/// What `--version` reports. braid presents itself as an etcd 3.5 release (COMPAT.md §4.1) and
/// adds its own version after etcd's four lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    /// The etcd release braid reports (never below 3.5.13).
    pub etcd_version: String,
    /// braid's source revision when the build provides one (`BRAID_GIT_SHA` at compile time).
    pub git_sha: String,
    /// Go's `runtime.Version()` has no braid equivalent; the line is kept for tools that expect it.
    pub go_version: String,
    /// `GOOS/GOARCH` spelling of the build target.
    pub os_arch: String,
    pub braid_version: String,
}

impl Default for VersionInfo {
    fn default() -> Self {
        VersionInfo {
            etcd_version: "3.5.17".to_string(),
            git_sha: option_env!("BRAID_GIT_SHA").unwrap_or("Not provided").to_string(),
            go_version: "not applicable (braid is written in Rust)".to_string(),
            os_arch: format!("{}/{}", go_os(std::env::consts::OS), go_arch(std::env::consts::ARCH)),
            braid_version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}

fn go_os(os: &str) -> &str {
    match os {
        "macos" => "darwin",
        other => other,
    }
}

fn go_arch(arch: &str) -> &str {
    match arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64",
        "s390x" => "s390x",
        other => other,
    }
}

/// etcd's four `--version` lines (same labels and order as etcd 3.4.23 prints) followed by
/// braid's.
pub fn version_text(info: &VersionInfo) -> String {
    format!(
        "etcd Version: {}\nGit SHA: {}\nGo Version: {}\nGo OS/Arch: {}\nbraid Version: {}\n",
        info.etcd_version, info.git_sha, info.go_version, info.os_arch, info.braid_version
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_lists_every_flag_once_with_its_default() {
        let help = help_text();
        for flag in FLAGS {
            let line = format!("\n  --{} '", flag.name);
            assert_eq!(help.matches(&line).count(), 1, "{}", flag.name);
        }
        assert!(help.contains("  --name 'default'\n"));
        assert!(help.contains("  --data-dir '${name}.braid'\n"));
        assert!(help.contains("  --listen-client-urls 'http://localhost:2379'\n"));
        assert!(help.contains("  --grpc-keepalive-interval '2h0m0s'\n"));
        assert!(help.contains("  --max-concurrent-streams '4294967295'\n"));
        assert!(help.starts_with(&usage_text()));
    }

    #[test]
    fn version_has_etcd_lines_first() {
        let info = VersionInfo {
            etcd_version: "3.5.17".to_string(),
            git_sha: "abc".to_string(),
            go_version: "n/a".to_string(),
            os_arch: "linux/amd64".to_string(),
            braid_version: "0.1.0".to_string(),
        };
        assert_eq!(
            version_text(&info),
            "etcd Version: 3.5.17\nGit SHA: abc\nGo Version: n/a\nGo OS/Arch: linux/amd64\nbraid Version: 0.1.0\n"
        );
        assert_eq!(go_arch("x86_64"), "amd64");
        assert_eq!(go_os("macos"), "darwin");
    }
}
