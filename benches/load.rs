//! A load test on loopback: many concurrent clients, each on its own
//! kept-alive mutual-TLS HTTP/2 connection, sending a fixed number of
//! requests one after another, against the zt stack and against plain
//! tokio-rustls + axum (see `stack.rs`), in the same run. Bounded in count:
//! `ZT_LOAD_CLIENTS` clients (default 32) × `ZT_LOAD_REQUESTS` requests
//! (default 300) per stack.
//!
//! ```text
//! cargo bench --bench load
//! ```
//!
//! The zt stack, `ZtServer` alone (no `AuthorizeLayer`) and plain take
//! turns for `ZT_LOAD_ROUNDS` rounds (default 3), the order reversed every
//! round. Prints requests per second and p50/p99/max latency of each
//! stack's median round side by side, and `load zt/plain = R` (zt's
//! throughput over plain's).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_precision_loss,
    reason = "bench code"
)]

use std::time::{Duration, Instant};

#[path = "stack.rs"]
#[allow(
    dead_code,
    reason = "the in-process helpers of the stacks serve the request bench"
)]
mod stack;

use stack::{Env, Stack};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Run {
    rps: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

async fn run(env: &Env, stack: Stack, clients: usize, requests: usize) -> Run {
    let addr = env.serve(stack).await;
    let mut conns = Vec::with_capacity(clients);
    for _ in 0..clients {
        let mut conn = env.connect(stack, addr).await;
        conn.request().await;
        conns.push(conn);
    }
    let started = Instant::now();
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|mut conn| {
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(requests);
                for _ in 0..requests {
                    let t = Instant::now();
                    conn.request().await;
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::with_capacity(clients * requests);
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed();
    all.sort_unstable();
    let at = |q: f64| all[((all.len() - 1) as f64 * q) as usize];
    Run {
        rps: all.len() as f64 / elapsed.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
        max: all[all.len() - 1],
    }
}

fn main() {
    // `cargo test --benches` runs bench targets with `--bench` absent:
    // one tiny round then, to check the stacks answer.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let clients = if smoke {
        2
    } else {
        env_usize("ZT_LOAD_CLIENTS", 32)
    };
    let requests = if smoke {
        5
    } else {
        env_usize("ZT_LOAD_REQUESTS", 300)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let env = Env::new();
    println!(
        "load: {clients} clients x {requests} requests each, one HTTP/2 connection per client, {} worker threads",
        std::thread::available_parallelism().map_or(1, usize::from)
    );
    // The stacks take turns, in an order reversed every round, so none is
    // always first on a cold process or last on a hot machine; each
    // stack's figures are those of its median round by throughput.
    let stacks = [
        ("zt", Stack::Zt),
        ("zt-bare", Stack::ZtBare),
        ("plain", Stack::Plain),
    ];
    let rounds = if smoke {
        1
    } else {
        env_usize("ZT_LOAD_ROUNDS", 3).max(1)
    };
    let mut runs: Vec<Vec<Run>> = stacks.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        let mut order: Vec<usize> = (0..stacks.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let r = runtime.block_on(run(&env, stacks[i].1, clients, requests));
            runs[i].push(r);
        }
    }
    let mut medians = Vec::new();
    for ((name, _), mut runs) in stacks.iter().zip(runs) {
        runs.sort_by(|a, b| a.rps.total_cmp(&b.rps));
        let r = runs.swap_remove(runs.len() / 2);
        println!(
            "load {name:>7}: {:>8.0} req/s  p50 {:>7.1} µs  p99 {:>7.1} µs  max {:>8.1} µs  (median of {rounds} rounds)",
            r.rps,
            r.p50.as_secs_f64() * 1e6,
            r.p99.as_secs_f64() * 1e6,
            r.max.as_secs_f64() * 1e6
        );
        medians.push(r.rps);
    }
    println!(
        "load zt/plain = {:.3} (ZtServer alone, no AuthorizeLayer: zt-bare/plain = {:.3})",
        medians[0] / medians[2],
        medians[1] / medians[2]
    );
}
