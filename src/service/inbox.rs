//! Received calls, deduplicated: a call that changes state records (sender, call id) in
//! the commit that applies it, so a retried delivery takes effect once.

use crate::storage::{tables::INBOX, StoreError, Tx};
use crate::system::now;

/// Records that the call (`from`, `id`) was applied; `false` if it had been already, in
/// which case the caller must not apply it again. Use in the commit that applies it.
pub fn first_delivery(tx: &Tx, from: &str, id: u64) -> Result<bool, StoreError> {
    let key = (from, id);
    if tx.contains(INBOX, key)? {
        return Ok(false);
    }
    tx.put(INBOX, key, &now())?;
    Ok(true)
}
