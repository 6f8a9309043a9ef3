//! Writes a generated strict-serializable list-append history, for benchmarks:
//! `cargo run --release -p jepsen-checker --example gen -- OUT [TXNS] [edn|jsonl] [SEED]`.

fn main() {
    let mut args = std::env::args().skip(1);
    let out = args.next().expect("usage: gen OUT [TXNS] [edn|jsonl] [SEED]");
    let txns: usize = args.next().map_or(100_000, |s| s.parse().expect("TXNS is a number"));
    let format = args.next().unwrap_or_else(|| "edn".into());
    let seed: u64 = args.next().map_or(1, |s| s.parse().expect("SEED is a number"));
    let opts = jepsen_checker::gen::ListAppendOpts { txns, ..Default::default() };
    let events = jepsen_checker::gen::list_append(&opts, seed);
    let text = match format.as_str() {
        "jsonl" => jepsen_checker::gen::to_jsonl(&events),
        _ => jepsen_checker::gen::to_edn(&events),
    };
    std::fs::write(&out, text).expect("write output");
    eprintln!("wrote {txns} transactions to {out}");
}
