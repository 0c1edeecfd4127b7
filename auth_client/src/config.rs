//! Connection and pool settings.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use crate::Error;

/// Settings for an [`AuthClient`](crate::AuthClient): where the database is, how many
/// connections to keep, and how long to wait.
///
/// Build one from a connection string and adjust it with the setters:
///
/// ```
/// use std::time::Duration;
/// use auth_client::Config;
///
/// let mut config = Config::from_url("postgres://app:secret@localhost/app")?;
/// config.pool_size(32).statement_timeout(Some(Duration::from_secs(2)));
/// assert!(!format!("{config:?}").contains("secret"));
/// # Ok::<(), auth_client::Error>(())
/// ```
///
/// It also deserializes (with serde) from `{ "url": ..., "pool_size": ..., "connect_timeout_secs":
/// ..., "wait_timeout_secs": ..., "statement_timeout_secs": ..., "cache_capacity": ...,
/// "cache_max_age_secs": ... }`, every field but `url` optional. `Debug` never shows the
/// password.
#[derive(Clone)]
pub struct Config {
    pub(crate) pg: tokio_postgres::Config,
    pub(crate) pool_size: usize,
    pub(crate) wait_timeout: Option<Duration>,
    pub(crate) statement_timeout: Option<Duration>,
    pub(crate) cache_capacity: usize,
    pub(crate) cache_max_age: Duration,
}

impl Config {
    /// Connections in the pool unless set otherwise.
    pub const DEFAULT_POOL_SIZE: usize = 16;
    /// How long to wait for a connection to open, or for a free one from the pool.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
    /// The longest the cache keeps an answer unless set otherwise. A minute matches how often
    /// the server records an API key's last use, which answers served from memory skip.
    pub const DEFAULT_CACHE_MAX_AGE: Duration = Duration::from_secs(60);

