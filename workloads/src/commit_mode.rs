//! How a workload transaction commits: drawn per transaction, so 2PC, async commit and 1PC
//! all run against each other in one history.

use keel_client::TransactionOptions;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Options for the next transaction: async commit a quarter of the time, 1PC (when every
/// key lives in one region) a quarter, plain 2PC otherwise. Draws one number from `rng`.
pub(crate) fn random_options(rng: &mut ChaCha8Rng) -> TransactionOptions {
    match rng.gen_range(0..4) {
        0 => TransactionOptions { async_commit: true, ..TransactionOptions::default() },
        1 => TransactionOptions { try_one_pc: true, ..TransactionOptions::default() },
        _ => TransactionOptions::default(),
    }
}
