//! The command line of braid-bench: which workload, against which endpoints,
//! and how hard and how long to drive it.

use std::time::Duration;

pub const USAGE: &str = "\
usage: braid-bench <workload> [flags]

workloads:
  put            Put one random key per request
  range          Range one random key (--consistency linearizable|serializable)
  txn-put        a Txn without compares whose success branch is one Put
  mixed          Range or Put, a --ratio share of them reads
  watch-latency  --watchers watchers on --prefix; every Put carries its send time
                 in its value and each delivered event records put -> event latency
  status         Maintenance.Status of every endpoint; exits 0 once a leader is known

flags (defaults in brackets):
  --endpoints LIST     comma-separated host:port or http://host:port [127.0.0.1:2379]
  --target all|leader  send to every endpoint, or only to the member that reports itself
                       leader (found with Maintenance.Status) [all]
  --conns N            gRPC connections, spread round-robin over the targets [1]
  --clients N          concurrent clients, spread round-robin over the connections [1]
  --duration TIME      stop after TIME (10, 10s, 500ms, 2m) [10s; 10m when --total is given]
  --total N            stop after N requests (whichever of --duration/--total comes first)
  --key-size BYTES     key length: --prefix then a zero-padded key number [8]
  --val-size BYTES     value length [256]
  --key-space N        keys are numbers 0..N [100000]
  --keys random|sequential  key choice; sequential walks 0..N once per N requests [random]
  --prefix TEXT        key prefix [empty; w/ for watch-latency]
  --ratio R            mixed: the share of reads, 0.0 to 1.0 [0.5]
  --consistency linearizable|serializable  range and mixed reads (l, s) [linearizable]
  --watchers N         watch-latency: watchers, one Watch stream each [16]
  --rate N             requests per second over all clients, 0 for no limit [0]
  --timeout TIME       per-request deadline; a late answer counts as an error [5s]
  --seed N             seed of the random key choice [1]
  --json               print one JSON object on stdout instead of text
";

