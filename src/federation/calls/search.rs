//! `search_users` (peer → this server): `{id, q, limit?}` → 200 `{users: [profile]}`, this
//! server's own users matching `q` (at most `MAX_SEARCH_LIMIT`). Asking the peers is
//! [`crate::federation::directory::search`].

use super::{parse, Answer};
use crate::federation::{Federation, FederationError};
use crate::service::remote_users::{
    check_query, search_local, DEFAULT_SEARCH_LIMIT, MAX_SEARCH_LIMIT,
};
use serde_json::{json, Value};

/// `search_users` `{id, q, limit?}`: a peer searches this server's own users.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchUsers {
    /// The call id (searches change nothing, so it is not deduplicated).
    #[serde(default, rename = "id")]
    _id: Option<String>,
    /// What to look for.
    q: String,
    /// Most results wanted.
    #[serde(default)]
    limit: Option<u64>,
}

/// Answers `search_users`: this server's own users matching `q`.
pub fn search_users(fed: &Federation, body: &Value) -> Result<Answer, FederationError> {
    let call: SearchUsers = parse(body)?;
    let q = check_query(&call.q).map_err(|e| FederationError::Invalid(e.to_string()))?;
    let limit = call
        .limit
        .map(|l| l.min(MAX_SEARCH_LIMIT as u64) as usize)
        .unwrap_or(DEFAULT_SEARCH_LIMIT)
        .clamp(1, MAX_SEARCH_LIMIT);
    let origin = fed.services.origin.clone();
    let users = fed
        .services
        .store
        .read(|tx| search_local(tx, &q, limit, &origin))?;
    Ok(Answer::Done(json!({ "users": users })))
}
