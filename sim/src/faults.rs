//! The safety phase's fault loop: one fault at a time from the enabled families, held for a
//! random while, then undone — so at most one node is down or cut off at once and the
//! cluster can always recover (never more than a minority of a region's replicas).

use crate::cluster::Cluster;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::time::Duration;
use tokio::time::{sleep, Instant};

/// Runs faults from `families` against `targets` until `until`.
pub async fn run(cluster: &mut Cluster, targets: &[String], families: &[String], until: Instant, rng: &mut ChaCha8Rng) {
    if targets.is_empty() {
        return;
    }
    while Instant::now() < until {
        sleep(Duration::from_millis(rng.gen_range(200..2000))).await;
        if families.is_empty() {
            continue;
        }
        let family = families[rng.gen_range(0..families.len())].as_str();
        let target = targets[rng.gen_range(0..targets.len())].as_str();
        let hold = Duration::from_millis(rng.gen_range(100..4000));
        match family {
            "kill" => {
                cluster.kill(target, rng);
                sleep(hold).await;
                cluster.restart(target);
            }
            "partition" => {
                if rng.gen_bool(0.7) {
                    cluster.isolate(target);
                } else {
                    let other = targets[rng.gen_range(0..targets.len())].as_str();
                    if other != target {
                        cluster.partition_one_way(target, other);
                    }
                }
                sleep(hold).await;
                cluster.heal();
            }
            "loss" => {
                cluster.set_packet_loss(rng.gen_range(0.05..0.3));
                sleep(hold).await;
                cluster.set_packet_loss(0.0);
            }
            "pause" => {
                cluster.pause(target);
                sleep(hold).await;
                cluster.resume(target);
            }
            "skew" => cluster.skew_clock(target, rng.gen_range(-5_000..5_000)),
            other => panic!("unknown fault family {other}"),
        }
    }
}
