//! Every limit in keel has a name here, units last, so a reader can find and test the edge.

/// Largest key a client may write, in bytes (TiKV's default is also 8 KiB for raw keys).
pub const KEY_SIZE_MAX_BYTES: usize = 8 * 1024;
/// Largest value a client may write, in bytes.
pub const VALUE_SIZE_MAX_BYTES: usize = 8 * 1024 * 1024;
/// Largest `limit` a scan may ask for.
pub const SCAN_LIMIT_MAX: usize = 10_240;
/// Most keys one batch request may carry.
pub const BATCH_KEYS_MAX: usize = 10_240;
/// Largest RPC frame accepted on the wire, in bytes. Bigger frames close the connection.
pub const FRAME_SIZE_MAX_BYTES: usize = 64 * 1024 * 1024;
/// Most RPC calls one connection may have in flight before callers wait.
pub const RPC_IN_FLIGHT_MAX: usize = 4096;

const _: () = assert!(VALUE_SIZE_MAX_BYTES + KEY_SIZE_MAX_BYTES < FRAME_SIZE_MAX_BYTES);
