//! The client against the fixture: inputs, outputs, errors, retries, timeouts.

use std::time::{Duration, Instant};

use chrono::NaiveDate;
use serde_json::{Value, json};

use super::super::{Config, Endpoint, WeatherClient, WeatherError, wmo};
use super::{client, config, f, fixture, round1};

/// A Berlin query geocodes with Open-Meteo's parameters, asks for current
/// conditions in metric units, and normalises the fixture's answer.
#[tokio::test]
async fn berlin_current_conditions() {
    let server = fixture().await;
    let out = client(&server)
        .current(&json!({"city": "Berlin"}))
        .await
        .expect("current");

    let geo = server
        .control()
        .last_request("/v1/search")
        .expect("geocoded");
    assert_eq!(geo.param("name"), Some("Berlin"));
    assert_eq!(geo.param("count"), Some("1"));
    assert_eq!(geo.param("language"), Some("en"));
    assert_eq!(geo.param("format"), Some("json"));
    assert_eq!(geo.param("countryCode"), None);
    let fc = server
        .control()
        .last_request("/v1/forecast")
        .expect("forecast");
    assert_eq!(fc.param("latitude"), Some("52.52437"));
    assert_eq!(fc.param("longitude"), Some("13.41053"));
    assert_eq!(
        fc.param("current"),
        Some(
            "temperature_2m,relative_humidity_2m,apparent_temperature,precipitation,weather_code,wind_speed_10m,wind_direction_10m"
        )
    );
    assert_eq!(fc.param("timezone"), Some("auto"));
    assert_eq!(fc.param("temperature_unit"), Some("celsius"));
    assert_eq!(fc.param("wind_speed_unit"), Some("kmh"));
    assert_eq!(fc.param("precipitation_unit"), Some("mm"));
    assert_eq!(server.control().request_count(), 2);

    assert_eq!(
        out["location"],
        json!({"name": "Berlin", "country": "Germany", "country_code": "DE", "admin1": "Berlin",
               "latitude": 52.52437, "longitude": 13.41053, "timezone": "Europe/Berlin",
               "utc_offset_seconds": 3600, "elevation": 74.0})
    );
    assert_eq!(
        out["units"],
        json!({"system": "metric", "temperature": "°C", "apparent_temperature": "°C", "humidity": "%",
               "precipitation": "mm", "wind_speed": "km/h", "wind_direction": "°"})
    );
    let cur = &out["current"];
    assert_eq!(cur["time"], "2026-01-15T13:00");
    // The same values the fixture generates for Berlin at 13:00 local.
    let expected = agentry_weather_fixture::weather_at(
        52.52437,
        13.41053,
        NaiveDate::from_ymd_opt(2026, 1, 15).expect("date"),
        13.0,
    );
    assert_eq!(f(&cur["temperature"]), round1(expected.temperature));
    assert_eq!(
        f(&cur["apparent_temperature"]),
        round1(expected.apparent_temperature)
    );
    assert_eq!(cur["humidity"], json!(expected.humidity.round() as i64));
    assert_eq!(f(&cur["wind_speed"]), round1(expected.wind_speed));
    assert_eq!(cur["weather_code"], json!(expected.weather_code));
    assert_eq!(cur["description"], wmo::describe(expected.weather_code));
    assert!(
        (-15.0..12.0).contains(&f(&cur["temperature"])),
        "January in Berlin: {cur}"
    );
    assert_eq!(
        out["source"],
        json!(format!("127.0.0.1:{}", server.addr().port()))
    );
    assert_eq!(out["fixture"], true);
}

