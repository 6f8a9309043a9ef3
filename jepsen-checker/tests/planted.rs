//! Planted anomalies: the generator plants each Elle anomaly after a valid background;
//! the checker must name it, and must find nothing in the background alone.

use jepsen_checker::elle::{self, Consistency, TxnModel};
use jepsen_checker::gen;

fn kinds(src: &str, model: TxnModel, c: Consistency) -> (bool, Vec<String>) {
    let h = jepsen_checker::parse(src, None).expect("generated history parses");
    let rep = elle::check(&h, model, c).expect("checks");
    (rep.valid, rep.anomalies.iter().map(|a| a.kind.clone()).collect())
}

#[test]
fn background_is_clean() {
    for seed in 0..20 {
        let opts = gen::ListAppendOpts { txns: 300, ..Default::default() };
        let ev = gen::list_append(&opts, seed);
        for src in [gen::to_edn(&ev), gen::to_jsonl(&ev)] {
            let (valid, found) = kinds(&src, TxnModel::ListAppend, Consistency::StrictSerializable);
            assert!(valid && found.is_empty(), "seed {seed}: {found:?}");
        }
    }
}

#[test]
fn every_planted_anomaly_is_named() {
    for kind in gen::PLANTABLE {
        for seed in 0..5 {
            let ev = gen::planted(kind, 200, seed).expect("plantable");
            let (valid, found) = kinds(&gen::to_edn(&ev), TxnModel::ListAppend, Consistency::StrictSerializable);
            assert!(!valid, "{kind} (seed {seed}) not detected");
            assert!(found.iter().any(|k| k == kind), "{kind} (seed {seed}): found {found:?}");
            // Every explanation names the anomaly and says which transactions.
            let h = jepsen_checker::parse(&gen::to_edn(&ev), None).unwrap();
            let rep = elle::check(&h, TxnModel::ListAppend, Consistency::StrictSerializable).unwrap();
            for a in &rep.anomalies {
                assert!(!a.txns.is_empty() && a.explanation.contains('T'), "{a:?}");
            }
        }
    }
}

#[test]
fn consistency_models_decide_what_counts() {
    let src = |k: &str| gen::to_edn(&gen::planted(k, 50, 1).unwrap());
    use Consistency::*;
    // Write skew is fine under snapshot isolation, not under serializability.
    assert!(kinds(&src("G2-item"), TxnModel::ListAppend, SnapshotIsolation).0);
    assert!(!kinds(&src("G2-item"), TxnModel::ListAppend, Serializable).0);
    // Read skew (G-single) and lost updates break snapshot isolation.
    assert!(!kinds(&src("G-single"), TxnModel::ListAppend, SnapshotIsolation).0);
    assert!(kinds(&src("G-single"), TxnModel::ListAppend, ReadCommitted).0);
    assert!(!kinds(&src("lost-update"), TxnModel::ListAppend, SnapshotIsolation).0);
    // Aborted reads break everything.
    assert!(!kinds(&src("G1a"), TxnModel::ListAppend, ReadCommitted).0);
    // A realtime-only cycle only matters for strict serializability.
    assert!(kinds(&src("G-single-realtime"), TxnModel::ListAppend, Serializable).0);
    assert!(!kinds(&src("G-single-realtime"), TxnModel::ListAppend, StrictSerializable).0);
    // G-nonadjacent breaks snapshot isolation.
    assert!(!kinds(&src("G-nonadjacent"), TxnModel::ListAppend, SnapshotIsolation).0);
}

fn rw(lines: &[&str]) -> String {
    lines.join("\n")
}

