//! A bounded cache of valid verifications, so that a token presented again skips the
//! signature check (an RSA verification costs far more than the rest of a request).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use super::verify::{Policy, Status, Verification, Window};

/// The default capacity of a [`VerifiedCache`], in entries.
pub const DEFAULT_CACHE_CAPACITY: usize = 1024;

/// A bounded cache of valid verifications, keyed by the BLAKE3 hash of the token.
///
/// - Only [`Status::Valid`] verifications are stored, with their claims (shared through an
///   `Arc`), `kid` and time window; never the token itself.
/// - [`get`](Self::get) re-checks the time rules with the policy of the moment: `exp` with the
///   leeway, `nbf`/`iat`, the key's window, and `require_exp`. An entry that fails them is
///   dropped, so a hit is never past expiry.
/// - [`clear`](Self::clear) must be called on any change of the keys (added, removed, their
///   issuer, audience or window changed), since entries do not remember their key's rules.
/// - When full, an entry is evicted with the CLOCK algorithm (second chance): an entry read
///   since the hand last passed it is kept one more turn. It approximates LRU in O(1) with no
///   linked list and no dependency.
///
/// Each entry holds a token's claims, so the memory used is at most about `capacity` times the
/// largest claims accepted ([`Policy::max_token_bytes`]).
pub struct VerifiedCache {
    capacity: usize,
    slots: Vec<Slot>,
    index: HashMap<[u8; 32], usize>,
    hand: usize,
}

struct Slot {
    digest: [u8; 32],
    referenced: bool,
    kid: Option<String>,
    claims: Arc<Value>,
    window: Window,
}

impl VerifiedCache {
    /// An empty cache of at most `capacity` entries; 0 disables it.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            slots: Vec::new(),
            index: HashMap::new(),
            hand: 0,
        }
    }

    /// The most entries it holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many entries it holds.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether it holds no entry.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Drops every entry.
    pub fn clear(&mut self) {
        self.slots.clear();
        self.index.clear();
        self.hand = 0;
    }

    /// The cached verification of the token `key` names, when it is still valid at `now` under
    /// `policy`.
    pub fn get(&mut self, key: &TokenKey, policy: &Policy, now: i64) -> Option<Verification> {
        if key.length > policy.max_token_bytes {
            return None;
        }
        let position = *self.index.get(&key.digest)?;
        let slot = &mut self.slots[position];
        let window = slot.window;
        let still_valid = window.key_usable_at(now)
            && !(policy.require_exp && window.expires.is_none())
            && window.token_status(now, policy.leeway_seconds).is_ok();
        if !still_valid {
            self.remove(position);
            return None;
        }
        slot.referenced = true;
        Some(Verification {
            status: Status::Valid,
            kid: slot.kid.clone(),
            claims: Some(Arc::clone(&slot.claims)),
            window,
        })
    }

    /// Caches the verification of the token `key` names if it is valid; returns whether it was
    /// cached.
    pub fn insert(&mut self, key: &TokenKey, verification: &Verification) -> bool {
        let (Status::Valid, Some(claims)) = (verification.status, &verification.claims) else {
            return false;
        };
        if self.capacity == 0 {
            return false;
        }
        let digest = key.digest;
        let slot = Slot {
            digest,
            referenced: false,
            kid: verification.kid.clone(),
            claims: Arc::clone(claims),
            window: verification.window,
        };
        if let Some(&position) = self.index.get(&digest) {
            self.slots[position] = slot;
            return true;
        }
        if self.slots.len() < self.capacity {
            self.index.insert(digest, self.slots.len());
            self.slots.push(slot);
            return true;
        }
        // CLOCK: each turn clears one "referenced" bit, so this ends within two passes.
        loop {
            let hand = self.hand;
            self.hand = (hand + 1) % self.slots.len();
            if std::mem::take(&mut self.slots[hand].referenced) {
                continue;
            }
            let evicted = std::mem::replace(&mut self.slots[hand], slot);
            self.index.remove(&evicted.digest);
            self.index.insert(digest, hand);
            return true;
        }
    }

    fn remove(&mut self, position: usize) {
        let removed = self.slots.swap_remove(position);
        self.index.remove(&removed.digest);
        if let Some(moved) = self.slots.get(position) {
            self.index.insert(moved.digest, position);
        }
        if self.hand >= self.slots.len() {
            self.hand = 0;
        }
    }
}

impl Default for VerifiedCache {
    fn default() -> Self {
        Self::new(DEFAULT_CACHE_CAPACITY)
    }
}

impl fmt::Debug for VerifiedCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedCache")
            .field("capacity", &self.capacity)
            .field("len", &self.slots.len())
            .finish_non_exhaustive()
    }
}

