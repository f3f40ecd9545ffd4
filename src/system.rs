//! What every layer asks of the operating system: the time and random bytes. A leaf: it
//! imports nothing of the crate, so any module may use it without pointing upward.

/// Unix time in seconds.
pub fn now() -> u64 {
    now_ms() / 1000
}

/// Unix time in milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Fills `buf` from the operating system's random source.
pub fn random_bytes(buf: &mut [u8]) {
    if let Err(e) = getrandom::fill(buf) {
        // Without randomness no key, token or code would be safe: stop rather than go on.
        panic!("the operating system's random source failed: {e}");
    }
}
