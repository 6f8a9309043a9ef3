//! TOML configuration files for `keel pd` and `keel server` (`--config FILE`), and
//! `--config-check`, which validates a file and names every bad key.
//!
//! Keys are TiKV-style kebab-case at the top level of the file (see
//! `engine/cli/keel-server.example.toml` and `keel-pd.example.toml`). A flag given on the
//! command line overrides the file; the file overrides the built-in default. Unknown keys
//! and values of the wrong type or out of range are errors — all of them are reported at
//! once, not only the first.

use crate::process::{PdArgs, ServerArgs};
use clap::parser::ValueSource;
use clap::ArgMatches;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Largest config file read.
const CONFIG_SIZE_MAX_BYTES: u64 = 1024 * 1024;
/// Most replicas per region a PD accepts.
const MAX_REPLICAS_MAX: usize = 7;

/// The config flags of `keel pd` and `keel server`.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ConfigFlags {
    /// TOML config file; flags given on the command line override its values.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Only validate --config (every bad key is named) and exit: 0 valid, 1 invalid.
    #[arg(long, requires = "config")]
    pub config_check: bool,
}

/// Keys of a `keel pd` config file.
const PD_KEYS: &[&str] =
    &["addr", "advertise-addr", "status-addr", "data-dir", "max-replicas", "merge-regions", "members", "log-level"];
/// Keys of a `keel server` config file.
const SERVER_KEYS: &[&str] =
    &["pd-endpoints", "addr", "advertise-addr", "status-addr", "data-dir", "labels", "log-level", "hibernate-regions"];

/// What a `keel pd` config file sets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PdFile {
    /// `addr`.
    pub addr: Option<String>,
    /// `advertise-addr`.
    pub advertise_addr: Option<String>,
    /// `status-addr`.
    pub status_addr: Option<String>,
    /// `data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `max-replicas`.
    pub max_replicas: Option<usize>,
    /// `merge-regions`.
    pub merge_regions: Option<bool>,
    /// `members`.
    pub members: Option<Vec<String>>,
    /// `log-level`.
    pub log_level: Option<String>,
}

/// What a `keel server` config file sets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerFile {
    /// `pd-endpoints`.
    pub pd_endpoints: Option<Vec<String>>,
    /// `addr`.
    pub addr: Option<String>,
    /// `advertise-addr`.
    pub advertise_addr: Option<String>,
    /// `status-addr`.
    pub status_addr: Option<String>,
    /// `data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `labels`, a table such as `{ zone = "a", host = "h1" }`.
    pub labels: Option<BTreeMap<String, String>>,
    /// `log-level`.
    pub log_level: Option<String>,
    /// `hibernate-regions`.
    pub hibernate_regions: Option<bool>,
}

/// Collects every problem of one file.
struct Checker {
    table: toml::Table,
    errors: Vec<String>,
}

impl Checker {
    fn parse(text: &str, known: &[&str]) -> Result<Checker, Vec<String>> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| vec![e.to_string()])?;
        let errors = table
            .keys()
            .filter(|k| !known.contains(&k.as_str()))
            .map(|k| format!("unknown key `{k}` (known keys: {})", known.join(", ")))
            .collect();
        Ok(Checker { table, errors })
    }

    fn get<T: DeserializeOwned>(&mut self, key: &str, expected: &str) -> Option<T> {
        let value = self.table.get(key)?.clone();
        match value.try_into::<T>() {
            Ok(v) => Some(v),
            Err(_) => {
                self.errors.push(format!("key `{key}`: expected {expected}"));
                None
            }
        }
    }

    fn address(&mut self, key: &str) -> Option<String> {
        let addr: String = self.get(key, "a string \"host:port\"")?;
        match addr.rsplit_once(':').map(|(host, port)| (host, port.parse::<u16>())) {
            Some((host, Ok(_))) if !host.is_empty() => Some(addr),
            _ => {
                self.errors.push(format!("key `{key}`: {addr:?} is not \"host:port\""));
                None
            }
        }
    }

    fn log_level(&mut self) -> Option<String> {
        let level: String = self.get("log-level", "a string")?;
        if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
            self.errors.push(format!("key `log-level`: {level:?} is not a log filter"));
            return None;
        }
        Some(level)
    }

    fn finish<T>(self, value: T) -> Result<T, Vec<String>> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(self.errors)
        }
    }
}

/// Parses and validates a `keel pd` config file's text.
pub fn parse_pd(text: &str) -> Result<PdFile, Vec<String>> {
    let mut c = Checker::parse(text, PD_KEYS)?;
    let max_replicas: Option<usize> = c.get("max-replicas", "a positive integer");
    if let Some(n) = max_replicas.filter(|n| *n == 0 || *n > MAX_REPLICAS_MAX) {
        c.errors.push(format!("key `max-replicas`: must be 1..={MAX_REPLICAS_MAX}, got {n}"));
    }
    let file = PdFile {
        addr: c.address("addr"),
        advertise_addr: c.address("advertise-addr"),
        status_addr: c.address("status-addr"),
        data_dir: c.get("data-dir", "a path string"),
        max_replicas,
        merge_regions: c.get("merge-regions", "true or false"),
        members: c.get("members", "an array of \"host:port\" strings"),
        log_level: c.log_level(),
    };
    c.finish(file)
}

