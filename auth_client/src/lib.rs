#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod api_keys;
mod cache;
mod client;
mod config;
mod error;
mod jwt;
mod listener;
mod metrics;
mod packed;
mod permissions;
mod sessions;
mod status;
mod tokens;

pub use api_keys::{ApiKeyInfo, ApiKeyValidation, NewApiKey};
pub use auth_core::{Credential, CredentialKind, FormatError};
pub use cache::CacheStats;
pub use client::AuthClient;
pub use config::Config;
pub use error::{Error, ErrorKind};
pub use jwt::{Jwt, JwtKeyInfo, JwtKeyRules, JwtKeyStatus, JwtStatus, JwtVerification};
pub use metrics::Metrics;
pub use sessions::{SessionInfo, SessionValidation};
pub use status::Status;
pub use tokens::TokenValidation;

/// The crates this one is built on, re-exported so that versions always match.
pub mod reexports {
    pub use deadpool_postgres;
    pub use tokio_postgres;
}
