//! Encode and decode cost per message kind and wire format.
//! Run: `cargo bench -p kad-core --features bench --bench codec`

// criterion_group! generates an undocumented function.
#![allow(missing_docs)]

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use kad_core::bench::CodecCase;
use kad_core::Codec;

fn codec(c: &mut Criterion) {
    for codec in [Codec::Json, Codec::Bencode] {
        for kind in ["ping", "find_node_res", "set_text", "set_bytes"] {
            let case = CodecCase::new(codec, kind);
            let mut out = Vec::with_capacity(4096);
            let mut g = c.benchmark_group(format!("{codec}/{kind} ({} B)", case.encoded_len()));
            g.bench_function("encode", |b| b.iter(|| black_box(case.encode(&mut out))));
            g.bench_function("decode", |b| b.iter(|| black_box(case.decode())));
            g.bench_function("encode+decode", |b| {
                b.iter(|| {
                    black_box(case.encode(&mut out));
                    black_box(case.decode())
                })
            });
            g.finish();
        }
    }
}

criterion_group!(benches, codec);
criterion_main!(benches);
