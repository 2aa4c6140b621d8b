//! till's integration tests: one binary, one module per area, all driving the real `till`
//! executable in a throwaway `TILL_HOME` (see [`support::TestEnv`]).

mod support;

mod agents;
mod attack;
mod cli;
mod framing;
mod keychain;
mod keys;
mod layers;
mod lifecycle;
mod prices;
mod prompt;
mod proxy;
mod rotate;
mod run;
mod sandbox;
mod sdk;
mod secrets;
mod usage;
mod wording;
mod ws;