    /// Settings from a libpq connection string: a URL (`postgres://user@host/db`) or
    /// `key=value` pairs (`host=/run/postgresql dbname=app`).
    pub fn from_url(url: &str) -> Result<Self, Error> {
        let mut pg = tokio_postgres::Config::from_str(url).map_err(Error::config)?;
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(Self::DEFAULT_TIMEOUT);
        }
        if pg.get_application_name().is_none() {
            pg.application_name("auth_client");
        }
        Ok(Self {
            pg,
            pool_size: Self::DEFAULT_POOL_SIZE,
            wait_timeout: Some(Self::DEFAULT_TIMEOUT),
            statement_timeout: None,
            cache_capacity: 0,
            cache_max_age: Self::DEFAULT_CACHE_MAX_AGE,
        })
    }

    /// The most connections the pool opens (at least 1).
    pub fn pool_size(&mut self, size: usize) -> &mut Self {
        self.pool_size = size.max(1);
        self
    }

    /// How long opening a connection may take.
    pub fn connect_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.pg.connect_timeout(timeout);
        self
    }

    /// How long a call waits for a free connection when all are busy; `None` waits forever.
    pub fn wait_timeout(&mut self, timeout: Option<Duration>) -> &mut Self {
        self.wait_timeout = timeout;
        self
    }

    /// The server-side `statement_timeout` of every connection, in whole milliseconds rounded
    /// up (so never 0, which PostgreSQL reads as no timeout); `None` keeps the server's.
    pub fn statement_timeout(&mut self, timeout: Option<Duration>) -> &mut Self {
        self.statement_timeout = timeout;
        self
    }

    /// Turns on the in-process cache, holding up to `capacity` answers (0, the default, turns it
    /// off). Valid token, API-key and session checks and permission answers are then served from
    /// memory until the credential expires, [`cache_max_age`](Self::cache_max_age) passes, or
    /// the server announces a change on `auth_pg_invalidate`, which a connection of the cache's
    /// own listens to: a revocation reaches the cache as soon as its notification arrives. While
    /// that connection is down, nothing is served from memory. The client must then be created
    /// inside a Tokio runtime. See [`AuthClient::cache_stats`](crate::AuthClient::cache_stats).
    pub fn cache(&mut self, capacity: usize) -> &mut Self {
        self.cache_capacity = capacity;
        self
    }

    /// The longest the cache keeps an answer, however long the credential lives
    /// ([`DEFAULT_CACHE_MAX_AGE`](Self::DEFAULT_CACHE_MAX_AGE) unless set; longer than a day is
    /// taken as a day).
    pub fn cache_max_age(&mut self, max_age: Duration) -> &mut Self {
        self.cache_max_age = max_age;
        self
    }

    /// The underlying tokio-postgres settings, for anything not covered here (TCP keepalives,
    /// target session attributes, ...).
    pub fn postgres_config(&mut self) -> &mut tokio_postgres::Config {
        &mut self.pg
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // tokio_postgres::Config's Debug redacts the password.
        f.debug_struct("Config")
            .field("postgres", &self.pg)
            .field("pool_size", &self.pool_size)
            .field("wait_timeout", &self.wait_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .field("cache_capacity", &self.cache_capacity)
            .field("cache_max_age", &self.cache_max_age)
            .finish()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    url: String,
    pool_size: Option<usize>,
    connect_timeout_secs: Option<f64>,
    wait_timeout_secs: Option<f64>,
    statement_timeout_secs: Option<f64>,
    cache_capacity: Option<usize>,
    cache_max_age_secs: Option<f64>,
}

fn seconds<E: serde::de::Error>(field: &str, secs: f64) -> Result<Duration, E> {
    Duration::try_from_secs_f64(secs)
        .map_err(|_| E::custom(format!("{field} must be a non-negative number of seconds")))
}

impl<'de> Deserialize<'de> for Config {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let raw = RawConfig::deserialize(deserializer)?;
        // SECURITY: the parse error names what is wrong, never the URL (it may hold a password).
        let mut config = Config::from_url(&raw.url).map_err(D::Error::custom)?;
        if let Some(size) = raw.pool_size {
            config.pool_size(size);
        }
        if let Some(secs) = raw.connect_timeout_secs {
            config.connect_timeout(seconds("connect_timeout_secs", secs)?);
        }
        if let Some(secs) = raw.wait_timeout_secs {
            config.wait_timeout(Some(seconds("wait_timeout_secs", secs)?));
        }
        if let Some(secs) = raw.statement_timeout_secs {
            config.statement_timeout(Some(seconds("statement_timeout_secs", secs)?));
        }
        if let Some(capacity) = raw.cache_capacity {
            config.cache(capacity);
        }
        if let Some(secs) = raw.cache_max_age_secs {
            config.cache_max_age(seconds("cache_max_age_secs", secs)?);
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_setters() {
        let mut config = Config::from_url("host=/tmp dbname=app user=app").expect("valid");
        assert_eq!(config.pool_size, Config::DEFAULT_POOL_SIZE);
        assert_eq!(
            config.pg.get_connect_timeout(),
            Some(&Config::DEFAULT_TIMEOUT)
        );
        assert_eq!(config.pg.get_application_name(), Some("auth_client"));
        assert_eq!(
            config.cache_capacity, 0,
            "the cache is off unless asked for"
        );
        config.pool_size(0).wait_timeout(None);
        assert_eq!(config.pool_size, 1);
        assert_eq!(config.wait_timeout, None);
    }

    #[test]
    fn debug_redacts_the_password() {
        let config = Config::from_url("postgres://app:hunter2@localhost/app").expect("valid");
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("localhost"), "{shown}");
    }

    #[test]
    fn deserializes_with_optional_fields() {
        let config: Config = serde_json::from_str(
            r#"{"url": "postgres://app@localhost/app", "pool_size": 4, "statement_timeout_secs": 1.5,
                "cache_capacity": 1000, "cache_max_age_secs": 5}"#,
        )
        .expect("valid");
        assert_eq!(config.pool_size, 4);
        assert_eq!(config.statement_timeout, Some(Duration::from_millis(1500)));
        assert_eq!(config.cache_capacity, 1000);
        assert_eq!(config.cache_max_age, Duration::from_secs(5));

        let err = serde_json::from_str::<Config>(
            r#"{"url": "postgres://app@localhost/app", "wait_timeout_secs": -1}"#,
        )
        .expect_err("negative timeout");
        assert!(err.to_string().contains("wait_timeout_secs"), "{err}");
        let err = serde_json::from_str::<Config>(
            r#"{"url": "postgres://app:hunter2@localhost:notaport/app"}"#,
        )
        .expect_err("bad url");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn rejects_bad_urls() {
        assert!(Config::from_url("postgres://host:notaport/db").is_err());
    }
}
