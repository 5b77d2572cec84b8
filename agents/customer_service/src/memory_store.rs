//! Where conversations are remembered: Redis (`agentry:conv:<id>`, JSON,
//! expiring after the configured TTL) when it is configured and answering,
//! otherwise a bounded in-process LRU map with the same TTL.
//!
//! Memory is best effort: a Redis failure never fails a request. The
//! conversation is then kept in-process (a warning is logged once per
//! outage) and preferred over Redis' older copy until Redis takes a write
//! again. Two messages of one conversation handled at the same moment may
//! overwrite each other's turn (last writer wins).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use tracing::{info, warn};

use super::memory::Conversation;

/// Redis key prefix of conversation memory.
pub const KEY_PREFIX: &str = "agentry:conv:";

/// The Redis key of a conversation.
pub fn redis_key(conversation_id: &str) -> String {
    format!("{KEY_PREFIX}{conversation_id}")
}

/// Conversation memory with a Redis primary and an in-process fallback.
pub struct MemoryStore {
    ttl: Duration,
    local: Mutex<Lru>,
    /// Set once the "no Redis configured" line has been logged.
    announced_local: AtomicBool,
    /// Set while Redis is failing (one warning per outage).
    redis_down: AtomicBool,
}

impl MemoryStore {
    /// `ttl` applies to both stores; `capacity` bounds the in-process map.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            local: Mutex::new(Lru::new(capacity)),
            announced_local: AtomicBool::new(false),
            redis_down: AtomicBool::new(false),
        }
    }

    /// The stored conversation, or an empty one.
    pub async fn load(&self, redis: Option<ConnectionManager>, id: &str) -> Conversation {
        let local = self.local_get(id);
        let Some(mut conn) = self.redis_or_announce(redis) else {
            return local.unwrap_or_default();
        };
        let got: redis::RedisResult<Option<String>> = redis::cmd("GET")
            .arg(redis_key(id))
            .query_async(&mut conn)
            .await;
        match got {
            Ok(stored) => {
                self.redis_up();
                // A copy kept during an outage is newer than what Redis has.
                if let Some(conv) = local {
                    return conv;
                }
                match stored.map(|s| serde_json::from_str::<Conversation>(&s)) {
                    Some(Ok(conv)) => conv,
                    Some(Err(e)) => {
                        warn!(conversation = id, error = %e, "stored conversation is not valid, starting afresh");
                        Conversation::default()
                    }
                    None => Conversation::default(),
                }
            }
            Err(e) => {
                self.redis_failed(&e);
                local.unwrap_or_default()
            }
        }
    }

    /// Stores the conversation (replacing the previous one) with a fresh TTL.
    pub async fn save(&self, redis: Option<ConnectionManager>, id: &str, conv: &Conversation) {
        let Some(mut conn) = self.redis_or_announce(redis) else {
            self.local_put(id, conv.clone());
            return;
        };
        let json = match serde_json::to_string(conv) {
            Ok(j) => j,
            Err(e) => {
                warn!(conversation = id, error = %e, "conversation does not serialise, not stored");
                return;
            }
        };
        let set: redis::RedisResult<()> = redis::cmd("SET")
            .arg(redis_key(id))
            .arg(json)
            .arg("EX")
            .arg(self.ttl.as_secs().max(1))
            .query_async(&mut conn)
            .await;
        match set {
            Ok(()) => {
                self.redis_up();
                self.local_remove(id);
            }
            Err(e) => {
                self.redis_failed(&e);
                self.local_put(id, conv.clone());
            }
        }
    }

    fn redis_or_announce(&self, redis: Option<ConnectionManager>) -> Option<ConnectionManager> {
        if redis.is_none() && !self.announced_local.swap(true, Ordering::Relaxed) {
            info!(
                ttl_s = self.ttl.as_secs(),
                "no Redis: customer_service keeps conversation memory in process (bounded LRU; not shared between replicas, lost on restart)"
            );
        }
        redis
    }

    fn redis_failed(&self, e: &redis::RedisError) {
        if !self.redis_down.swap(true, Ordering::Relaxed) {
            warn!(error = %e, "Redis unavailable: conversation memory degrades to in-process until it answers again");
        }
    }

    fn redis_up(&self) {
        if self.redis_down.swap(false, Ordering::Relaxed) {
            info!("Redis answers again: conversation memory is back in Redis");
        }
    }

    fn local_get(&self, id: &str) -> Option<Conversation> {
        self.local.lock().ok()?.get(id, Instant::now())
    }

    fn local_put(&self, id: &str, conv: Conversation) {
        if let Ok(mut l) = self.local.lock() {
            l.put(id.to_owned(), conv, Instant::now() + self.ttl);
        }
    }

    fn local_remove(&self, id: &str) {
        if let Ok(mut l) = self.local.lock() {
            l.remove(id);
        }
    }
}

