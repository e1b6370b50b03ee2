//! Codec timing by samples: 300 samples (or the first argument) of 500 iterations each,
//! printing the minimum, 10th percentile and median nanoseconds per call of encode, decode
//! and encode+decode, for a 20-peer `find_node_res` in both formats and a JSON `ping`.
//!
//! ```text
//! cargo run --release -p kad-core --features bench --example codec_samples [-- 300]
//! ```
//!
//! On a shared machine the minimum and the low percentiles are steadier than criterion's
//! mean (BENCHMARKS.md §1); run two builds one after the other, twice, to compare them.

use std::hint::black_box;
use std::time::Instant;

use kad_core::bench::CodecCase;
use kad_core::Codec;

// A timing tool reads the clock; kad-core itself never does.
#[allow(clippy::disallowed_methods)]
fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(300)
        .max(1);
    let cases = [
        (Codec::Json, "find_node_res"),
        (Codec::Bencode, "find_node_res"),
        (Codec::Json, "ping"),
    ];
    for (codec, kind) in cases {
        let case = CodecCase::new(codec, kind);
        let mut out = Vec::with_capacity(4096);
        let per_sample = 500;
        let mut run = |encode: bool, decode: bool| {
            let mut samples: Vec<f64> = (0..rounds)
                .map(|_| {
                    let t = Instant::now();
                    for _ in 0..per_sample {
                        if encode {
                            black_box(case.encode(&mut out));
                        }
                        if decode {
                            black_box(case.decode());
                        }
                    }
                    t.elapsed().as_nanos() as f64 / f64::from(per_sample)
                })
                .collect();
            samples.sort_by(f64::total_cmp);
            format!(
                "min {:.0} p10 {:.0} med {:.0}",
                samples[0],
                samples[rounds / 10],
                samples[rounds / 2]
            )
        };
        let e = run(true, false);
        let d = run(false, true);
        let ed = run(true, true);
        println!("{codec}/{kind} ns: enc {e} | dec {d} | enc+dec {ed}");
    }
}
