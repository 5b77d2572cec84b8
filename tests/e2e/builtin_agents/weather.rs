//! The weather agent's failure paths and cache, planning via weather, chart artifacts.

use super::*;

/// An Open-Meteo 503 is retried inside the weather client and the task
/// completes on its first delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weather_recovers_from_a_503() {
    let stack = Stack::start().await;
    stack.control().fail_next(1);
    let before = stack.control().request_count();
    let outcome = stack
        .submit("weather_current", json!({"city": "Berlin"}), None)
        .await;
    let out = output_of("weather_current", &outcome);
    assert_eq!(out["location"]["name"], "Berlin");
    assert_eq!(outcome.data["attempts"], 1, "no redelivery needed");
    // Geocoding 503, geocoding 200, forecast 200.
    assert_eq!(stack.control().request_count() - before, 3);
    stack.stop().await;
}

/// An Open-Meteo slower than the client timeout fails the task with a
/// `retries_exhausted` error that names the timeout, after the runtime's retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weather_timeout_fails_cleanly() {
    // Three deliveries, 1 s AckWait: the consumer's redelivery backoff
    // stretches the runtime's nak delays, so keep it short.
    let topology = agentry::topology::Settings {
        task_ack_wait_secs: 1,
        task_max_deliver: 3,
        ..test_settings()
    };
    let stack = Stack::start_with(topology, |c| {
        c.builtin.weather_timeout = Some(Duration::from_millis(300));
        c.builtin.weather_retries = Some(0);
    })
    .await;
    stack.control().delay_next(1_000, Duration::from_secs(3));
    let outcome = stack
        .submit("weather_current", json!({"city": "Berlin"}), None)
        .await;
    let error = error_of(&outcome);
    assert_eq!(error["code"], "retries_exhausted", "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("open-meteo geocoding API did not answer within 300ms"),
        "{message}"
    );
    // One HTTP attempt per delivery (no client retries); three deliveries,
    // of which the handler runs on max_deliver - 1 (docs/reliability.md).
    assert_eq!(outcome.data["attempts"], 2);
    assert_eq!(stack.control().request_count(), 2);
    stack.control().clear_faults();
    stack.stop().await;
}

/// A city geocoding cannot find fails at once, permanently, naming the city.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weather_unknown_city_is_a_permanent_failure() {
    let stack = Stack::start().await;
    let outcome = stack
        .submit("weather_forecast", json!({"city": "Atlantis"}), None)
        .await;
    let error = error_of(&outcome);
    assert_eq!(error["code"], "unknown_city");
    assert_eq!(error["retryable"], false);
    assert_eq!(error["message"], "unknown city \"Atlantis\"");
    assert_eq!(outcome.data["attempts"], 1, "not retried");
    assert_eq!(stack.control().forecast_requests(), 0);
    stack.stop().await;
}

/// With Redis configured, a second identical weather request is answered
/// from the cache without calling Open-Meteo.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weather_answers_repeat_requests_from_redis() {
    let redis = Redis::start();
    let url = redis.url.clone();
    let stack = Stack::start_with(test_settings(), |c| c.redis.url = Some(url)).await;
    let input = json!({"city": "Paris", "country_code": "FR", "days": 2});
    let first = output_of(
        "weather_forecast",
        &stack.submit("weather_forecast", input.clone(), None).await,
    );
    let calls = stack.control().request_count();
    assert_eq!(calls, 2, "geocoding and forecast");
    let second = output_of(
        "weather_forecast",
        &stack.submit("weather_forecast", input, None).await,
    );
    assert_eq!(stack.control().request_count(), calls, "served from Redis");
    assert_eq!(first, second);
    stack.stop().await;
}

