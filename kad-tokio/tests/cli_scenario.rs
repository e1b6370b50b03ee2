//! Issue 18's CLI scenario, short: five `kad node` processes, three keys each put by a
//! one-shot `kad put` through a random node and got by a `kad get` through another. Only
//! that every key is found is checked; the timed run is the `cli_scenario` example
//! (BENCHMARKS.md). Needs the `cli` feature: `cargo test -p kad-tokio --features cli`.

#[path = "../examples/cli_scenario/scenario.rs"]
mod scenario;

#[test]
fn every_key_put_by_one_kad_process_is_got_by_another() {
    let opts = scenario::Options {
        kad: env!("CARGO_BIN_EXE_kad").into(),
        nodes: 5,
        keys: 3,
        dead: 0,
        seed: 7,
        logs: None,
        client_args: Vec::new(),
    };
    let summary = scenario::run(&opts).expect("the scenario runs");
    println!("{summary}");
    assert!(summary.failures.is_empty(), "{:#?}", summary.failures);
    assert_eq!(summary.stored, 3, "{summary}");
    assert_eq!(summary.found, 3, "{summary}");
}
