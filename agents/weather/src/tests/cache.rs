//! The Redis cache against a real `redis-server`.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::super::{Config, WeatherClient};
use super::{Redis, config, fixture};

/// A repeated query is answered from Redis without reaching the fixture;
/// entries carry the configured TTL; geocoding is cached on its own.
#[tokio::test]
async fn cache_hit_skips_upstream() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let server = fixture().await;
    let c = WeatherClient::new(config(&server), Some(redis.manager().await)).expect("client");
    let first = c.current(&json!({"city": "Berlin"})).await.expect("first");
    assert_eq!(server.control().request_count(), 2);
    let second = c
        .current(&json!({"city": " berlin "}))
        .await
        .expect("second");
    assert_eq!(server.control().request_count(), 2, "served from cache");
    assert_eq!(first, second);

    let mut conn = redis.manager().await;
    let key = "agentry:weather:current:city=berlin,cc=-,units=metric,days=1,hourly=false";
    let ttl: i64 = redis::cmd("TTL")
        .arg(key)
        .query_async(&mut conn)
        .await
        .expect("ttl");
    assert!((590..=600).contains(&ttl), "ttl {ttl}");
    let stored: String = redis::cmd("GET")
        .arg(key)
        .query_async(&mut conn)
        .await
        .expect("get");
    assert_eq!(serde_json::from_str::<Value>(&stored).expect("json"), first);
    let geo_ttl: i64 = redis::cmd("TTL")
        .arg("agentry:weather:geocode:city=berlin,cc=-")
        .query_async(&mut conn)
        .await
        .expect("ttl");
    assert!(geo_ttl > 0, "geocode ttl {geo_ttl}");

    c.forecast(&json!({"city": "Berlin"}))
        .await
        .expect("forecast");
    assert_eq!(server.control().geocoding_requests(), 1, "geocode reused");
    assert_eq!(server.control().forecast_requests(), 2);
}

/// With Redis gone, requests still succeed (uncached) and promptly: after
/// the first failure the cache is bypassed instead of timing out per call.
/// When Redis is back, caching resumes after the cool-down.
#[tokio::test]
async fn redis_down_degrades_to_no_cache() {
    let Some(mut redis) = Redis::start().await else {
        return;
    };
    let server = fixture().await;
    let cfg = Config {
        cache_cooldown: Duration::from_millis(300),
        ..config(&server)
    };
    let c = WeatherClient::new(cfg, Some(redis.manager().await)).expect("client");
    redis.kill();
    let started = Instant::now();
    let a = c.current(&json!({"city": "Berlin"})).await.expect("first");
    let b = c.current(&json!({"city": "Berlin"})).await.expect("second");
    assert_eq!(a, b);
    assert_eq!(
        server.control().forecast_requests(),
        2,
        "nothing was cached"
    );
    assert_eq!(server.control().geocoding_requests(), 2);
    // One cache command may wait out its 500 ms timeout; the rest are skipped.
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );

    let _back = Redis::start_on(redis.port).await.expect("redis restarts");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        c.current(&json!({"city": "Berlin"})).await.expect("call");
        let before = server.control().request_count();
        c.current(&json!({"city": "Berlin"})).await.expect("call");
        if server.control().request_count() == before {
            break; // answered from the cache again
        }
        assert!(Instant::now() < deadline, "cache never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