/// Parses and validates a `keel server` config file's text.
pub fn parse_server(text: &str) -> Result<ServerFile, Vec<String>> {
    let mut c = Checker::parse(text, SERVER_KEYS)?;
    let pd_endpoints: Option<Vec<String>> = c.get("pd-endpoints", "an array of \"host:port\" strings");
    if pd_endpoints.as_ref().is_some_and(Vec::is_empty) {
        c.errors.push("key `pd-endpoints`: must name at least one PD".into());
    }
    let labels: Option<BTreeMap<String, String>> = c.get("labels", "a table of string values, e.g. { zone = \"a\" }");
    if labels.as_ref().is_some_and(|l| l.keys().any(String::is_empty)) {
        c.errors.push("key `labels`: label names must not be empty".into());
    }
    let file = ServerFile {
        pd_endpoints,
        addr: c.address("addr"),
        advertise_addr: c.address("advertise-addr"),
        status_addr: c.address("status-addr"),
        data_dir: c.get("data-dir", "a path string"),
        labels,
        log_level: c.log_level(),
        hibernate_regions: c.get("hibernate-regions", "true or false"),
    };
    c.finish(file)
}

fn read(path: &Path) -> Result<String, Vec<String>> {
    let size = std::fs::metadata(path).map_err(|e| vec![format!("cannot read {}: {e}", path.display())])?.len();
    if size > CONFIG_SIZE_MAX_BYTES {
        return Err(vec![format!(
            "{} is {size} bytes; a config file may have at most {CONFIG_SIZE_MAX_BYTES}",
            path.display()
        )]);
    }
    std::fs::read_to_string(path).map_err(|e| vec![format!("cannot read {}: {e}", path.display())])
}

/// Formats a file's problems as one error message.
pub fn report(path: &Path, errors: &[String]) -> String {
    let mut out = format!("{}: {} problem(s)", path.display(), errors.len());
    for e in errors {
        out.push_str("\n  - ");
        out.push_str(e);
    }
    out
}

/// Loads a `keel pd` config file.
pub fn load_pd(path: &Path) -> Result<PdFile, String> {
    read(path).and_then(|t| parse_pd(&t)).map_err(|e| report(path, &e))
}

/// Loads a `keel server` config file.
pub fn load_server(path: &Path) -> Result<ServerFile, String> {
    read(path).and_then(|t| parse_server(&t)).map_err(|e| report(path, &e))
}

/// Whether the flag with this id was given on the command line (not defaulted).
fn from_cli(matches: &ArgMatches, id: &str) -> bool {
    matches.value_source(id) == Some(ValueSource::CommandLine)
}

/// Sets `slot` to the file's value, unless the flag `id` was given on the command line.
fn fill<T>(slot: &mut T, from_file: Option<T>, matches: &ArgMatches, id: &str) {
    if let Some(v) = from_file.filter(|_| !from_cli(matches, id)) {
        *slot = v;
    }
}

/// Fills in `args` from the file wherever the command line did not set a flag.
pub fn merge_pd(args: &mut PdArgs, file: PdFile, matches: &ArgMatches) {
    fill(&mut args.addr, file.addr, matches, "addr");
    fill(&mut args.advertise_addr, file.advertise_addr.map(Some), matches, "advertise_addr");
    fill(&mut args.status_addr, file.status_addr, matches, "status_addr");
    fill(&mut args.data_dir, file.data_dir, matches, "data_dir");
    fill(&mut args.max_replicas, file.max_replicas, matches, "max_replicas");
    fill(&mut args.merge_regions, file.merge_regions, matches, "merge_regions");
    fill(&mut args.members, file.members, matches, "members");
}

