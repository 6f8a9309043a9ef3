//! keel binary
fn main() {}
