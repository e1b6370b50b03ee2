//! Routing-table insert and closest-k on tables that have heard from 200 to 100,000 peers.
//! Run: `cargo bench -p kad-core --features bench --bench routing`

// A benchmark needs one real instant as a base.
#![allow(clippy::disallowed_methods)]
// criterion_group! generates an undocumented function.
#![allow(missing_docs)]

use std::time::Instant;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use kad_core::bench::RoutingCase;

fn routing(c: &mut Criterion) {
    for known in [200usize, 1_000, 10_000, 100_000] {
        let mut case = RoutingCase::new(known, Instant::now());
        let mut g = c.benchmark_group(format!("routing/{known} heard, {} held", case.len()));
        let mut i = 0;
        g.bench_function("insert", |b| {
            b.iter(|| {
                i += 7919;
                case.insert(i)
            })
        });
        g.bench_function("closest-20", |b| b.iter(|| black_box(case.closest())));
        g.finish();
    }
}

criterion_group!(benches, routing);
criterion_main!(benches);