/// The digits of the nanosecond timestamp a watch-latency value starts with.
pub const TIMESTAMP_DIGITS: usize = 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    Put,
    Range,
    TxnPut,
    Mixed,
    WatchLatency,
    Status,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Put => "put",
            Workload::Range => "range",
            Workload::TxnPut => "txn-put",
            Workload::Mixed => "mixed",
            Workload::WatchLatency => "watch-latency",
            Workload::Status => "status",
        }
    }

    fn parse(text: &str) -> Result<Workload, String> {
        let all = [
            Workload::Put,
            Workload::Range,
            Workload::TxnPut,
            Workload::Mixed,
            Workload::WatchLatency,
            Workload::Status,
        ];
        all.into_iter()
            .find(|workload| workload.name() == text)
            .ok_or_else(|| format!("unknown workload {text:?}"))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consistency {
    Linearizable,
    Serializable,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    All,
    Leader,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyOrder {
    Random,
    Sequential,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    pub workload: Workload,
    /// Always `http://host:port`.
    pub endpoints: Vec<String>,
    pub target: Target,
    pub connections: usize,
    pub clients: usize,
    pub duration: Duration,
    /// `u64::MAX` when not given: the duration alone bounds the run.
    pub total: u64,
    pub key_size: usize,
    pub value_size: usize,
    pub key_space: u64,
    pub key_order: KeyOrder,
    pub prefix: String,
    /// The share of reads in the mixed workload.
    pub read_ratio: f64,
    pub consistency: Consistency,
    pub watchers: usize,
    /// 0: as fast as the clients go.
    pub rate_per_second: u64,
    pub request_timeout: Duration,
    pub seed: u64,
    pub json: bool,
}

impl Options {
    /// Parses the arguments after the program name.
    pub fn parse(arguments: impl IntoIterator<Item = String>) -> Result<Options, String> {
        let mut arguments = arguments.into_iter();
        let workload = Workload::parse(&arguments.next().ok_or("no workload given")?)?;
        let mut options = Options {
            workload,
            endpoints: vec!["http://127.0.0.1:2379".to_string()],
            target: Target::All,
            connections: 1,
            clients: 1,
            duration: Duration::from_secs(10),
            total: u64::MAX,
            key_size: 8,
            value_size: 256,
            key_space: 100_000,
            key_order: KeyOrder::Random,
            prefix: String::new(),
            read_ratio: 0.5,
            consistency: Consistency::Linearizable,
            watchers: 16,
            rate_per_second: 0,
            request_timeout: Duration::from_secs(5),
            seed: 1,
            json: false,
        };
        let mut duration_given = false;
        let mut prefix_given = false;
        while let Some(argument) = arguments.next() {
            let (flag, inline_value) = match argument.split_once('=') {
                Some((flag, value)) => (flag.to_string(), Some(value.to_string())),
                None => (argument.clone(), None),
            };
            if flag == "--json" {
                options.json = true;
                continue;
            }
            let value = match inline_value {
                Some(value) => value,
                None => arguments.next().ok_or_else(|| format!("{flag} needs a value"))?,
            };
            match flag.as_str() {
                "--endpoints" => options.endpoints = parse_endpoints(&value)?,
                "--target" => {
                    options.target = match value.as_str() {
                        "all" => Target::All,
                        "leader" => Target::Leader,
                        _ => return Err(format!("--target: {value:?} is neither all nor leader")),
                    }
                }
                "--conns" => options.connections = parse_number(&flag, &value)?,
                "--clients" => options.clients = parse_number(&flag, &value)?,
                "--duration" => {
                    options.duration = parse_duration(&value)?;
                    duration_given = true;
                }
                "--total" => options.total = parse_number(&flag, &value)?,
                "--key-size" => options.key_size = parse_number(&flag, &value)?,
                "--val-size" => options.value_size = parse_number(&flag, &value)?,
                "--key-space" => options.key_space = parse_number(&flag, &value)?,
                "--keys" => {
                    options.key_order = match value.as_str() {
                        "random" => KeyOrder::Random,
                        "sequential" => KeyOrder::Sequential,
                        _ => return Err(format!("--keys: {value:?} is neither random nor sequential")),
                    }
                }
                "--prefix" => {
                    options.prefix = value;
                    prefix_given = true;
                }
                "--ratio" => options.read_ratio = parse_number(&flag, &value)?,
                "--consistency" => {
                    options.consistency = match value.as_str() {
                        "l" | "linearizable" => Consistency::Linearizable,
                        "s" | "serializable" => Consistency::Serializable,
                        _ => {
                            return Err(format!(
                                "--consistency: {value:?} is neither linearizable nor serializable"
                            ))
                        }
                    }
                }
                "--watchers" => options.watchers = parse_number(&flag, &value)?,
                "--rate" => options.rate_per_second = parse_number(&flag, &value)?,
                "--timeout" => options.request_timeout = parse_duration(&value)?,
                "--seed" => options.seed = parse_number(&flag, &value)?,
                _ => return Err(format!("unknown flag {flag}")),
            }
        }
        if options.total != u64::MAX && !duration_given {
            // A count alone still gets a time bound, generous enough not to cut a sane run.
            options.duration = Duration::from_secs(600);
        }
        if options.workload == Workload::WatchLatency && !prefix_given {
            options.prefix = "w/".to_string();
        }
        options.validate()?;
        Ok(options)
    }

    fn validate(&self) -> Result<(), String> {
        if self.connections == 0 || self.clients == 0 || self.key_space == 0 {
            return Err("--conns, --clients and --key-space must be at least 1".to_string());
        }
        if self.workload == Workload::WatchLatency && self.watchers == 0 {
            return Err("--watchers must be at least 1".to_string());
        }
        if !(0.0..=1.0).contains(&self.read_ratio) {
            return Err(format!("--ratio {} is outside 0.0..=1.0", self.read_ratio));
        }
        if self.workload == Workload::WatchLatency && self.value_size < TIMESTAMP_DIGITS {
            return Err(format!(
                "watch-latency needs --val-size of at least {TIMESTAMP_DIGITS} for the send time"
            ));
        }
        let digits = (self.key_space - 1).to_string().len();
        if self.prefix.len() + digits > self.key_size {
            return Err(format!(
                "--key-size {} is too small for prefix {:?} and {} keys (needs {})",
                self.key_size,
                self.prefix,
                self.key_space,
                self.prefix.len() + digits
            ));
        }
        Ok(())
    }

    /// Key number `number` as bytes: the prefix, then the number zero-padded to `key_size`.
    pub fn key(&self, number: u64) -> Vec<u8> {
        let width = self.key_size - self.prefix.len();
        format!("{}{number:0width$}", self.prefix).into_bytes()
    }

    /// The end of the range holding every key with the prefix (etcd's prefix rule).
    pub fn prefix_range_end(&self) -> Vec<u8> {
        let mut end = self.prefix.as_bytes().to_vec();
        while let Some(last) = end.pop() {
            if last < 0xff {
                end.push(last + 1);
                return end;
            }
        }
        // An empty (or all-0xff) prefix means every key: etcd spells that "\0".
        vec![0]
    }
}

fn parse_number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value
        .replace('_', "")
        .parse()
        .map_err(|_| format!("{flag}: {value:?} is not a number"))
}

/// `10`, `2.5`, `10s`, `500ms` or `2m`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, scale_seconds) = if let Some(number) = text.strip_suffix("ms") {
        (number, 0.001)
    } else if let Some(number) = text.strip_suffix('s') {
        (number, 1.0)
    } else if let Some(number) = text.strip_suffix('m') {
        (number, 60.0)
    } else {
        (text, 1.0)
    };
    let value: f64 = number.parse().map_err(|_| format!("{text:?} is not a duration"))?;
    if !(value.is_finite() && value >= 0.0) {
        return Err(format!("{text:?} is not a duration"));
    }
    Ok(Duration::from_secs_f64(value * scale_seconds))
}

