//! Times `prepare` (decode → statistics → 224² tensor) on files given on the command line, one
//! thread: `cargo run --release -p cxrflow-preprocess --example prepare_files -- [-n RUNS] FILE…`.
//! Prints the median wall ms per file. Useful under `perf record` to see where a syntax's
//! time goes.

use std::time::Instant;

use cxrflow_preprocess::decode::DecodeLimits;
use cxrflow_preprocess::{prepare, Profile};

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut runs = 5usize;
    if args.first().map(String::as_str) == Some("-n") && args.len() >= 2 {
        runs = args[1].parse().expect("-n takes a number");
        args.drain(..2);
    }
    let limits = DecodeLimits::default();
    for path in &args {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
        let mut ms = Vec::with_capacity(runs);
        for _ in 0..runs {
            let t = Instant::now();
            let p = prepare(&bytes, &limits, Profile::default())
                .unwrap_or_else(|e| panic!("{path}: {e}"));
            ms.push(t.elapsed().as_secs_f64() * 1e3);
            std::hint::black_box(p);
        }
        ms.sort_by(f64::total_cmp);
        println!("{path}\t{:.1} ms (median of {runs})", ms[runs / 2]);
    }
}