/// Fills in `args` from the file wherever the command line did not set a flag.
pub fn merge_server(args: &mut ServerArgs, file: ServerFile, matches: &ArgMatches) {
    fill(&mut args.pd, file.pd_endpoints, matches, "pd");
    fill(&mut args.addr, file.addr, matches, "addr");
    fill(&mut args.advertise_addr, file.advertise_addr.map(Some), matches, "advertise_addr");
    fill(&mut args.status_addr, file.status_addr, matches, "status_addr");
    fill(&mut args.data_dir, file.data_dir, matches, "data_dir");
    let labels = file.labels.map(|l| l.into_iter().map(|(k, v)| format!("{k}={v}")).collect());
    fill(&mut args.labels, labels, matches, "labels");
    fill(&mut args.hibernate_regions, file.hibernate_regions, matches, "hibernate_regions");
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, FromArgMatches, Parser};

    #[test]
    fn every_bad_key_is_named() {
        let text = "adr = \"x\"\nmax-replicas = \"three\"\naddr = \"nowhere\"\ndata_dir = \"/d\"\nlog-level = \"[\"\n";
        let errors = parse_pd(text).unwrap_err();
        let all = errors.join("\n");
        for needle in ["`adr`", "`data_dir`", "`max-replicas`", "`addr`", "`log-level`"] {
            assert!(all.contains(needle), "{needle} not named in:\n{all}");
        }
        assert_eq!(errors.len(), 5, "{all}");
    }

    #[test]
    fn server_file_parses_and_checks_values() {
        let ok = parse_server(
            "pd-endpoints = [\"127.0.0.1:2379\"]\naddr = \"127.0.0.1:20160\"\ndata-dir = \"/var/keel\"\n\
             labels = { zone = \"a\", host = \"h1\" }\nlog-level = \"warn\"\n",
        )
        .unwrap();
        assert_eq!(ok.pd_endpoints.as_deref(), Some(&["127.0.0.1:2379".to_string()][..]));
        assert_eq!(ok.labels.unwrap().get("zone").map(String::as_str), Some("a"));
        assert_eq!(ok.hibernate_regions, None);
        assert_eq!(parse_server("hibernate-regions = false").unwrap().hibernate_regions, Some(false));
        let errors =
            parse_server("pd-endpoints = []\nlabels = { zone = 1 }\nhibernate-regions = \"no\"\n").unwrap_err();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(parse_server("addr = ").is_err(), "a TOML syntax error is an error");
    }

    #[test]
    fn max_replicas_is_checked_at_its_edges() {
        assert!(parse_pd("max-replicas = 1").is_ok());
        assert!(parse_pd(&format!("max-replicas = {MAX_REPLICAS_MAX}")).is_ok());
        assert!(parse_pd("max-replicas = 0").is_err());
        assert!(parse_pd(&format!("max-replicas = {}", MAX_REPLICAS_MAX + 1)).is_err());
    }

    #[derive(Parser)]
    struct PdCli {
        #[command(flatten)]
        pd: PdArgs,
    }

    #[test]
    fn merge_regions_is_off_unless_the_file_or_the_flag_says_so() {
        assert_eq!(parse_pd("merge-regions = true").unwrap().merge_regions, Some(true));
        assert!(parse_pd("merge-regions = \"yes\"").is_err());
        let matches = PdCli::command().get_matches_from(["x"]);
        let mut args = PdCli::from_arg_matches(&matches).unwrap().pd;
        assert!(!args.merge_regions, "off by default");
        merge_pd(&mut args, parse_pd("merge-regions = true\nmax-replicas = 5").unwrap(), &matches);
        assert!(args.merge_regions, "the file turns it on");
        assert_eq!(args.max_replicas, 5);
        let matches = PdCli::command().get_matches_from(["x", "--merge-regions", "false"]);
        let mut args = PdCli::from_arg_matches(&matches).unwrap().pd;
        merge_pd(&mut args, parse_pd("merge-regions = true").unwrap(), &matches);
        assert!(!args.merge_regions, "the flag wins");
    }

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        server: ServerArgs,
    }

    #[test]
    fn flags_override_the_file_and_the_file_overrides_defaults() {
        let file = parse_server(
            "pd-endpoints = [\"10.0.0.1:2379\"]\naddr = \"10.0.0.2:20160\"\ndata-dir = \"/file\"\nlabels = { zone = \"z\" }\n\
             hibernate-regions = true\n",
        )
        .unwrap();
        let matches = Cli::command().get_matches_from(["x", "--addr", "127.0.0.1:1", "--labels", "host=h"]);
        let mut args = Cli::from_arg_matches(&matches).unwrap().server;
        merge_server(&mut args, file, &matches);
        assert_eq!(args.addr, "127.0.0.1:1", "flag wins");
        assert_eq!(args.labels, vec!["host=h".to_string()], "flag wins");
        assert_eq!(args.pd, vec!["10.0.0.1:2379".to_string()], "file fills what no flag set");
        assert_eq!(args.data_dir, PathBuf::from("/file"), "file beats the default");
        assert!(args.hibernate_regions, "file beats the default");
        let matches = Cli::command().get_matches_from(["x", "--hibernate-regions", "false"]);
        let mut args = Cli::from_arg_matches(&matches).unwrap().server;
        merge_server(&mut args, parse_server("hibernate-regions = true").unwrap(), &matches);
        assert!(!args.hibernate_regions, "flag wins");
    }

    #[test]
    fn the_example_configs_are_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        load_pd(&dir.join("keel-pd.example.toml")).unwrap();
        load_server(&dir.join("keel-server.example.toml")).unwrap();
    }
}