fn parse_endpoints(text: &str) -> Result<Vec<String>, String> {
    let endpoints: Vec<String> = text
        .split(',')
        .map(str::trim)
        .filter(|endpoint| !endpoint.is_empty())
        .map(|endpoint| {
            if endpoint.starts_with("https://") {
                Err(format!("{endpoint}: TLS is not supported"))
            } else if endpoint.starts_with("http://") {
                Ok(endpoint.to_string())
            } else {
                Ok(format!("http://{endpoint}"))
            }
        })
        .collect::<Result<_, _>>()?;
    if endpoints.is_empty() {
        return Err("--endpoints is empty".to_string());
    }
    Ok(endpoints)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Options, String> {
        Options::parse(line.split_whitespace().map(str::to_string))
    }

    #[test]
    fn defaults_and_both_flag_spellings() {
        let options = parse("put --clients 64 --conns=8 --endpoints a:1,http://b:2 --json").unwrap();
        assert_eq!(options.workload, Workload::Put);
        assert_eq!((options.clients, options.connections), (64, 8));
        assert_eq!(options.endpoints, ["http://a:1", "http://b:2"]);
        assert!(options.json);
        assert_eq!(options.duration, Duration::from_secs(10));
        assert_eq!(options.total, u64::MAX);
        assert_eq!(
            (options.key_size, options.value_size, options.key_space),
            (8, 256, 100_000)
        );
    }

    #[test]
    fn total_alone_still_has_a_time_bound() {
        let options = parse("put --total 1_000").unwrap();
        assert_eq!(options.total, 1000);
        assert_eq!(options.duration, Duration::from_secs(600));
        let options = parse("put --total 1000 --duration 3s").unwrap();
        assert_eq!(options.duration, Duration::from_secs(3));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("2.5s").unwrap(), Duration::from_millis(2500));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn workload_specific_flags() {
        let options = parse("range --consistency s").unwrap();
        assert_eq!(options.consistency, Consistency::Serializable);
        let options = parse("mixed --ratio 0.9 --target leader --keys sequential").unwrap();
        assert_eq!(options.read_ratio, 0.9);
        assert_eq!(options.target, Target::Leader);
        assert_eq!(options.key_order, KeyOrder::Sequential);
        let options = parse("watch-latency --watchers 100 --rate 1000").unwrap();
        assert_eq!((options.watchers, options.rate_per_second), (100, 1000));
        assert_eq!(options.prefix, "w/");
    }

    #[test]
    fn rejects_what_cannot_run() {
        for (line, expected) in [
            ("", "no workload"),
            ("get", "unknown workload"),
            ("put --bogus 1", "unknown flag --bogus"),
            ("put --clients", "--clients needs a value"),
            ("put --clients x", "is not a number"),
            ("put --clients 0", "at least 1"),
            ("mixed --ratio 1.5", "outside"),
            ("put --key-space 1000000000", "--key-size 8 is too small"),
            ("watch-latency --val-size 10", "at least 20"),
            ("put --endpoints https://a:1", "TLS"),
            ("range --consistency strong", "neither"),
        ] {
            let error = parse(line).unwrap_err();
            assert!(
                error.contains(expected),
                "{line:?} gave {error:?}, expected {expected:?}"
            );
        }
    }

    #[test]
    fn keys_are_padded_to_their_size_and_prefix_ranges_cover_them() {
        let options = parse("put --prefix k/ --key-size 10").unwrap();
        assert_eq!(options.key(42), b"k/00000042");
        assert_eq!(options.prefix_range_end(), b"k0");
        let options = parse("put").unwrap();
        assert_eq!(options.key(7), b"00000007");
        assert_eq!(options.prefix_range_end(), b"\0");
    }
}
