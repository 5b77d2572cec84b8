//! The topology's sizes, ages and replica counts, as flags and environment.

/// Sizes, ages and replica counts, each with a default and an override.
#[derive(Debug, Clone, clap::Args)]
#[group(id = "topology_settings")]
pub struct Settings {
    /// Replicas for every stream and bucket (3 in production clusters).
    #[arg(
        long = "topology-replicas",
        env = "AGENTRY_TOPOLOGY_REPLICAS",
        default_value_t = 1
    )]
    pub replicas: usize,
    /// Use memory storage instead of files (tests, benchmarks).
    #[arg(
        long = "topology-memory",
        env = "AGENTRY_TOPOLOGY_MEMORY",
        default_value_t = false
    )]
    pub memory: bool,
    /// Maximum queued requests in AGENTRY_REQUESTS (new ones are refused beyond it).
    #[arg(long, env = "AGENTRY_REQUESTS_MAX_MSGS", default_value_t = 100_000)]
    pub requests_max_msgs: i64,
    /// Maximum queued tasks per capability in AGENTRY_TASKS.
    #[arg(
        long,
        env = "AGENTRY_TASKS_MAX_PER_CAPABILITY",
        default_value_t = 50_000
    )]
    pub tasks_max_per_capability: i64,
    /// Maximum queued tasks in AGENTRY_TASKS in total.
    #[arg(long, env = "AGENTRY_TASKS_MAX_MSGS", default_value_t = 500_000)]
    pub tasks_max_msgs: i64,
    /// How long results stay fetchable by request id, in seconds.
    #[arg(long, env = "AGENTRY_RESULTS_MAX_AGE_SECS", default_value_t = 24 * 3600)]
    pub results_max_age_secs: u64,
    /// How long lifecycle events are kept, in seconds.
    #[arg(long, env = "AGENTRY_EVENTS_MAX_AGE_SECS", default_value_t = 7 * 24 * 3600)]
    pub events_max_age_secs: u64,
    /// How long dead letters are kept, in seconds (they may hold user data).
    #[arg(long, env = "AGENTRY_DLQ_MAX_AGE_SECS", default_value_t = 14 * 24 * 3600)]
    pub dlq_max_age_secs: u64,
    /// How long finished workflow runs are kept, in seconds.
    #[arg(long, env = "AGENTRY_RUNS_MAX_AGE_SECS", default_value_t = 7 * 24 * 3600)]
    pub runs_max_age_secs: u64,
    /// Deduplication window for request ids, in seconds.
    #[arg(long, env = "AGENTRY_DEDUP_WINDOW_SECS", default_value_t = 120)]
    pub dedup_window_secs: u64,
    /// Largest message accepted by the streams, in bytes (the request size limit plus headroom).
    #[arg(long, env = "AGENTRY_MAX_MSG_SIZE", default_value_t = 1024 * 1024 + 64 * 1024)]
    pub max_msg_size: i32,
    /// AckWait for task consumers, in seconds (agents send progress for longer work).
    #[arg(long, env = "AGENTRY_TASK_ACK_WAIT_SECS", default_value_t = 30)]
    pub task_ack_wait_secs: u64,
    /// Deliveries of a task before it is dead-lettered.
    #[arg(long, env = "AGENTRY_TASK_MAX_DELIVER", default_value_t = 5)]
    pub task_max_deliver: i64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            replicas: 1,
            memory: false,
            requests_max_msgs: 100_000,
            tasks_max_per_capability: 50_000,
            tasks_max_msgs: 500_000,
            results_max_age_secs: 24 * 3600,
            events_max_age_secs: 7 * 24 * 3600,
            dlq_max_age_secs: 14 * 24 * 3600,
            runs_max_age_secs: 7 * 24 * 3600,
            dedup_window_secs: 120,
            max_msg_size: 1024 * 1024 + 64 * 1024,
            task_ack_wait_secs: 30,
            task_max_deliver: 5,
        }
    }
}
