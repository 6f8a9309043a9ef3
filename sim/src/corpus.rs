//! The regression seed corpus (`ci/seeds.toml`): seeds that once found a bug, replayed on
//! every CI run. The file is a small TOML subset — `[[seed]]` tables of `key = value` lines
//! (integers, booleans, double-quoted strings) and `#` comments — read here without a TOML
//! dependency.

use crate::runner::RunConfig;
use keel_types::planted::PlantedBug;

/// One corpus entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorpusSeed {
    /// Seed.
    pub seed: u64,
    /// Workload.
    pub workload: String,
    /// Comma-separated fault families ("none" or empty for none).
    pub nemesis: String,
    /// Simulated seconds of the safety phase.
    pub duration: u64,
    /// Storage nodes.
    pub stores: usize,
    /// BUGGIFY on.
    pub buggify: bool,
    /// Mean milliseconds between faults.
    pub fault_gap_ms: u64,
    /// A planted bug the entry must catch (then it passes only if the run FAILS).
    pub planted_bug: Option<String>,
    /// What the seed found.
    pub note: String,
}

impl CorpusSeed {
    /// The run this entry describes.
    pub fn config(&self) -> Result<RunConfig, String> {
        let families: Vec<&str> = match self.nemesis.as_str() {
            "" | "none" => vec![],
            list => list.split(',').map(str::trim).collect(),
        };
        let mut cfg = RunConfig::new(self.seed, &self.workload, &families, self.duration);
        cfg.stores = self.stores;
        cfg.buggify = self.buggify;
        cfg.fault_gap_ms = self.fault_gap_ms;
        cfg.planted = match &self.planted_bug {
            None => None,
            Some(name) => Some(PlantedBug::from_name(name).ok_or_else(|| format!("unknown planted bug {name:?}"))?),
        };
        Ok(cfg)
    }
}

/// Parses a corpus file's text.
pub fn parse(text: &str) -> Result<Vec<CorpusSeed>, String> {
    let mut entries: Vec<Vec<(String, String)>> = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = strip_comment(raw).trim();
        if line.is_empty() {
            continue;
        }
        if line == "[[seed]]" {
            entries.push(Vec::new());
            continue;
        }
        let (key, value) =
            line.split_once('=').ok_or_else(|| format!("line {}: expected key = value: {raw}", n + 1))?;
        let entry = entries.last_mut().ok_or_else(|| format!("line {}: key outside a [[seed]] table", n + 1))?;
        entry.push((key.trim().to_string(), value.trim().to_string()));
    }
    entries.into_iter().enumerate().map(|(i, kv)| entry(i, &kv)).collect()
}

fn strip_comment(line: &str) -> &str {
    let mut in_string = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => in_string = !in_string,
            '#' if !in_string => return &line[..i],
            _ => {}
        }
    }
    line
}

/// The keys a corpus entry may have; anything else is a mistake (a misspelt key would
/// otherwise silently replay the default).
const KNOWN_KEYS: [&str; 9] =
    ["seed", "workload", "nemesis", "duration", "stores", "buggify", "fault_gap_ms", "planted_bug", "note"];

fn entry(i: usize, kv: &[(String, String)]) -> Result<CorpusSeed, String> {
    if let Some((bad, _)) = kv.iter().find(|(k, _)| !KNOWN_KEYS.contains(&k.as_str())) {
        return Err(format!("entry {}: unknown key {bad:?}; known: {}", i + 1, KNOWN_KEYS.join(", ")));
    }
    let get = |k: &str| kv.iter().rev().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    let string = |k: &str| -> Result<Option<String>, String> {
        match get(k) {
            None => Ok(None),
            Some(v) => v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .map(|v| Some(v.to_string()))
                .ok_or_else(|| format!("entry {}: {k} must be a quoted string", i + 1)),
        }
    };
    let int = |k: &str| -> Result<Option<u64>, String> {
        get(k).map(|v| v.replace('_', "").parse::<u64>().map_err(|e| format!("entry {}: {k}: {e}", i + 1))).transpose()
    };
    let boolean = |k: &str| -> Result<bool, String> {
        match get(k) {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(v) => Err(format!("entry {}: {k} must be true or false, not {v}", i + 1)),
        }
    };
    Ok(CorpusSeed {
        seed: int("seed")?.ok_or_else(|| format!("entry {}: no seed", i + 1))?,
        workload: string("workload")?.ok_or_else(|| format!("entry {}: no workload", i + 1))?,
        nemesis: string("nemesis")?.unwrap_or_else(|| "none".into()),
        duration: int("duration")?.unwrap_or(30),
        stores: int("stores")?.unwrap_or(crate::runner::STORES_DEFAULT as u64) as usize,
        buggify: boolean("buggify")?,
        fault_gap_ms: int("fault_gap_ms")?.unwrap_or(keel_nemesis::MEAN_GAP_DEFAULT.as_millis() as u64),
        planted_bug: string("planted_bug")?,
        note: string("note")?.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_shape() {
        let text = r#"
# comment
[[seed]]
seed = 1_234
workload = "register"   # trailing
nemesis = "kill,partition"
duration = 20
buggify = true
note = "a # inside a string"

[[seed]]
seed = 5
workload = "counter"
"#;
        let seeds = parse(text).unwrap();
        assert_eq!(seeds.len(), 2);
        assert_eq!(seeds[0].seed, 1234);
        assert_eq!(seeds[0].nemesis, "kill,partition");
        assert!(seeds[0].buggify);
        assert_eq!(seeds[0].note, "a # inside a string");
        assert_eq!(seeds[1].nemesis, "none");
        assert_eq!(seeds[1].duration, 30);
        assert!(parse("seed = 1").is_err());
        assert!(parse("[[seed]]\nworkload = \"x\"").is_err());
        let misspelt = parse("[[seed]]\nseed = 1\nworkload = \"register\"\nfault_gap = 4000");
        assert!(misspelt.is_err_and(|e| e.contains("fault_gap")));
    }
}