/// Imperial units reach the API as Open-Meteo's unit parameters, the labels
/// come back from it, and values are the metric ones converted.
#[tokio::test]
async fn paris_forecast_two_days_imperial() {
    let server = fixture().await;
    let c = client(&server);
    let imperial = c
        .forecast(&json!({"city": "Paris", "country_code": "FR", "days": 2, "units": "imperial"}))
        .await
        .expect("imperial forecast");
    let fc = server
        .control()
        .last_request("/v1/forecast")
        .expect("forecast");
    assert_eq!(fc.param("forecast_days"), Some("2"));
    assert_eq!(fc.param("temperature_unit"), Some("fahrenheit"));
    assert_eq!(fc.param("wind_speed_unit"), Some("mph"));
    assert_eq!(fc.param("precipitation_unit"), Some("inch"));
    assert_eq!(
        fc.param("daily"),
        Some(
            "weather_code,temperature_2m_max,temperature_2m_min,precipitation_sum,precipitation_probability_max"
        )
    );
    assert_eq!(
        fc.param("hourly"),
        Some("temperature_2m,precipitation_probability,precipitation,weather_code,wind_speed_10m")
    );
    let geo = server
        .control()
        .last_request("/v1/search")
        .expect("geocoded");
    assert_eq!(geo.param("countryCode"), Some("FR"));

    assert_eq!(
        imperial["units"],
        json!({"system": "imperial", "temperature": "°F", "precipitation": "inch",
               "precipitation_probability": "%", "wind_speed": "mp/h"})
    );
    assert_eq!(imperial["location"]["name"], "Paris");
    assert_eq!(imperial["location"]["country"], "France");
    assert_eq!(imperial["location"]["timezone"], "Europe/Paris");
    let daily = imperial["daily"].as_array().expect("daily");
    let dates: Vec<&str> = daily.iter().filter_map(|d| d["date"].as_str()).collect();
    assert_eq!(dates, ["2026-01-15", "2026-01-16"]);
    let hourly = &imperial["hourly"];
    let times = hourly["time"].as_array().expect("hourly time");
    assert_eq!(times.len(), 48);
    assert_eq!(times[0], "2026-01-15T00:00");
    assert_eq!(times[47], "2026-01-16T23:00");
    assert_eq!(
        hourly["precipitation_probability"].as_array().map(Vec::len),
        Some(48)
    );
    for day in daily {
        let code = day["weather_code"].as_i64().expect("code");
        assert_eq!(day["description"], wmo::describe(code));
        assert!(f(&day["temp_max"]) >= f(&day["temp_min"]));
    }

    let metric = c
        .forecast(&json!({"city": "Paris", "country_code": "FR", "days": 2}))
        .await
        .expect("metric forecast");
    assert_eq!(metric["units"]["temperature"], "°C");
    for (m, i) in metric["daily"].as_array().into_iter().flatten().zip(daily) {
        let (c_max, f_max) = (f(&m["temp_max"]), f(&i["temp_max"]));
        // Both sides rounded to 0.1: at most 0.05 * 1.8 + 0.05 apart.
        assert!(
            (f_max - (c_max * 1.8 + 32.0)).abs() <= 0.15,
            "{c_max} °C vs {f_max} °F"
        );
        let (mm, inch) = (f(&m["precipitation_sum"]), f(&i["precipitation_sum"]));
        assert!((inch - mm / 25.4).abs() <= 0.003, "{mm} mm vs {inch} inch");
        assert_eq!(m["weather_code"], i["weather_code"]);
    }
    let (mt, it) = (&metric["hourly"]["temperature"], &hourly["temperature"]);
    for k in 0..48 {
        assert!((f(&it[k]) - (f(&mt[k]) * 1.8 + 32.0)).abs() <= 0.15);
    }
}

/// Coordinates skip geocoding; the location is the point given, in the
/// zone the forecast API reports.
#[tokio::test]
async fn coordinates_input() {
    let server = fixture().await;
    let c = client(&server);
    let out = c
        .current(&json!({"latitude": 35.6895, "longitude": 139.69171}))
        .await
        .expect("current");
    assert_eq!(server.control().geocoding_requests(), 0);
    assert_eq!(server.control().forecast_requests(), 1);
    assert_eq!(out["location"]["name"], Value::Null);
    assert_eq!(out["location"]["latitude"], 35.6895);
    assert_eq!(out["location"]["timezone"], "Asia/Tokyo");
    assert_eq!(out["location"]["utc_offset_seconds"], 32400);
    assert_eq!(out["current"]["time"], "2026-01-15T21:00");

    let out = c
        .forecast(&json!({"latitude": 40.71, "longitude": -74.01, "days": 1, "hourly": false}))
        .await
        .expect("forecast");
    assert_eq!(out["location"]["timezone"], "America/New_York");
    assert_eq!(out["daily"][0]["date"], "2026-01-15");
    assert!(out.get("hourly").is_none(), "hourly: false leaves it out");
    let fc = server
        .control()
        .last_request("/v1/forecast")
        .expect("forecast");
    assert_eq!(fc.param("hourly"), None);
}

