//! The optional in-process cache: valid answers kept in memory, forgotten the moment the server
//! says they may have changed.
//!
//! What is kept: `valid` answers to token, API-key and session checks (never another status, so
//! a caller spraying made-up credentials cannot push real entries out), and the answers of
//! `has_permission` and `user_permissions`. Each entry lives until the earliest of the
//! credential's own expiry (read on the server's clock), the configured maximum age, and the
//! first invalidation that names it.
//!
//! Why a served answer is never stale:
//! - The listener (`crate::listener`) `LISTEN`s on `auth_pg_invalidate` on a connection of its
//!   own, and every notification removes the entries it names. Entries are served only while the
//!   listener is connected and answering its heartbeats; when it is not, the cache is emptied and
//!   every call goes to the server until it listens again.
//! - A check that goes to the server takes a [`Ticket`] first, and its answer is stored only if
//!   no invalidation (and no loss of the listener) happened while it was in flight: the answer
//!   may have been read from a snapshot taken before the change it missed. Invalidations and
//!   stores are serialized by one lock, so an invalidation either precedes a store (which is then
//!   refused) or follows it (and removes what was stored).
//! - Expiry is judged on the server's clock, estimated when the listener connects, less the
//!   round trip of that estimate.
//!
//! Credentials are not kept: entries are found by a keyed BLAKE3 hash of the credential, with a
//! key drawn at random for each client, so the memory of the process holds no reusable hash.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant, SystemTime};

use auth_core::{CredentialKind, Invalidation};

use crate::{ApiKeyValidation, SessionValidation, Status, TokenValidation};

/// How an entry is found: a keyed hash of what was asked.
pub(crate) type Key = [u8; 32];

/// One stored answer and when it stops being served.
#[derive(Debug)]
pub(crate) struct Entry {
    until: Instant,
    pub(crate) answer: Answer,
}

/// The answers the cache keeps.
#[derive(Debug)]
pub(crate) enum Answer {
    Token(TokenValidation),
    ApiKey(ApiKeyValidation),
    Session(SessionValidation),
    /// `has_permission`.
    Allowed {
        user_id: String,
        org_id: Option<String>,
        allowed: bool,
    },
    /// `user_permissions`.
    Permissions {
        user_id: String,
        org_id: Option<String>,
        permissions: Vec<String>,
    },
}

