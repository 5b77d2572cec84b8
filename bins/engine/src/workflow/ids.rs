//! Names derived from a run: slots (what a step result answers), task and
//! child-run ids, and durable timer keys. All deterministic, so a retried
//! transition publishes the same ids and JetStream deduplicates them.

use std::fmt;

/// What a task (or child run) of a run works on: a step, one element of a
/// `foreach` step, or a step's compensation. Spelled `step`, `step-i<n>`,
/// `step-c` (step ids never contain `-`); carried in the `stepid` extension.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Slot {
    Step(String),
    Item(String, usize),
    Compensation(String),
}

impl Slot {
    pub fn unit(step: &str, item: Option<usize>) -> Self {
        match item {
            Some(i) => Self::Item(step.to_owned(), i),
            None => Self::Step(step.to_owned()),
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.split_once('-') {
            None => Some(Self::Step(s.to_owned())),
            Some((step, "c")) => Some(Self::Compensation(step.to_owned())),
            Some((step, rest)) => {
                let i = rest.strip_prefix('i')?.parse().ok()?;
                Some(Self::Item(step.to_owned(), i))
            }
        }
    }

    pub fn step(&self) -> &str {
        match self {
            Self::Step(s) | Self::Item(s, _) | Self::Compensation(s) => s,
        }
    }

    pub fn item(&self) -> Option<usize> {
        match self {
            Self::Item(_, i) => Some(*i),
            _ => None,
        }
    }
}

/// The step a slot spelling belongs to (`step`, `step-i<n>`, `step-c`),
/// without allocating.
pub(crate) fn step_of(slot: &str) -> &str {
    slot.split_once('-').map_or(slot, |(step, _)| step)
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Step(s) => f.write_str(s),
            Self::Item(s, i) => write!(f, "{s}-i{i}"),
            Self::Compensation(s) => write!(f, "{s}-c"),
        }
    }
}

/// Longest request/task id (`^[A-Za-z0-9_-]{1,128}$`).
const MAX_ID: usize = 128;

/// The id of the task (or child run) for `slot`'s attempt `attempt`:
/// `<run>-<slot>-<attempt>`, or a stable hash of it when that is too long.
///
/// `run` is the run's key (`[<tenant>.]<id>`): the tenant prefix is kept in
/// front, so a child run (whose id is a task id) belongs to the same tenant;
/// [`bare`] is the part that is a valid request id.
pub(crate) fn task_id(run: &str, slot: &Slot, attempt: u32) -> String {
    let (tenant, id) = match run.split_once('.') {
        Some((t, id)) => (Some(t), id),
        None => (None, run),
    };
    let plain = format!("{id}-{slot}-{attempt}");
    let id = if plain.len() <= MAX_ID {
        plain
    } else {
        format!("t{:032x}-{attempt}", fnv128(plain.as_bytes()))
    };
    match tenant {
        Some(t) => format!("{t}.{id}"),
        None => id,
    }
}

/// The request-id part of a task id or run key (without the tenant prefix).
pub(crate) fn bare(key: &str) -> &str {
    key.split_once('.').map_or(key, |(_, id)| id)
}

/// Timer key of a run's deadline.
pub(crate) fn run_timer(run: &str) -> String {
    format!("wf-{run}")
}

/// Timer key of an attempt's deadline.
pub(crate) fn step_timer(task_id: &str) -> String {
    format!("st-{task_id}")
}

/// Timer key of the retry that starts attempt `task_id`.
pub(crate) fn retry_timer(task_id: &str) -> String {
    format!("sr-{task_id}")
}

/// Timer key of a signal wait's deadline.
pub(crate) fn signal_timer(run: &str, step: &str) -> String {
    format!("sg-{run}-{step}")
}

/// Id of the `n`th lifecycle event of a run.
pub(crate) fn event_id(run: &str, n: u64) -> String {
    format!("{run}-e{n}")
}

/// Object name of a large value in `agentry-artifacts`.
pub(crate) fn artifact(run: &str, what: &str) -> String {
    format!("runs/{run}/{what}")
}

/// A CloudEvent id for a name derived from a run key: ids must be valid
/// request ids, so the tenant's `.` becomes `_`. Message ids (dedup) keep the
/// key itself, which is unique across tenants.
pub(crate) fn ce_id(key: &str) -> String {
    key.replace('.', "_")
}

/// 128-bit FNV-1a: stable across processes and versions (unlike std's hasher).
fn fnv128(bytes: &[u8]) -> u128 {
    const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013B;
    bytes
        .iter()
        .fold(OFFSET, |h, b| (h ^ u128::from(*b)).wrapping_mul(PRIME))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Slots round-trip through their spelling.
    #[test]
    fn slots() {
        for s in [
            Slot::Step("fetch".into()),
            Slot::Item("fetch_all".into(), 12),
            Slot::Compensation("contain".into()),
        ] {
            assert_eq!(Slot::parse(&s.to_string()), Some(s.clone()));
        }
        assert_eq!(Slot::Item("a".into(), 3).to_string(), "a-i3");
        assert_eq!(Slot::parse("a-x"), None);
    }

    /// Task ids are readable when short, hashed to a valid id when long, and stable.
    #[test]
    fn task_ids() {
        assert_eq!(task_id("r1", &Slot::Step("a".into()), 2), "r1-a-2");
        let long = "r".repeat(128);
        let id = task_id(&long, &Slot::Step("a".into()), 2);
        assert!(id.len() <= 128 && id.ends_with("-2"));
        assert!(agentry::RequestId::new(id.as_str()).is_ok());
        assert_eq!(id, task_id(&long, &Slot::Step("a".into()), 2));
        assert_ne!(id, task_id(&long, &Slot::Step("b".into()), 2));
        // A tenant's run keeps its tenant in front, also when hashed.
        assert_eq!(
            task_id("acme.r1", &Slot::Step("a".into()), 2),
            "acme.r1-a-2"
        );
        let hashed = task_id(&format!("acme.{long}"), &Slot::Step("a".into()), 2);
        assert!(hashed.starts_with("acme.t"));
        assert!(agentry::RequestId::new(bare(&hashed)).is_ok());
        assert_eq!(hashed, format!("acme.{id}"));
        assert_eq!(bare("r1-a-2"), "r1-a-2");
    }
}
