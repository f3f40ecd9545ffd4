//! Versioned bincode values. Every stored value starts with one version byte; a type that
//! changes shape bumps its version and decodes the old form in [`Stored::migrate`].

use serde::{de::DeserializeOwned, Serialize};

/// Largest value the codec will decode, so a corrupt length cannot make it allocate wildly.
const DECODE_LIMIT: usize = 16 * 1024 * 1024;

/// Errors decoding a stored value.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The value is empty (no version byte).
    #[error("stored value is empty")]
    Empty,
    /// The version byte names a format this build cannot read.
    #[error("stored value has unknown version {0}")]
    UnknownVersion(u8),
    /// bincode could not decode the body.
    #[error("stored value is corrupt: {0}")]
    Corrupt(String),
}

/// A type that is stored as a versioned bincode value.
pub trait Stored: Serialize + DeserializeOwned {
    /// The version written by this build.
    const VERSION: u8;

    /// Decodes a value written in an older `version`.
    fn migrate(version: u8, _body: &[u8]) -> Result<Self, CodecError> {
        Err(CodecError::UnknownVersion(version))
    }
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<DECODE_LIMIT>()
}

/// Encodes a value with its version byte.
pub fn encode<T: Stored>(value: &T) -> Vec<u8> {
    let mut out = vec![T::VERSION];
    // Encoding plain data into a Vec cannot fail: no I/O, and the types have no
    // serializer errors of their own.
    if let Err(error) = bincode::serde::encode_into_std_write(value, &mut out, config()) {
        unreachable!("encoding a stored value failed: {error}");
    }
    out
}

/// Decodes the body of a value written in an older shape (for [`Stored::migrate`]).
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, CodecError> {
    bincode::serde::decode_from_slice(body, config())
        .map(|(value, _)| value)
        .map_err(|e| CodecError::Corrupt(e.to_string()))
}

/// Decodes a value, migrating older versions.
pub fn decode<T: Stored>(bytes: &[u8]) -> Result<T, CodecError> {
    let (&version, body) = bytes.split_first().ok_or(CodecError::Empty)?;
    if version != T::VERSION {
        return T::migrate(version, body);
    }
    bincode::serde::decode_from_slice(body, config())
        .map(|(value, _)| value)
        .map_err(|e| CodecError::Corrupt(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct OldShape {
        a: u32,
    }

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct NewShape {
        a: u32,
        b: String,
    }

    impl Stored for OldShape {
        const VERSION: u8 = 1;
    }

    impl Stored for NewShape {
        const VERSION: u8 = 2;
        fn migrate(version: u8, body: &[u8]) -> Result<Self, CodecError> {
            match version {
                1 => {
                    let (old, _): (OldShape, usize) =
                        bincode::serde::decode_from_slice(body, config())
                            .map_err(|e| CodecError::Corrupt(e.to_string()))?;
                    Ok(NewShape {
                        a: old.a,
                        b: String::new(),
                    })
                }
                v => Err(CodecError::UnknownVersion(v)),
            }
        }
    }

    #[test]
    fn round_trip_and_migration() {
        let bytes = encode(&NewShape {
            a: 7,
            b: "x".into(),
        });
        assert_eq!(bytes[0], 2);
        assert_eq!(
            decode::<NewShape>(&bytes).unwrap(),
            NewShape {
                a: 7,
                b: "x".into()
            }
        );
        let old = encode(&OldShape { a: 9 });
        assert_eq!(
            decode::<NewShape>(&old).unwrap(),
            NewShape {
                a: 9,
                b: String::new()
            }
        );
    }

    #[test]
    fn corrupt_values_are_errors_not_panics() {
        assert!(matches!(decode::<NewShape>(&[]), Err(CodecError::Empty)));
        assert!(matches!(
            decode::<NewShape>(&[9, 1, 2]),
            Err(CodecError::UnknownVersion(9))
        ));
        assert!(matches!(
            decode::<NewShape>(&[2, 0xff, 0xff, 0xff, 0xff, 0xff]),
            Err(CodecError::Corrupt(_))
        ));
    }
}