/// plan_tasks with a weather place and no forecast delegates weather_forecast
/// over A2A and moves an outdoor task out of the wet hour it was released into.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planning_fetches_the_forecast_from_the_weather_agent() {
    let stack = Stack::start().await;
    // What the weather agent will say about Berlin for the next two days.
    let forecast = output_of(
        "weather_forecast",
        &stack
            .submit(
                "weather_forecast",
                json!({"city": "Berlin", "days": 2, "hourly": true}),
                None,
            )
            .await,
    );
    let p: Vec<i64> = forecast["hourly"]["precipitation_probability"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap_or(0))
        .collect();
    assert_eq!(p.len(), 48);
    // Threshold: the driest hour. Release the outdoor task into a wetter
    // hour that has a driest hour after it; it must wait for that one.
    let dry = *p.iter().min().unwrap();
    let last_dry = p.iter().rposition(|&x| x == dry).unwrap();
    let release = p[..last_dry]
        .iter()
        .position(|&x| x > dry)
        .expect("a wet hour before the last dry one");
    let expected_start = release + p[release..].iter().position(|&x| x <= dry).unwrap();
    let forecasts_before = stack.control().forecast_requests();

    let input = json!({
        "tasks": [
            {"id": "office", "duration_h": 2},
            {"id": "pour", "duration_h": 1, "outdoor": true, "earliest_start_h": release},
        ],
        "weather": {"city": "Berlin", "days": 2, "max_precipitation_probability": dry},
    });
    let out = output_of("plan_tasks", &stack.submit("plan_tasks", input, None).await);
    assert_eq!(out["weather_adjusted"], json!(["pour"]));
    let pour = &out["schedule"][1];
    assert_eq!(pour["id"], "pour");
    close(&pour["start_h"], expected_start as f64, 1e-9);
    assert_eq!(out["weather"]["forecast_hours"], 48);
    assert_eq!(out["weather"]["location"]["name"], "Berlin");
    assert_eq!(out["weather"]["fixture"], true);
    assert_eq!(out["weather"]["source"], stack.fixture.addr().to_string());
    assert_eq!(
        stack.control().forecast_requests(),
        forecasts_before + 1,
        "the forecast came from the weather agent"
    );

    // A place the weather agent cannot find fails the plan for good.
    let input = json!({
        "tasks": [{"id": "pour", "duration_h": 1, "outdoor": true}],
        "weather": {"city": "Atlantis"},
    });
    let error = error_of(&stack.submit("plan_tasks", input, None).await);
    assert_eq!(error["code"], "weather_unavailable");
    assert!(
        error["message"].as_str().unwrap().contains("Atlantis"),
        "{error}"
    );
    stack.stop().await;
}

/// A chart over 64 KiB is stored in the `agentry-artifacts` object store
/// and the result references it instead of carrying the SVG.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_chart_becomes_an_artifact() {
    let stack = Stack::start().await;
    let series: Vec<Value> = (0..2)
        .map(|s| {
            let y: Vec<f64> = (0..2_500)
                .map(|i| ((i as f64) * 0.01 + s as f64).sin() * 100.0)
                .collect();
            json!({"name": format!("s{s}"), "y": y})
        })
        .collect();
    let input = json!({"chart": "scatter", "title": "Large", "series": series});
    let id = RequestId::generate();
    let event = client::task_request(&id, SOURCE, "visualization", input, None);
    let outcome = stack
        .acme
        .submit(&event, Duration::from_secs(60))
        .await
        .unwrap();
    let out = output_of("visualization", &outcome);
    assert!(out.get("svg").is_none(), "no inline svg");
    let artifact = &out["artifact"];
    let key = format!("{id}.svg");
    assert_eq!(artifact["bucket"], "agentry-artifacts");
    assert_eq!(artifact["key"], key.as_str());
    assert_eq!(artifact["content_type"], "image/svg+xml");
    let bytes = artifact["bytes"].as_u64().unwrap();
    assert!(bytes > 64 * 1024, "{bytes} bytes");
    assert_eq!(out["bytes"], bytes);
    assert_eq!(out["series_count"], 2);

    let store = stack
        .js
        .get_object_store("agentry-artifacts")
        .await
        .unwrap();
    let mut object = store.get(&key).await.unwrap();
    let mut svg = String::new();
    object.read_to_string(&mut svg).await.unwrap();
    assert_eq!(svg.len() as u64, bytes);
    assert!(svg.contains("<svg"), "an SVG document");
    assert_eq!(svg.matches("class=\"series\"").count(), 2);
    stack.stop().await;
}
