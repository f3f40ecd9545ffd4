//! Attack tests from the security review (README "Security"): each test performs an
//! attack against real servers on loopback and checks that it no longer works. One test
//! binary, one module per group of the review.

#[path = "../common/mod.rs"]
mod common;

mod exhaustion;
mod guild;
mod peers;
mod tokens_devices;
