//! Integration tests: one binary, one module per area, each running the real `till` binary.

mod secrets;
