//! A worker and a client in one process: store a value on the worker, read
//! it back over QUIC, print the worker's stats.

use std::time::Instant;

use mempool_arrays::PrimitiveArray;
use mempool_core::{Pool, PoolConfig};
use mempool_net::{BlockingClient, ClusterSecret, Worker, WorkerConfig, WorkerId};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("mempool-net-example-{}", std::process::id()));
    let secret = ClusterSecret::generate()?;
    let t = Instant::now();
    let pool = Pool::new(PoolConfig::default().spill_dir(&dir))?;
    let worker = Worker::spawn(pool, WorkerConfig::new(WorkerId(1), secret.clone()))?;
    println!("worker up in {:?}", t.elapsed());
    let t = Instant::now();
    let client = BlockingClient::new(secret, [(WorkerId(1), worker.addr())])?;
    let r = client.set_on(WorkerId(1), &PrimitiveArray::from(vec![1.5f64; 1 << 20]))?;
    println!("set {r} in {:?} (connect included)", t.elapsed());
    for _ in 0..std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(3)
    {
        let t = Instant::now();
        let back: PrimitiveArray<f64> = client.get(&r)?;
        assert_eq!(back.values()[12345], 1.5);
        println!("get 8 MiB in {:?}", t.elapsed());
    }
    let t = Instant::now();
    println!("{:?}", client.stats(WorkerId(1))?);
    println!("stats in {:?}", t.elapsed());
    let t = Instant::now();
    drop(client);
    worker.shutdown();
    println!("shutdown in {:?}", t.elapsed());
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}