/// A token's key in a [`VerifiedCache`]: the BLAKE3 hash of the token (a token carries a
/// signature, so its hash reveals nothing of it) and its length. Made once per verification and
/// used for both the lookup and, on a miss, the insertion.
pub struct TokenKey {
    digest: [u8; 32],
    length: usize,
}

impl TokenKey {
    /// The key of `token`.
    pub fn of(token: &str) -> Self {
        Self {
            digest: *blake3::hash(token.as_bytes()).as_bytes(),
            length: token.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::test_keys::HMAC_SECRET;
    use super::super::{Algorithm, KeyEntry, ParsedKey, SigningKey, sign, verify_with_key};
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn key() -> (SigningKey, KeyEntry) {
        let (verifying, signing) = ParsedKey::parse(Algorithm::HS256, HMAC_SECRET)
            .expect("secret")
            .into_parts();
        (
            signing.expect("a secret signs"),
            KeyEntry::new(Some("k1".to_owned()), verifying),
        )
    }

    fn verified(claims: Value) -> (String, Verification) {
        let (signing, entry) = key();
        let token = sign(&claims, &signing, Some("k1")).expect("sign");
        let verification = verify_with_key(&token, &entry, &Policy::default(), NOW);
        (token, verification)
    }

    fn policy(leeway_seconds: u32) -> Policy {
        Policy {
            leeway_seconds,
            ..Policy::default()
        }
    }

    #[test]
    fn hits_share_the_claims() {
        let mut cache = VerifiedCache::new(8);
        let (token, verification) = verified(json!({"sub": "u1", "exp": NOW + 60}));
        assert!(verification.is_valid());
        assert!(cache.get(&TokenKey::of(&token), &policy(0), NOW).is_none());
        assert!(cache.insert(&TokenKey::of(&token), &verification));
        let hit = cache
            .get(&TokenKey::of(&token), &policy(0), NOW)
            .expect("hit");
        assert_eq!(hit.status, Status::Valid);
        assert_eq!(hit.kid.as_deref(), Some("k1"));
        assert_eq!(hit.expires_at(), Some(NOW + 60));
        assert!(Arc::ptr_eq(
            hit.claims.as_ref().expect("claims"),
            verification.claims.as_ref().expect("claims")
        ));
        // Another token misses, even one with the same claims.
        let (other, _) = verified(json!({"sub": "u1", "exp": NOW + 61}));
        assert!(cache.get(&TokenKey::of(&other), &policy(0), NOW).is_none());
    }

    #[test]
    fn never_a_hit_past_expiry() {
        let mut cache = VerifiedCache::new(8);
        let exp = NOW + 60;
        let (token, verification) = verified(json!({"exp": exp}));
        assert!(cache.insert(&TokenKey::of(&token), &verification));
        assert!(cache.get(&TokenKey::of(&token), &policy(10), exp).is_some());
        assert!(
            cache
                .get(&TokenKey::of(&token), &policy(10), exp + 10)
                .is_some()
        );
        assert!(
            cache
                .get(&TokenKey::of(&token), &policy(10), exp + 11)
                .is_none()
        );
        // The expired entry is gone, whatever the policy later says.
        assert!(cache.is_empty());
        assert!(
            cache
                .get(&TokenKey::of(&token), &policy(1000), exp + 11)
                .is_none()
        );
    }

    #[test]
    fn time_rules_are_rechecked_with_the_current_policy() {
        let mut cache = VerifiedCache::new(8);
        let (signing, entry) = key();
        let lenient = Policy {
            require_exp: false,
            ..Policy::default()
        };
        let token = sign(&json!({"sub": "u"}), &signing, None).expect("sign");
        let verification = verify_with_key(&token, &entry, &lenient, NOW);
        assert!(cache.insert(&TokenKey::of(&token), &verification));
        assert!(
            cache
                .get(&TokenKey::of(&token), &lenient, NOW + 1_000_000)
                .is_some()
        );
        // exp became required: the cached token without one is no longer valid.
        assert!(
            cache
                .get(&TokenKey::of(&token), &Policy::default(), NOW)
                .is_none()
        );
        // A key with a window: no hit once the key may no longer be used.
        let mut windowed = entry.clone();
        windowed.not_after = Some(NOW + 10);
        let token = sign(&json!({"exp": NOW + 3600}), &signing, None).expect("sign");
        let verification = verify_with_key(&token, &windowed, &Policy::default(), NOW);
        assert!(cache.insert(&TokenKey::of(&token), &verification));
        assert!(
            cache
                .get(&TokenKey::of(&token), &Policy::default(), NOW + 9)
                .is_some()
        );
        assert!(
            cache
                .get(&TokenKey::of(&token), &Policy::default(), NOW + 10)
                .is_none()
        );
        // Too long for the policy: not even looked up.
        let short = Policy {
            max_token_bytes: 10,
            ..Policy::default()
        };
        let (token, verification) = verified(json!({"exp": NOW + 60}));
        assert!(cache.insert(&TokenKey::of(&token), &verification));
        assert!(cache.get(&TokenKey::of(&token), &short, NOW).is_none());
    }

    #[test]
    fn only_valid_verifications_are_cached() {
        let mut cache = VerifiedCache::new(8);
        let (token, expired) = verified(json!({"exp": NOW - 3600}));
        assert_eq!(expired.status, Status::Expired);
        assert!(!cache.insert(&TokenKey::of(&token), &expired));
        let (_, entry) = key();
        let garbage = verify_with_key("a.b.c", &entry, &Policy::default(), NOW);
        assert!(!cache.insert(&TokenKey::of("a.b.c"), &garbage));
        assert!(cache.is_empty());
        let mut disabled = VerifiedCache::new(0);
        let (token, valid) = verified(json!({"exp": NOW + 60}));
        assert!(!disabled.insert(&TokenKey::of(&token), &valid));
        assert!(
            disabled
                .get(&TokenKey::of(&token), &Policy::default(), NOW)
                .is_none()
        );
    }

    #[test]
    fn clear_drops_everything() {
        let mut cache = VerifiedCache::default();
        assert_eq!(cache.capacity(), DEFAULT_CACHE_CAPACITY);
        let (token, verification) = verified(json!({"exp": NOW + 60}));
        assert!(cache.insert(&TokenKey::of(&token), &verification));
        assert_eq!(cache.len(), 1);
        cache.clear();
        assert!(cache.is_empty());
        assert!(
            cache
                .get(&TokenKey::of(&token), &Policy::default(), NOW)
                .is_none()
        );
        assert!(cache.insert(&TokenKey::of(&token), &verification));
        assert!(
            cache
                .get(&TokenKey::of(&token), &Policy::default(), NOW)
                .is_some()
        );
    }

    #[test]
    fn the_size_is_bounded_and_recently_read_entries_stay() {
        let mut cache = VerifiedCache::new(3);
        let tokens: Vec<(String, Verification)> = (0..10)
            .map(|i| verified(json!({"exp": NOW + 60, "n": i})))
            .collect();
        for (token, verification) in &tokens[..3] {
            assert!(cache.insert(&TokenKey::of(token), verification));
        }
        // Token 0 is read, so the next insertion evicts token 1 instead.
        assert!(
            cache
                .get(&TokenKey::of(&tokens[0].0), &Policy::default(), NOW)
                .is_some()
        );
        assert!(cache.insert(&TokenKey::of(&tokens[3].0), &tokens[3].1));
        assert_eq!(cache.len(), 3);
        assert!(
            cache
                .get(&TokenKey::of(&tokens[1].0), &Policy::default(), NOW)
                .is_none()
        );
        for i in [0, 2, 3] {
            assert!(
                cache
                    .get(&TokenKey::of(&tokens[i].0), &Policy::default(), NOW)
                    .is_some(),
                "{i}"
            );
        }
        for (token, verification) in &tokens {
            assert!(cache.insert(&TokenKey::of(token), verification));
            assert!(cache.len() <= 3);
            assert_eq!(cache.index.len(), cache.len());
        }
        // The index and the slots agree after evictions and removals.
        let (token, expiring) = verified(json!({"exp": NOW + 1}));
        assert!(cache.insert(&TokenKey::of(&token), &expiring));
        assert!(
            cache
                .get(&TokenKey::of(&token), &policy(0), NOW + 2)
                .is_none()
        );
        assert_eq!(cache.len(), 2);
        for (digest, position) in &cache.index {
            assert_eq!(cache.slots[*position].digest, *digest);
        }
        // Inserting the same token again replaces its entry.
        let (token, verification) = &tokens[9];
        assert!(cache.insert(&TokenKey::of(token), verification));
        assert!(cache.insert(&TokenKey::of(token), verification));
        assert!(cache.len() <= 3);
    }

    #[test]
    fn no_token_is_stored() {
        let mut cache = VerifiedCache::new(8);
        let (token, verification) = verified(json!({"sub": "u1", "exp": NOW + 60}));
        assert!(cache.insert(&TokenKey::of(&token), &verification));
        let signature = token.rsplit('.').next().expect("three parts");
        for slot in &cache.slots {
            assert_eq!(slot.digest, *blake3::hash(token.as_bytes()).as_bytes());
            assert_ne!(&slot.digest[..], token.as_bytes());
            assert!(!slot.claims.to_string().contains(signature));
            assert!(
                slot.kid
                    .as_deref()
                    .is_none_or(|kid| !kid.contains(signature))
            );
        }
        let debug = format!("{cache:?}");
        assert_eq!(debug, "VerifiedCache { capacity: 8, len: 1, .. }");
    }
}
