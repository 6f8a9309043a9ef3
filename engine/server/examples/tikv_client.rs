//! A program written against TiKV's official Rust client (tikv-client 0.4), run against keel
//! with nothing changed but the address. Start `cargo run --release -- playground`, then
//! `cargo run --release -p keel-server --example tikv_client`. The README shows this file.

#[cfg(not(madsim))]
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    use tikv_client::{RawClient, TransactionClient};

    let raw = RawClient::new(vec!["127.0.0.1:2379"]).await?;
    raw.put("hello".to_owned(), "world".to_owned()).await?;
    assert_eq!(raw.get("hello".to_owned()).await?, Some(b"world".to_vec()));
    raw.put_with_ttl("session".to_owned(), "token".to_owned(), 60).await?; // gone in 60 s
    println!("session expires in {:?} s", raw.get_key_ttl_secs("session".to_owned()).await?);

    let txns = TransactionClient::new(vec!["127.0.0.1:2379"]).await?;
    let mut txn = txns.begin_optimistic().await?;
    txn.put("account-a".to_owned(), "100".to_owned()).await?;
    txn.commit().await?;
    Ok(())
}

/// The simulator build has no TiKV client (keel speaks only its native protocol there).
#[cfg(madsim)]
fn main() {}