/// A map bounded to `capacity` entries: the least recently used goes first;
/// entries also expire.
struct Lru {
    capacity: usize,
    seq: u64,
    entries: HashMap<String, (Conversation, Instant, u64)>,
    order: BTreeMap<u64, String>,
}

impl Lru {
    fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            seq: 0,
            entries: HashMap::new(),
            order: BTreeMap::new(),
        }
    }

    fn touch(&mut self, id: &str) {
        self.seq += 1;
        let seq = self.seq;
        if let Some(e) = self.entries.get_mut(id) {
            self.order.remove(&e.2);
            e.2 = seq;
            self.order.insert(seq, id.to_owned());
        }
    }

    fn get(&mut self, id: &str, now: Instant) -> Option<Conversation> {
        let (conv, expires, _) = self.entries.get(id)?;
        if *expires <= now {
            self.remove(id);
            return None;
        }
        let conv = conv.clone();
        self.touch(id);
        Some(conv)
    }

    fn put(&mut self, id: String, conv: Conversation, expires: Instant) {
        self.remove(&id);
        while self.entries.len() >= self.capacity {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.entries.remove(&oldest);
        }
        self.seq += 1;
        self.order.insert(self.seq, id.clone());
        self.entries.insert(id, (conv, expires, self.seq));
    }

    fn remove(&mut self, id: &str) {
        if let Some((_, _, seq)) = self.entries.remove(id) {
            self.order.remove(&seq);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn conv(id: &str) -> Conversation {
        Conversation {
            id: id.into(),
            ..Conversation::default()
        }
    }

    /// The least recently used conversation is evicted first; expired ones are gone.
    #[test]
    fn lru_bounds_and_expiry() {
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        let mut l = Lru::new(2);
        l.put("a".into(), conv("a"), later);
        l.put("b".into(), conv("b"), later);
        assert_eq!(l.get("a", now).unwrap().id, "a"); // a is now the most recent
        l.put("c".into(), conv("c"), later); // evicts b
        assert!(l.get("b", now).is_none());
        assert!(l.get("a", now).is_some() && l.get("c", now).is_some());
        assert_eq!(l.entries.len(), 2);
        assert_eq!(l.order.len(), 2);
        assert!(l.get("a", later).is_none(), "expired");
        assert_eq!(l.entries.len(), 1);
        l.put("c".into(), conv("c2"), later);
        assert_eq!(l.entries.len(), 1);
        assert_eq!(l.order.len(), 1);
    }

    /// Without Redis the store remembers in process.
    #[tokio::test]
    async fn in_process_without_redis() {
        let store = MemoryStore::new(Duration::from_secs(60), 10);
        assert_eq!(store.load(None, "c1").await, Conversation::default());
        store.save(None, "c1", &conv("c1")).await;
        assert_eq!(store.load(None, "c1").await.id, "c1");
        assert_eq!(redis_key("c1"), "agentry:conv:c1");
    }
}