#[test]
fn rw_register_anomalies() {
    use Consistency::*;
    // Write skew: both read x=nil,y=nil; one writes x, the other y.
    let skew = rw(&[
        "{:process 0 :type :invoke :f :txn :value [[:r :x nil] [:r :y nil] [:w :x 1]]}",
        "{:process 1 :type :invoke :f :txn :value [[:r :x nil] [:r :y nil] [:w :y 1]]}",
        "{:process 0 :type :ok :f :txn :value [[:r :x nil] [:r :y nil] [:w :x 1]]}",
        "{:process 1 :type :ok :f :txn :value [[:r :x nil] [:r :y nil] [:w :y 1]]}",
    ]);
    let (valid, found) = kinds(&skew, TxnModel::RwRegister, Serializable);
    assert!(!valid && found.contains(&"G2-item".to_string()), "{found:?}");
    assert!(kinds(&skew, TxnModel::RwRegister, SnapshotIsolation).0);

    let aborted = rw(&[
        "{:process 0 :type :invoke :f :txn :value [[:w :x 1]]}",
        "{:process 0 :type :fail :f :txn :value [[:w :x 1]]}",
        "{:process 1 :type :invoke :f :txn :value [[:r :x nil]]}",
        "{:process 1 :type :ok :f :txn :value [[:r :x 1]]}",
    ]);
    assert_eq!(kinds(&aborted, TxnModel::RwRegister, ReadCommitted), (false, vec!["G1a".to_string()]));

    let lost = rw(&[
        "{:process 0 :type :invoke :f :txn :value [[:r :x nil] [:w :x 1]]}",
        "{:process 1 :type :invoke :f :txn :value [[:r :x nil] [:w :x 2]]}",
        "{:process 0 :type :ok :f :txn :value [[:r :x 0] [:w :x 1]]}",
        "{:process 1 :type :ok :f :txn :value [[:r :x 0] [:w :x 2]]}",
    ]);
    let (valid, found) = kinds(&lost, TxnModel::RwRegister, SnapshotIsolation);
    assert!(!valid && found.contains(&"lost-update".to_string()), "{found:?}");

    let intermediate = rw(&[
        "{:process 0 :type :invoke :f :txn :value [[:w :x 1] [:w :x 2]]}",
        "{:process 0 :type :ok :f :txn :value [[:w :x 1] [:w :x 2]]}",
        "{:process 1 :type :invoke :f :txn :value [[:r :x nil]]}",
        "{:process 1 :type :ok :f :txn :value [[:r :x 1]]}",
    ]);
    assert!(kinds(&intermediate, TxnModel::RwRegister, ReadCommitted).1.contains(&"G1b".to_string()));

    let internal = rw(&[
        "{:process 0 :type :invoke :f :txn :value [[:w :x 1] [:r :x nil]]}",
        "{:process 0 :type :ok :f :txn :value [[:w :x 1] [:r :x 3]]}",
    ]);
    assert!(kinds(&internal, TxnModel::RwRegister, ReadCommitted).1.contains(&"internal".to_string()));
}

#[test]
fn bank_totals() {
    use jepsen_checker::bank::{check, BankConfig};
    let src = rw(&[
        "{:process 0 :type :invoke :f :read :value nil}",
        "{:process 0 :type :ok :f :read :value {0 50 1 50}}",
        "{:process 1 :type :invoke :f :transfer :value {:from 0 :to 1 :amount 10}}",
        "{:process 1 :type :ok :f :transfer :value {:from 0 :to 1 :amount 10}}",
        "{:process 0 :type :invoke :f :read :value nil}",
        "{:process 0 :type :ok :f :read :value {0 40 1 60}}",
        "{:process 0 :type :invoke :f :read :value nil}",
        "{:process 0 :type :ok :f :read :value {0 -10 1 110}}",
    ]);
    let h = jepsen_checker::parse(&src, None).unwrap();
    let ok = check(&h, &BankConfig::default()).unwrap();
    assert!(ok.anomalies.is_empty(), "{:?}", ok.anomalies);
    let neg = check(&h, &BankConfig { total: None, negative_forbidden: true }).unwrap();
    assert_eq!(neg.anomalies.len(), 1);
    assert_eq!(neg.anomalies[0].kind, "negative-balance");
    let wrong = check(&h, &BankConfig { total: Some(90), negative_forbidden: false }).unwrap();
    assert_eq!(wrong.anomalies.len(), 3);
    assert!(wrong.anomalies.iter().all(|a| a.kind == "wrong-total"));
}
