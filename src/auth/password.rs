//! Password hashing with argon2id, stored as PHC strings.

use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version};

/// Upper bounds on argon2 costs we will compute. They apply to hashes we
/// create and to hashes or key-wrap blobs we are handed, so stored data
/// cannot make us allocate gigabytes or spin for minutes.
pub const MAX_M_COST_KIB: u32 = 262_144;
pub const MAX_T_COST: u32 = 10;
pub const MAX_P_COST: u32 = 4;

/// argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordParams {
    pub m_cost_kib: u32,
    pub t_cost: u32,
    pub p_cost: u32,
}

impl Default for PasswordParams {
    /// OWASP's minimum recommendation: 19 MiB, 2 passes, 1 lane.
    fn default() -> Self {
        PasswordParams {
            m_cost_kib: 19_456,
            t_cost: 2,
            p_cost: 1,
        }
    }
}

/// Why a password could not be hashed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("argon2 parameters out of range")]
    InvalidParams,
    #[error("random number generator failed")]
    Rng,
    #[error("password hashing failed")]
    Hash,
}

impl PasswordParams {
    /// The argon2 context for these costs, if they are within our bounds.
    pub(crate) fn argon2(&self) -> Option<Argon2<'static>> {
        if self.m_cost_kib > MAX_M_COST_KIB || self.t_cost > MAX_T_COST || self.p_cost > MAX_P_COST
        {
            return None;
        }
        let params = Params::new(self.m_cost_kib, self.t_cost, self.p_cost, Some(32)).ok()?;
        Some(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }
}

/// Hashes `password` with a fresh 16-byte salt into a PHC string
/// (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`).
pub fn hash_password(password: &str, params: &PasswordParams) -> Result<String, PasswordError> {
    let argon2 = params.argon2().ok_or(PasswordError::InvalidParams)?;
    let salt: [u8; 16] = super::try_random_array().map_err(|_| PasswordError::Rng)?;
    argon2
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|_| PasswordError::Hash)
}

/// Checks `password` against a PHC string from [`hash_password`]. Anything
/// unparsable, not argon2id, or costlier than our bounds is `false`.
pub fn verify_password(password: &str, phc: &str) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    if hash.algorithm.as_str() != "argon2id" {
        return false;
    }
    let Ok(params) = Params::try_from(&hash) else {
        return false;
    };
    let bounded = PasswordParams {
        m_cost_kib: params.m_cost(),
        t_cost: params.t_cost(),
        p_cost: params.p_cost(),
    };
    match bounded.argon2() {
        Some(argon2) => argon2.verify_password(password.as_bytes(), &hash).is_ok(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: PasswordParams = PasswordParams {
        m_cost_kib: 64,
        t_cost: 1,
        p_cost: 1,
    };

    #[test]
    fn hash_and_verify() {
        let phc = hash_password("correct horse", &FAST).unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{phc}");
        assert!(verify_password("correct horse", &phc));
        assert!(!verify_password("wrong horse", &phc));
        // Salts differ, so equal passwords give different strings.
        assert_ne!(phc, hash_password("correct horse", &FAST).unwrap());
    }

    #[test]
    fn bad_inputs_are_false_or_errors() {
        assert!(!verify_password("x", ""));
        assert!(!verify_password("x", "$argon2id$garbage"));
        let phc = hash_password("pw", &FAST).unwrap();
        let greedy = phc.replace("m=64", "m=4194304");
        assert!(!verify_password("pw", &greedy));
        let argon2i = phc.replace("$argon2id$", "$argon2i$");
        assert!(!verify_password("pw", &argon2i));

        let too_big = PasswordParams {
            m_cost_kib: MAX_M_COST_KIB + 1,
            ..FAST
        };
        assert_eq!(
            hash_password("pw", &too_big),
            Err(PasswordError::InvalidParams)
        );
        let zero = PasswordParams { t_cost: 0, ..FAST };
        assert_eq!(
            hash_password("pw", &zero),
            Err(PasswordError::InvalidParams)
        );
        assert_eq!(PasswordParams::default().m_cost_kib, 19_456);
    }
}
