//! The names of the domain's things, each its own type so the compiler tells a commit from a deployment
//! id from an environment. On the wire they are plain strings (`#[serde(transparent)]`); in code they
//! read as `&str` where a string is wanted (`Deref`), and compare with one.

use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Serialize};

pub use crate::config::EnvName;

/// What every name type has beyond its definition: it reads as a `&str`, converts from and to a
/// `String`, and compares with strings.
macro_rules! reads_as_str {
    ($name:ty) => {
        impl Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                self.as_str()
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                <$name>::new(value)
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                <$name>::new(value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.as_str().to_string()
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                self.as_str() == other
            }
        }

        impl PartialEq<$name> for str {
            fn eq(&self, other: &$name) -> bool {
                self == other.as_str()
            }
        }

        impl PartialEq<$name> for &str {
            fn eq(&self, other: &$name) -> bool {
                *self == other.as_str()
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                self == other.as_str()
            }
        }
    };
}

/// A Git commit id as Git names it (40 hex digits for SHA-1).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(value_type = String)]
pub struct CommitSha(String);

impl CommitSha {
    pub fn new(value: impl Into<String>) -> Self {
        CommitSha(value.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first seven characters, as people write a commit.
    pub fn short(&self) -> &str {
        crate::config::short_sha(&self.0)
    }
}

impl fmt::Display for CommitSha {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

/// A deployment's id: `<env>-<time>-<short commit>`, unique per service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(value_type = String)]
pub struct DeploymentId(String);

impl DeploymentId {
    pub fn new(value: impl Into<String>) -> Self {
        DeploymentId(value.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DeploymentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

reads_as_str!(CommitSha);
reads_as_str!(DeploymentId);
reads_as_str!(EnvName);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_a_string_on_the_wire_and_compares_with_one() {
        let sha = CommitSha::new("0123456789abcdef0123456789abcdef01234567");
        assert_eq!(sha.short(), "0123456");
        assert_eq!(serde_json::to_string(&sha).unwrap(), "\"0123456789abcdef0123456789abcdef01234567\"");
        let env: EnvName = serde_json::from_str("\"production\"").unwrap();
        assert!(env == "production");
        assert_eq!(format!("{env}"), "production");
        assert_eq!(CommitSha::new("abc").short(), "abc");
    }

    #[test]
    fn a_name_pads_in_columns_as_a_string_does() {
        let env = EnvName::from("staging");
        assert_eq!(format!("[{env:<12}]"), "[staging     ]");
        assert_eq!(format!("[{:>6}]", DeploymentId::new("d-1")), "[   d-1]");
        assert_eq!(format!("[{:<4}]", CommitSha::new("ab")), "[ab  ]");
    }
}
