//! The agent record (`schemas/agent-record.json`) and discovery over the
//! `agentry-agents` bucket the monitor materialises.

use async_nats::jetstream::{self, kv};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::subject;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Live,
    Draining,
    Deregistered,
    Expired,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Live => "live",
            Status::Draining => "draining",
            Status::Deregistered => "deregistered",
            Status::Expired => "expired",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentRecord {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub version: String,
    pub capabilities: Vec<String>,
    pub status: Status,
    pub load: f64,
    pub in_flight: u64,
    pub capacity: u64,
    pub processed: u64,
    pub failed: u64,
    pub started_at: DateTime<Utc>,
    pub last_heartbeat: DateTime<Utc>,
    pub heartbeat_interval_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

impl AgentRecord {
    /// `true` when no heartbeat arrived for `missed` intervals before `now`.
    pub fn is_stale(&self, now: DateTime<Utc>, missed: u32) -> bool {
        let limit = chrono::Duration::milliseconds(
            (self.heartbeat_interval_ms as i64).saturating_mul(i64::from(missed)),
        );
        now - self.last_heartbeat > limit
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("registry bucket unavailable")]
    Bucket(#[source] async_nats::jetstream::context::KeyValueError),
    #[error("registry read failed")]
    Read(#[source] async_nats::Error),
}

/// Read access to the registry.
#[derive(Clone)]
pub struct Registry {
    kv: kv::Store,
}

impl Registry {
    pub async fn open(js: &jetstream::Context) -> Result<Self, RegistryError> {
        let kv = js
            .get_key_value(subject::AGENTS_BUCKET)
            .await
            .map_err(RegistryError::Bucket)?;
        Ok(Self { kv })
    }

    pub fn store(&self) -> &kv::Store {
        &self.kv
    }

    /// Every record (any status), sorted by id.
    pub async fn list(&self) -> Result<Vec<AgentRecord>, RegistryError> {
        let mut keys = self
            .kv
            .keys()
            .await
            .map_err(|e| RegistryError::Read(Box::new(e)))?;
        let mut out = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(|e| RegistryError::Read(Box::new(e)))?;
            if let Ok(Some(bytes)) = self.kv.get(&key).await
                && let Ok(rec) = serde_json::from_slice::<AgentRecord>(&bytes)
            {
                out.push(rec);
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    pub async fn get(&self, id: &str) -> Result<Option<AgentRecord>, RegistryError> {
        match self.kv.get(id).await {
            Ok(Some(b)) => Ok(serde_json::from_slice(&b).ok()),
            Ok(None) => Ok(None),
            Err(e) => Err(RegistryError::Read(Box::new(e))),
        }
    }

    /// Live agents serving `capability`, least loaded first.
    pub async fn find(&self, capability: &str) -> Result<Vec<AgentRecord>, RegistryError> {
        let mut v: Vec<AgentRecord> = self
            .list()
            .await?
            .into_iter()
            .filter(|r| r.status == Status::Live && r.capabilities.iter().any(|c| c == capability))
            .collect();
        v.sort_by(|a, b| {
            a.load
                .total_cmp(&b.load)
                .then(a.in_flight.cmp(&b.in_flight))
                .then(a.id.cmp(&b.id))
        });
        Ok(v)
    }

    /// `true` if any record, in any status, ever served `capability`.
    pub async fn ever_served(&self, capability: &str) -> Result<bool, RegistryError> {
        Ok(self
            .list()
            .await?
            .iter()
            .any(|r| r.capabilities.iter().any(|c| c == capability)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staleness() {
        let now = Utc::now();
        let rec = AgentRecord {
            id: "echo-1".into(),
            name: "echo".into(),
            kind: "echo".into(),
            version: "0.1.0".into(),
            capabilities: vec!["echo".into()],
            status: Status::Live,
            load: 0.0,
            in_flight: 0,
            capacity: 4,
            processed: 0,
            failed: 0,
            started_at: now,
            last_heartbeat: now - chrono::Duration::seconds(31),
            heartbeat_interval_ms: 10_000,
            host: None,
        };
        assert!(rec.is_stale(now, 3));
        assert!(!rec.is_stale(now, 4));
        let v = serde_json::to_value(&rec).unwrap();
        assert_eq!(v["status"], "live");
        let vs = crate::schema::global()
            .validator("agent-record.json")
            .unwrap();
        assert!(
            crate::schema::check(vs, &v).is_ok(),
            "{:?}",
            crate::schema::check(vs, &v)
        );
    }
}
