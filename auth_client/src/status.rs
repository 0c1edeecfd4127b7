//! What a credential check found.

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// What a token, API key or session check found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// The credential is known, unexpired and not revoked.
    Valid,
    /// The credential's lifetime has ended (for a rotated API key: its grace period). Sessions
    /// answer [`IdleExpired`](Self::IdleExpired) or [`AbsoluteExpired`](Self::AbsoluteExpired)
    /// instead.
    Expired,
    /// The session went unused (untouched) for its whole idle timeout.
    IdleExpired,
    /// The session reached its absolute deadline, however active it was.
    AbsoluteExpired,
    /// The credential was revoked.
    Revoked,
    /// The credential is well formed but not known (never issued, deleted, or issued under
    /// another hash key).
    Unknown,
    /// The string is not a credential of this kind: wrong prefix, length, alphabet or checksum.
    Malformed,
}

impl Status {
    /// The status as auth_pg spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Valid => "valid",
            Self::Expired => "expired",
            Self::IdleExpired => "idle_expired",
            Self::AbsoluteExpired => "absolute_expired",
            Self::Revoked => "revoked",
            Self::Unknown => "unknown",
            Self::Malformed => "malformed",
        }
    }
}

impl FromStr for Status {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Ok(match s {
            "valid" => Self::Valid,
            "expired" => Self::Expired,
            "idle_expired" => Self::IdleExpired,
            "absolute_expired" => Self::AbsoluteExpired,
            "revoked" => Self::Revoked,
            "unknown" => Self::Unknown,
            "malformed" => Self::Malformed,
            other => return Err(Error::decode(format!("unknown status {other:?}"))),
        })
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip() {
        for status in [
            Status::Valid,
            Status::Expired,
            Status::IdleExpired,
            Status::AbsoluteExpired,
            Status::Revoked,
            Status::Unknown,
            Status::Malformed,
        ] {
            assert_eq!(status.as_str().parse::<Status>().expect("known"), status);
        }
        let err = "bogus".parse::<Status>().expect_err("unknown");
        assert!(err.to_string().contains("bogus"));
    }
}