/// Which entries an invalidation (or a change made through this client) removes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Forget<'a> {
    Everything,
    Entry(Key),
    Token(i64),
    UserTokens(&'a str),
    ApiKey(&'a str),
    OrganizationKeys(&'a str),
    Session(&'a str),
    UserSessions(&'a str),
    AllTokens,
    AllApiKeys,
    AllSessions,
    /// The permission answers of a user: in one organization, or (`None`) in all of them.
    UserPermissions(&'a str, Option<&'a str>),
    AllPermissions,
    /// Nothing the cache keeps (JWT verifications are cached by the server, not here).
    Nothing,
}

impl<'a> From<&'a Invalidation> for Forget<'a> {
    fn from(invalidation: &'a Invalidation) -> Self {
        match invalidation {
            Invalidation::TokenRevoked { token_id, .. } => Forget::Token(*token_id),
            Invalidation::UserTokensRevoked { user_id } => Forget::UserTokens(user_id),
            Invalidation::ApiKeyRevoked { key_id, .. }
            | Invalidation::ApiKeyRotated { key_id, .. } => Forget::ApiKey(key_id),
            Invalidation::OrganizationKeysChanged { org_id } => Forget::OrganizationKeys(org_id),
            Invalidation::SessionRevoked { session_id, .. } => Forget::Session(session_id),
            Invalidation::UserSessionsRevoked { user_id } => Forget::UserSessions(user_id),
            Invalidation::TokensChanged => Forget::AllTokens,
            Invalidation::ApiKeysChanged => Forget::AllApiKeys,
            Invalidation::SessionsChanged => Forget::AllSessions,
            // A global assignment changes the user's answers in every organization.
            Invalidation::UserRolesChanged { user_id, org_id } => {
                Forget::UserPermissions(user_id, org_id.as_deref())
            }
            // Who holds a role, or inherits from it, is not known here: forget every user's.
            Invalidation::RoleChanged { .. } | Invalidation::PermissionsRebuilt => {
                Forget::AllPermissions
            }
            Invalidation::JwtKeyChanged { .. } | Invalidation::JwtKeysChanged => Forget::Nothing,
        }
    }
}

/// An id an invalidation can name, with the kind of answer it names it in.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Id {
    Token(i64),
    TokenUser(String),
    ApiKey(String),
    Organization(String),
    Session(String),
    SessionUser(String),
    PermissionUser(String),
}

impl Answer {
    /// The ids an invalidation may name this answer by.
    fn ids(&self) -> Vec<Id> {
        let mut ids = Vec::with_capacity(2);
        match self {
            Answer::Token(token) => {
                ids.extend(token.token_id.map(Id::Token));
                ids.extend(token.user_id.clone().map(Id::TokenUser));
            }
            Answer::ApiKey(key) => {
                ids.extend(key.key_id.clone().map(Id::ApiKey));
                ids.extend(key.org_id.clone().map(Id::Organization));
            }
            Answer::Session(session) => {
                ids.extend(session.session_id.clone().map(Id::Session));
                ids.extend(session.user_id.clone().map(Id::SessionUser));
            }
            Answer::Allowed { user_id, .. } | Answer::Permissions { user_id, .. } => {
                ids.push(Id::PermissionUser(user_id.clone()));
            }
        }
        ids
    }
}

impl Forget<'_> {
    /// The id whose entries this removes (among others that `removes` then filters), when it
    /// names one.
    fn id(&self) -> Option<Id> {
        Some(match self {
            Forget::Token(id) => Id::Token(*id),
            Forget::UserTokens(user) => Id::TokenUser((*user).to_owned()),
            Forget::ApiKey(id) => Id::ApiKey((*id).to_owned()),
            Forget::OrganizationKeys(org) => Id::Organization((*org).to_owned()),
            Forget::Session(id) => Id::Session((*id).to_owned()),
            Forget::UserSessions(user) => Id::SessionUser((*user).to_owned()),
            Forget::UserPermissions(user, _) => Id::PermissionUser((*user).to_owned()),
            _ => return None,
        })
    }

    /// Whether the entry stored under `key` with `answer` must go.
    fn removes(&self, key: &Key, answer: &Answer) -> bool {
        match (self, answer) {
            (Forget::Everything, _) => true,
            (Forget::Entry(forgotten), _) => forgotten == key,
            (Forget::Token(id), Answer::Token(token)) => token.token_id == Some(*id),
            (Forget::UserTokens(user), Answer::Token(token)) => {
                token.user_id.as_deref() == Some(*user)
            }
            (Forget::ApiKey(id), Answer::ApiKey(key)) => key.key_id.as_deref() == Some(*id),
            (Forget::OrganizationKeys(org), Answer::ApiKey(key)) => {
                key.org_id.as_deref() == Some(*org)
            }
            (Forget::Session(id), Answer::Session(session)) => {
                session.session_id.as_deref() == Some(*id)
            }
            (Forget::UserSessions(user), Answer::Session(session)) => {
                session.user_id.as_deref() == Some(*user)
            }
            (
                Forget::UserPermissions(user, org),
                Answer::Allowed {
                    user_id, org_id, ..
                }
                | Answer::Permissions {
                    user_id, org_id, ..
                },
            ) => user_id == user && (org.is_none() || org_id.as_deref() == *org),
            (Forget::AllPermissions, Answer::Allowed { .. } | Answer::Permissions { .. })
            | (Forget::AllTokens, Answer::Token(_))
            | (Forget::AllApiKeys, Answer::ApiKey(_))
            | (Forget::AllSessions, Answer::Session(_)) => true,
            _ => false,
        }
    }
}

/// The server's clock as seen from here: how far it is ahead (or behind), and how uncertain
/// that estimate is (the round trip it was measured over).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Clock {
    ahead: Duration,
    behind: Duration,
    uncertainty: Duration,
}