/// Unknown places fail permanently with the name in the message;
/// `country_code` narrows geocoding.
#[tokio::test]
async fn unknown_city_is_permanent() {
    let server = fixture().await;
    let c = client(&server);
    let err = c
        .current(&json!({"city": "Atlantis"}))
        .await
        .expect_err("no such city");
    assert!(
        matches!(&err, WeatherError::UnknownCity { city, country_code: None } if city == "Atlantis"),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("Atlantis"));
    assert_eq!(server.control().forecast_requests(), 0);

    let err = c
        .current(&json!({"city": "London", "country_code": "jp"}))
        .await
        .expect_err("no London in Japan");
    assert!(
        matches!(&err, WeatherError::UnknownCity { country_code: Some(cc), .. } if cc == "JP"),
        "{err:?}"
    );
    let out = c
        .current(&json!({"city": "London", "country_code": "CA"}))
        .await
        .expect("London, Ontario");
    assert_eq!(out["location"]["admin1"], "Ontario");
    assert_eq!(out["location"]["timezone"], "America/Toronto");
    assert_eq!(out["current"]["time"], "2026-01-15T07:00");
}

/// Invalid inputs fail before any request is made.
#[tokio::test]
async fn invalid_input_makes_no_request() {
    let server = fixture().await;
    let c = client(&server);
    for input in [
        json!({"city": "Berlin", "latitude": 1.0, "longitude": 2.0}),
        json!({"city": "Berlin", "days": 17}),
        json!({"city": "Berlin", "units": "kelvin"}),
        json!({"latitude": 100.0, "longitude": 0.0}),
    ] {
        let err = c.forecast(&input).await.expect_err("invalid");
        assert!(
            matches!(err, WeatherError::InvalidInput(_)),
            "{input}: {err:?}"
        );
        assert!(!err.is_retryable());
    }
    assert_eq!(server.control().request_count(), 0);
}

/// 503s and 429s are retried within one call; each endpoint call has its own budget.
#[tokio::test]
async fn transient_failures_are_retried() {
    let server = fixture().await;
    let c = client(&server);
    server.control().fail_next(1);
    c.current(&json!({"latitude": 48.85, "longitude": 2.35}))
        .await
        .expect("second attempt succeeds");
    assert_eq!(server.control().forecast_requests(), 2);

    server.control().fail_next(2);
    c.current(&json!({"city": "Tokyo"}))
        .await
        .expect("third geocoding attempt succeeds");
    assert_eq!(server.control().geocoding_requests(), 3);
    assert_eq!(server.control().forecast_requests(), 3);

    server.control().fail_next_with_status(1, 429);
    c.current(&json!({"latitude": 48.85, "longitude": 2.35}))
        .await
        .expect("rate limit retried");
    assert_eq!(server.control().forecast_requests(), 5);
}

/// A 503 that outlasts the retry budget comes back retryable, after exactly
/// 1 + max_retries attempts.
#[tokio::test]
async fn persistent_503_is_retryable() {
    let server = fixture().await;
    let c = WeatherClient::new(
        Config {
            max_retries: 2,
            ..config(&server)
        },
        None,
    )
    .expect("client");
    server.control().fail_next(100);
    let err = c
        .current(&json!({"latitude": 48.85, "longitude": 2.35}))
        .await
        .expect_err("keeps failing");
    match &err {
        WeatherError::Upstream {
            endpoint: Endpoint::Forecast,
            status: 503,
            reason,
            ..
        } => assert!(reason.contains("injected failure"), "{reason}"),
        other => panic!("expected a 503, got {other:?}"),
    }
    assert!(err.is_retryable());
    assert_eq!(server.control().forecast_requests(), 3);
}

/// A 4xx is the request's fault: no retry, Open-Meteo's reason kept.
#[tokio::test]
async fn upstream_4xx_is_permanent() {
    let server = fixture().await;
    server.control().fail_next_with_status(5, 400);
    let err = client(&server)
        .current(&json!({"latitude": 48.85, "longitude": 2.35}))
        .await
        .expect_err("400");
    assert!(
        matches!(&err, WeatherError::Upstream { status: 400, reason, .. } if reason == "fixture: injected failure (HTTP 400)"),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert_eq!(server.control().forecast_requests(), 1);
}

/// A fixture slower than the client's timeout gives a retryable Timeout
/// error after the retries, in about (1 + max_retries) * timeout.
#[tokio::test]
async fn slow_upstream_times_out() {
    let server = fixture().await;
    let c = WeatherClient::new(
        Config {
            timeout: Duration::from_millis(300),
            max_retries: 1,
            ..config(&server)
        },
        None,
    )
    .expect("client");
    server.control().delay_next(10, Duration::from_secs(3));
    let started = Instant::now();
    let err = c
        .current(&json!({"latitude": 48.85, "longitude": 2.35}))
        .await
        .expect_err("times out");
    let took = started.elapsed();
    assert!(
        matches!(err, WeatherError::Timeout { endpoint: Endpoint::Forecast, after } if after == Duration::from_millis(300)),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert_eq!(server.control().forecast_requests(), 2);
    assert!(took >= Duration::from_millis(600), "{took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
}
