//! Attack tests from the security review (docs/security.md): each test performs an
//! attack against real servers on loopback and checks that it no longer works. One module
//! per group of the review.

mod exhaustion;
mod guild;
mod peers;
mod tokens_devices;