impl Clock {
    /// The estimate from one reading: the server said `server` while the local clock went from
    /// `sent` to `received`.
    pub(crate) fn from_reading(sent: SystemTime, received: SystemTime, server: SystemTime) -> Self {
        let round_trip = received.duration_since(sent).unwrap_or_default();
        let local = sent + round_trip / 2;
        match server.duration_since(local) {
            Ok(ahead) => Self {
                ahead,
                behind: Duration::ZERO,
                uncertainty: round_trip,
            },
            Err(behind) => Self {
                ahead: Duration::ZERO,
                behind: behind.duration(),
                uncertainty: round_trip,
            },
        }
    }

    /// How long, from local time `now`, until the server's clock reaches `expires_at`, less the
    /// uncertainty; `None` when that is not in the future.
    fn time_left(&self, now: SystemTime, expires_at: SystemTime) -> Option<Duration> {
        let server_now = now.checked_add(self.ahead)?.checked_sub(self.behind)?;
        expires_at
            .duration_since(server_now)
            .ok()?
            .checked_sub(self.uncertainty)
            .filter(|left| !left.is_zero())
    }
}

/// Permission to store the answer of a call that is about to go to the server, valid only if
/// nothing is invalidated before it is used.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ticket {
    epoch: u64,
}

/// What stores and invalidations agree on, under one lock.
#[derive(Debug, Default)]
struct Gate {
    /// Counts invalidations and changes of the listener's state.
    epoch: u64,
    listening: bool,
    clock: Clock,
}

#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    stored: AtomicU64,
    raced: AtomicU64,
    invalidations: AtomicU64,
    connects: AtomicU64,
}

/// What the cache has done since the client was made.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Calls answered from memory.
    pub hits: u64,
    /// Calls that went to the server though they could have been answered from memory.
    pub misses: u64,
    /// Answers stored.
    pub stored: u64,
    /// Answers not stored because an invalidation arrived while they were in flight.
    pub raced: u64,
    /// Invalidations received from the server (or made by this client's own changes).
    pub invalidations: u64,
    /// Times the listener connected and started listening.
    pub connects: u64,
    /// Entries held now.
    pub entries: usize,
    /// Whether the listener is connected now: while it is not, nothing is served from memory.
    pub listening: bool,
}

/// The store. Shared by every clone of a client and by its listener.
pub(crate) struct Cache {
    entries: quick_cache::sync::Cache<Key, Arc<Entry>>,
    /// The keys stored under each id, so that an invalidation naming an id removes its entries
    /// without scanning the cache. It may also list keys evicted since, and a key more than
    /// once (removing them is a no-op); it is rebuilt from the entries when it has grown to
    /// twice its size after the last rebuild (or twice the capacity), so that rebuilds cost
    /// O(1) per store over time.
    index: Mutex<Index>,
    capacity: usize,
    hash_key: [u8; 32],
    max_age: Duration,
    gate: RwLock<Gate>,
    /// `gate.listening`, readable without the lock on the path of every hit.
    listening: AtomicBool,
    counters: Counters,
}

/// The longest any answer is kept, whatever the settings say: a day.
pub(crate) const MAX_AGE_LIMIT: Duration = Duration::from_secs(24 * 60 * 60);

impl Cache {
    /// A cache of about `capacity` answers, each kept at most `max_age` (at most
    /// [`MAX_AGE_LIMIT`]).
    pub(crate) fn new(capacity: usize, max_age: Duration) -> Self {
        let mut hash_key = [0; 32];
        getrandom::fill(&mut hash_key).expect("the operating system's random source works");
        Self {
            entries: quick_cache::sync::Cache::new(capacity.max(1)),
            index: Mutex::default(),
            capacity: capacity.max(1),
            hash_key,
            max_age: max_age.min(MAX_AGE_LIMIT),
            gate: RwLock::default(),
            listening: AtomicBool::new(false),
            counters: Counters::default(),
        }
    }

    /// The key of a credential of `kind`.
    pub(crate) fn credential_key(&self, kind: CredentialKind, credential: &str) -> Key {
        let mut hasher = blake3::Hasher::new_keyed(&self.hash_key);
        hasher.update(kind.prefix().as_bytes());
        hasher.update(credential.as_bytes());
        *hasher.finalize().as_bytes()
    }

