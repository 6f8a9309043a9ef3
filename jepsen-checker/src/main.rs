//! stub
fn main() {
    let path = std::env::args().nth(1).unwrap();
    let model = std::env::args().nth(2).unwrap();
    let src = std::fs::read_to_string(&path).unwrap();
    let h = jepsen_checker::parse(&src, None).unwrap();
    let mut cfg = jepsen_checker::linear::LinConfig::default();
    if model == "knossos" { cfg.initial = Some(jepsen_checker::Value::Int(0)); cfg.nil_read = jepsen_checker::linear::NilRead::Any; }
    if model == "kv" { cfg.model = jepsen_checker::linear::LinModel::Kv; }
    if model == "kvnp" { cfg.model = jepsen_checker::linear::LinModel::Kv; cfg.partition = false; cfg.time_limit = Some(std::time::Duration::from_secs(20)); }
    let t = std::time::Instant::now();
    let r = jepsen_checker::linear::check(&h, &cfg).unwrap();
    let v = match &r.verdict { jepsen_checker::linear::LinVerdict::Valid => "valid".to_string(), jepsen_checker::linear::LinVerdict::Invalid(_) => "INVALID".into(), jepsen_checker::linear::LinVerdict::Unknown(u) => format!("unknown {u}") };
    println!("{path} {v} {:?} configs={}", t.elapsed(), r.configs);
}
