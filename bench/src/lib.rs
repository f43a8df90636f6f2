//! prism-bench: the evaluation (`prism-eval`) and the probes and loads it
//! runs. What it shares with the tests lives in prism-testkit.

pub mod eval;
pub mod timing;