    /// The key of a question made of several parts (each length-prefixed, so that no two
    /// different questions share one).
    pub(crate) fn question_key(&self, question: &str, parts: &[Option<&str>]) -> Key {
        let mut hasher = blake3::Hasher::new_keyed(&self.hash_key);
        hasher.update(question.as_bytes());
        for part in parts {
            match part {
                Some(part) => {
                    hasher.update(&[1]);
                    hasher.update(&(part.len() as u64).to_le_bytes());
                    hasher.update(part.as_bytes());
                }
                None => {
                    hasher.update(&[0]);
                }
            }
        }
        *hasher.finalize().as_bytes()
    }

    /// Whether answers may be served and stored now (the listener is listening). While it is
    /// not, the cache holds nothing.
    pub(crate) fn serving(&self) -> bool {
        self.listening.load(Ordering::Acquire)
    }

    /// The entry under `key`, if it may be served now (the cache is empty unless
    /// [`serving`](Self::serving)).
    pub(crate) fn get(&self, key: &Key) -> Option<Arc<Entry>> {
        match self.entries.get(key) {
            Some(entry) if entry.until > Instant::now() => {
                self.counters.hits.fetch_add(1, Ordering::Relaxed);
                Some(entry)
            }
            expired => {
                if expired.is_some() {
                    self.entries.remove(key);
                }
                self.counters.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// A ticket for a call about to go to the server; `None` while the listener is not
    /// listening (its answer could miss an invalidation, so it will not be stored).
    pub(crate) fn ticket(&self) -> Option<Ticket> {
        let gate = self.gate_read();
        gate.listening.then_some(Ticket { epoch: gate.epoch })
    }

    /// Stores `answer` under `key` until `expires_at` (on the server's clock) or the maximum
    /// age, whichever comes first, unless anything was invalidated since `ticket` was taken.
    pub(crate) fn store(
        &self,
        ticket: Ticket,
        key: Key,
        answer: Answer,
        expires_at: Option<SystemTime>,
    ) {
        let gate = self.gate_read();
        if !gate.listening || gate.epoch != ticket.epoch {
            self.counters.raced.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let now = Instant::now();
        let left = match expires_at {
            Some(expires_at) => match gate.clock.time_left(SystemTime::now(), expires_at) {
                Some(left) => left.min(self.max_age),
                None => return,
            },
            None => self.max_age,
        };
        if left.is_zero() {
            return;
        }
        let entry = Entry {
            until: now + left,
            answer,
        };
        let ids = entry.answer.ids();
        self.entries.insert(key, Arc::new(entry));
        let mut index = self.index();
        for id in ids {
            index.add(id, key);
        }
        if index.listed > index.rebuilt_at.max(self.capacity).saturating_mul(2) {
            index.rebuild(&self.entries);
        }
        drop(index);
        self.counters.stored.fetch_add(1, Ordering::Relaxed);
    }

    /// Removes what `forget` names; a call in flight will not store its answer.
    pub(crate) fn forget(&self, forget: &Forget<'_>) {
        let mut gate = self.gate_write();
        gate.epoch += 1;
        self.counters.invalidations.fetch_add(1, Ordering::Relaxed);
        match forget {
            Forget::Nothing => {}
            Forget::Everything => self.clear(),
            Forget::Entry(key) => {
                self.entries.remove(key);
            }
            _ => match forget.id() {
                // Stores hold the gate too, so every entry the id names is listed under it.
                Some(id) => {
                    let mut index = self.index();
                    let kept: Vec<Key> = index
                        .take(&id)
                        .into_iter()
                        .filter(|key| match self.entries.peek(key) {
                            Some(entry) if forget.removes(key, &entry.answer) => {
                                self.entries.remove(key);
                                false
                            }
                            Some(_) => true,
                            None => false,
                        })
                        .collect();
                    for key in kept {
                        index.add(id.clone(), key);
                    }
                }
                None => self
                    .entries
                    .retain(|key, entry| !forget.removes(key, &entry.answer)),
            },
        }
    }

    /// Applies one `auth_pg_invalidate` payload; one this version cannot read forgets
    /// everything.
    pub(crate) fn invalidate(&self, payload: &str) {
        match Invalidation::from_payload(payload) {
            Some(invalidation) => self.forget(&Forget::from(&invalidation)),
            None => self.forget(&Forget::Everything),
        }
    }

    /// Applies a burst of `count` notifications at once, whatever they say: forgets everything.
    pub(crate) fn invalidate_burst(&self, count: usize) {
        self.forget(&Forget::Everything);
        let more = u64::try_from(count.saturating_sub(1)).unwrap_or(u64::MAX);
        self.counters
            .invalidations
            .fetch_add(more, Ordering::Relaxed);
    }

    /// The listener is listening: start serving, with the server's clock as estimated.
    pub(crate) fn listening(&self, clock: Clock) {
        let mut gate = self.gate_write();
        gate.epoch += 1;
        gate.clock = clock;
        gate.listening = true;
        self.clear();
        self.listening.store(true, Ordering::Release);
        self.counters.connects.fetch_add(1, Ordering::Relaxed);
    }

    /// The listener lost its connection: notifications may be missed from now on, so serve
    /// nothing and keep nothing until it listens again.
    pub(crate) fn deaf(&self) {
        let mut gate = self.gate_write();
        self.listening.store(false, Ordering::Release);
        gate.listening = false;
        gate.epoch += 1;
        self.clear();
    }

    /// Drops every entry and listing (the caller holds the gate for writing).
    fn clear(&self) {
        self.entries.clear();
        *self.index() = Index::default();
    }

    // Poisoning is ignored: no code holding these locks leaves their data half-changed.
    fn gate_read(&self) -> RwLockReadGuard<'_, Gate> {
        self.gate.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn gate_write(&self) -> RwLockWriteGuard<'_, Gate> {
        self.gate.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn index(&self) -> MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Listings in the index, and rebuilds so far.
    #[cfg(test)]
    fn listed(&self) -> (usize, usize) {
        let index = self.index();
        (index.listed, index.rebuilds)
    }

    pub(crate) fn stats(&self) -> CacheStats {
        let count = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        CacheStats {
            hits: count(&self.counters.hits),
            misses: count(&self.counters.misses),
            stored: count(&self.counters.stored),
            raced: count(&self.counters.raced),
            invalidations: count(&self.counters.invalidations),
            connects: count(&self.counters.connects),
            entries: self.entries.len(),
            listening: self.listening.load(Ordering::Acquire),
        }
    }
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the entries: they hold users' ids and metadata.
        f.debug_struct("Cache")
            .field("max_age", &self.max_age)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// The keys listed under each id, and how many listings there are in all.
#[derive(Debug, Default)]
struct Index {
    keys: HashMap<Id, Vec<Key>>,
    listed: usize,
    /// `listed` right after the last rebuild.
    rebuilt_at: usize,
    /// Rebuilds so far.
    rebuilds: usize,
}

impl Index {
    /// Lists `key` under `id` (in constant time: a key listed twice is harmless).
    fn add(&mut self, id: Id, key: Key) {
        self.keys.entry(id).or_default().push(key);
        self.listed += 1;
    }

    fn take(&mut self, id: &Id) -> Vec<Key> {
        let keys = self.keys.remove(id).unwrap_or_default();
        self.listed -= keys.len();
        keys
    }

    /// Lists exactly what `entries` holds now, dropping keys evicted since they were listed.
    fn rebuild(&mut self, entries: &quick_cache::sync::Cache<Key, Arc<Entry>>) {
        *self = Self {
            rebuilds: self.rebuilds + 1,
            ..Self::default()
        };
        for (key, entry) in entries.iter() {
            for id in entry.answer.ids() {
                self.add(id, key);
            }
        }
        self.rebuilt_at = self.listed;
    }
}

/// An answer to a credential check that the cache can keep: only valid ones are.
pub(crate) trait Cached: Sized {
    /// The stored answer and when it expires, or `None` when it is not to be kept.
    fn to_answer(&self) -> Option<(Answer, Option<SystemTime>)>;
    /// This kind of answer, if `answer` is one.
    fn from_answer(answer: &Answer) -> Option<Self>;
}

impl Cached for TokenValidation {
    fn to_answer(&self) -> Option<(Answer, Option<SystemTime>)> {
        (self.status == Status::Valid).then(|| (Answer::Token(self.clone()), self.expires_at))
    }

    fn from_answer(answer: &Answer) -> Option<Self> {
        match answer {
            Answer::Token(token) => Some(token.clone()),
            _ => None,
        }
    }
}

impl Cached for ApiKeyValidation {
    fn to_answer(&self) -> Option<(Answer, Option<SystemTime>)> {
        (self.status == Status::Valid).then(|| (Answer::ApiKey(self.clone()), self.expires_at))
    }

    fn from_answer(answer: &Answer) -> Option<Self> {
        match answer {
            Answer::ApiKey(key) => Some(key.clone()),
            _ => None,
        }
    }
}

impl Cached for SessionValidation {
    fn to_answer(&self) -> Option<(Answer, Option<SystemTime>)> {
        // Valid until the earlier deadline; a touch elsewhere only moves the idle one later.
        let until = match (self.idle_expires_at, self.absolute_expires_at) {
            (Some(idle), Some(absolute)) => Some(idle.min(absolute)),
            (idle, absolute) => idle.or(absolute),
        };
        (self.status == Status::Valid).then(|| (Answer::Session(self.clone()), until))
    }

    fn from_answer(answer: &Answer) -> Option<Self> {
        match answer {
            Answer::Session(session) => Some(session.clone()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(id: i64, user: &str) -> TokenValidation {
        TokenValidation {
            status: Status::Valid,
            token_id: Some(id),
            user_id: Some(user.into()),
            scopes: Vec::new(),
            expires_at: None,
            metadata: None,
        }
    }

    fn listening_cache() -> Cache {
        let cache = Cache::new(100, Duration::from_secs(60));
        cache.listening(Clock::default());
        cache
    }

    fn store<T: Cached>(cache: &Cache, kind: CredentialKind, credential: &str, answer: T) -> Key {
        let key = cache.credential_key(kind, credential);
        let ticket = cache.ticket().expect("listening");
        let (answer, expires_at) = answer.to_answer().expect("valid answers are kept");
        cache.store(ticket, key, answer, expires_at);
        key
    }

    fn store_token(cache: &Cache, credential: &str, answer: TokenValidation) -> Key {
        store(cache, CredentialKind::Token, credential, answer)
    }

    fn served_token(cache: &Cache, key: &Key) -> Option<TokenValidation> {
        cache
            .get(key)
            .and_then(|entry| TokenValidation::from_answer(&entry.answer))
    }

    #[test]
    fn serves_what_it_stored_and_counts() {
        let cache = listening_cache();
        let key = store_token(&cache, "a", token(1, "u1"));
        assert_eq!(served_token(&cache, &key), Some(token(1, "u1")));
        let other = cache.credential_key(CredentialKind::Token, "b");
        assert_eq!(served_token(&cache, &other), None);
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses, stats.stored), (1, 1, 1));
        assert_eq!(stats.entries, 1);
    }

    #[test]
    fn keeps_only_valid_answers() {
        let mut answer = token(1, "u1");
        answer.status = Status::Revoked;
        assert!(answer.to_answer().is_none());
        answer.status = Status::Unknown;
        assert!(answer.to_answer().is_none());
    }

    #[test]
    fn an_invalidation_while_a_call_is_in_flight_refuses_its_answer() {
        let cache = listening_cache();
        let key = cache.credential_key(CredentialKind::Token, "a");
        let ticket = cache.ticket().expect("listening");
        // The revocation is heard while the (stale) valid answer is on its way.
        cache.invalidate(r#"{"event":"token_revoked","token_id":1,"user_id":"u1"}"#);
        let (answer, expires_at) = token(1, "u1").to_answer().expect("valid");
        cache.store(ticket, key, answer, expires_at);
        assert_eq!(served_token(&cache, &key), None);
        assert_eq!(cache.stats().raced, 1);
    }

    #[test]
    fn nothing_is_served_or_kept_while_the_listener_is_deaf() {
        let cache = Cache::new(100, Duration::from_secs(60));
        assert!(cache.ticket().is_none(), "not listening yet");
        cache.listening(Clock::default());
        let key = store_token(&cache, "a", token(1, "u1"));
        let ticket = cache.ticket().expect("listening");
        cache.deaf();
        assert_eq!(served_token(&cache, &key), None);
        assert_eq!(cache.stats().entries, 0);
        let (answer, expires_at) = token(1, "u1").to_answer().expect("valid");
        cache.store(ticket, key, answer, expires_at);
        cache.listening(Clock::default());
        assert_eq!(
            served_token(&cache, &key),
            None,
            "an answer fetched while deaf was not kept"
        );
    }

    #[test]
    fn invalidations_remove_exactly_what_they_name() {
        let cache = listening_cache();
        let a = store_token(&cache, "a", token(1, "u1"));
        let b = store_token(&cache, "b", token(2, "u1"));
        let c = store_token(&cache, "c", token(3, "u2"));
        cache.invalidate(r#"{"event":"token_revoked","token_id":1,"user_id":"u1"}"#);
        assert!(served_token(&cache, &a).is_none());
        assert!(served_token(&cache, &b).is_some());
        cache.invalidate(r#"{"event":"user_tokens_revoked","user_id":"u1"}"#);
        assert!(served_token(&cache, &b).is_none());
        assert!(served_token(&cache, &c).is_some());
        // Events about other kinds of answer leave tokens alone.
        cache.invalidate(r#"{"event":"user_sessions_revoked","user_id":"u2"}"#);
        cache.invalidate(r#"{"event":"jwt_keys_changed"}"#);
        cache.invalidate(r#"{"event":"api_keys_changed"}"#);
        assert!(served_token(&cache, &c).is_some());
        // A payload this version cannot read forgets everything.
        cache.invalidate(r#"{"event":"something_new"}"#);
        assert!(served_token(&cache, &c).is_none());
    }

    #[test]
    fn a_truncation_of_the_key_tables_forgets_every_api_key() {
        let cache = listening_cache();
        let stored: Vec<Key> = ["acme", "globex"]
            .into_iter()
            .map(|org_id| {
                let answer = ApiKeyValidation {
                    status: Status::Valid,
                    org_id: Some(org_id.into()),
                    key_id: Some(format!("key_{org_id}")),
                    name: Some("CI".into()),
                    scopes: Vec::new(),
                    expires_at: None,
                    metadata: None,
                };
                store(&cache, CredentialKind::ApiKey, org_id, answer)
            })
            .collect();
        assert!(stored.iter().all(|key| cache.get(key).is_some()));
        cache.invalidate(r#"{"event":"api_keys_changed"}"#);
        assert!(stored.iter().all(|key| cache.get(key).is_none()));
    }

    #[test]
    fn role_changes_forget_permission_answers_by_user_and_organization() {
        let allowed = |user: &str, org: Option<&str>| Answer::Allowed {
            user_id: user.into(),
            org_id: org.map(Into::into),
            allowed: true,
        };
        let key = [0; 32];
        let in_acme = allowed("u1", Some("acme"));
        let global = allowed("u1", None);
        let other_user = allowed("u2", Some("acme"));
        let in_acme_only = Forget::UserPermissions("u1", Some("acme"));
        assert!(in_acme_only.removes(&key, &in_acme));
        assert!(!in_acme_only.removes(&key, &global));
        assert!(!in_acme_only.removes(&key, &other_user));
        let everywhere = Forget::UserPermissions("u1", None);
        assert!(everywhere.removes(&key, &in_acme) && everywhere.removes(&key, &global));
        assert!(Forget::AllPermissions.removes(&key, &other_user));
        assert!(!Forget::AllPermissions.removes(&key, &Answer::Token(token(1, "u1"))));
        let role = Invalidation::RoleChanged {
            role: "editor".into(),
            org_id: None,
        };
        assert_eq!(Forget::from(&role), Forget::AllPermissions);
    }

    #[test]
    fn expiry_is_read_on_the_servers_clock_less_the_uncertainty() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        // The server is 10 s ahead; the reading took 2 ms.
        let clock = Clock::from_reading(
            t0,
            t0 + Duration::from_millis(2),
            t0 + Duration::from_secs(10),
        );
        let expires_at = t0 + Duration::from_secs(70);
        // Locally it is t0 (server: about t0 + 10 s): 60 s left, less the uncertainty.
        let left = clock.time_left(t0, expires_at).expect("in the future");
        assert!(left < Duration::from_secs(60) && left > Duration::from_millis(59_990));
        // Once the server's clock has passed it, nothing is left, whatever the local clock says.
        assert_eq!(
            clock.time_left(t0 + Duration::from_secs(61), expires_at),
            None
        );
        // A server clock behind ours leaves more time.
        let behind = Clock::from_reading(t0, t0, t0 - Duration::from_secs(5));
        assert_eq!(
            behind.time_left(t0, expires_at),
            Some(Duration::from_secs(75))
        );
    }

    #[test]
    fn an_expired_or_aged_entry_is_not_served() {
        let cache = Cache::new(100, Duration::ZERO);
        cache.listening(Clock::default());
        let key = store_token(&cache, "a", token(1, "u1"));
        assert_eq!(
            served_token(&cache, &key),
            None,
            "max age zero keeps nothing"
        );

        let cache = listening_cache();
        let mut expired = token(1, "u1");
        expired.expires_at = Some(SystemTime::now() - Duration::from_secs(1));
        let key = store_token(&cache, "a", expired);
        assert_eq!(served_token(&cache, &key), None);
    }

    #[test]
    fn the_index_stays_bounded_and_exact_through_evictions() {
        let cache = Cache::new(50, Duration::from_secs(60));
        cache.listening(Clock::default());
        // Far more answers than the cache holds, every one for user u1: most are evicted.
        let keys: Vec<Key> = (0..1000)
            .map(|i| store_token(&cache, &format!("t{i}"), token(i, "u1")))
            .collect();
        assert!(cache.stats().entries <= 60, "{:?}", cache.stats());
        // Two ids per answer (the token's and its user's): at most twice what a rebuild lists.
        let entries = cache.stats().entries;
        let (listed, rebuilds) = cache.listed();
        assert!(listed <= 2 * (2 * entries).max(50) + 2, "{listed}");
        // Rebuilds are rare: each waits for at least half a capacity's worth of new listings.
        assert!(
            (1..=40).contains(&rebuilds),
            "{rebuilds} rebuilds for 1 000 stores"
        );
        let held: Vec<&Key> = keys
            .iter()
            .filter(|key| cache.entries.peek(*key).is_some())
            .collect();
        assert!(!held.is_empty());
        // Revoking one held token by id removes it and only it.
        let (one, others) = held.split_first().expect("one held");
        let id = cache
            .entries
            .peek(*one)
            .and_then(|entry| TokenValidation::from_answer(&entry.answer))
            .and_then(|token| token.token_id)
            .expect("an id");
        cache.invalidate(&format!(
            r#"{{"event":"token_revoked","token_id":{id},"user_id":"u1"}}"#
        ));
        assert!(cache.entries.peek(*one).is_none());
        assert!(others.iter().all(|key| cache.entries.peek(*key).is_some()));
        // Every token of the user, by the user's id: nothing of theirs is left.
        cache.invalidate(r#"{"event":"user_tokens_revoked","user_id":"u1"}"#);
        assert_eq!(cache.stats().entries, 0);
    }

    #[test]
    fn extreme_settings_neither_panic_nor_keep_answers_longer_than_a_day() {
        let cache = Cache::new(usize::MAX, Duration::MAX);
        cache.listening(Clock::default());
        let key = store_token(&cache, "a", token(1, "u1"));
        assert_eq!(served_token(&cache, &key), Some(token(1, "u1")));
        let entry = cache.entries.peek(&key).expect("stored");
        assert!(entry.until <= Instant::now() + MAX_AGE_LIMIT);
        // A server clock read as far in the future as PostgreSQL allows.
        let far = SystemTime::UNIX_EPOCH + Duration::from_secs(9_000_000_000_000);
        let clock = Clock::from_reading(SystemTime::now(), SystemTime::now(), far);
        assert_eq!(clock.time_left(SystemTime::now(), far), None);
    }

    #[test]
    fn keys_are_keyed_and_unambiguous() {
        let one = Cache::new(1, Duration::ZERO);
        let two = Cache::new(1, Duration::ZERO);
        assert_ne!(
            one.credential_key(CredentialKind::Token, "a"),
            two.credential_key(CredentialKind::Token, "a")
        );
        assert_ne!(
            one.question_key("allowed", &[Some("ab"), Some("c")]),
            one.question_key("allowed", &[Some("a"), Some("bc")])
        );
        assert_ne!(
            one.question_key("allowed", &[Some("a"), None]),
            one.question_key("allowed", &[Some("a"), Some("")])
        );
    }
}
