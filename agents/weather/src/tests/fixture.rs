//! The fixture's own HTTP surface.

use std::net::Ipv4Addr;
use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::super::{Config, Endpoint, WeatherClient, WeatherError};
use super::fixture;
use agentry_weather_fixture::{self as om, Server};

/// The fixture speaks Open-Meteo's JSON: metadata, `*_units`, 15-minute
/// `current` with `interval`, hourly and daily columns, and its error shape.
#[tokio::test]
async fn fixture_speaks_open_meteo_json() {
    let server = fixture().await;
    let http = reqwest::Client::new();
    let base = server.base_url();
    let resp = http
        .get(format!("{base}/v1/forecast?latitude=52.52&longitude=13.41&current=temperature_2m,weather_code&hourly=temperature_2m,precipitation_probability&daily=temperature_2m_max,precipitation_sum&timezone=auto&forecast_days=3"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    assert_eq!(om::FIXTURE_HEADER, crate::FIXTURE_HEADER);
    assert_eq!(
        resp.headers()
            .get(crate::FIXTURE_HEADER)
            .map(|v| v.as_bytes()),
        Some(&b"open-meteo"[..])
    );
    let body: Value = resp.json().await.expect("json");
    for key in [
        "latitude",
        "longitude",
        "generationtime_ms",
        "utc_offset_seconds",
        "timezone",
        "timezone_abbreviation",
        "elevation",
    ] {
        assert!(body.get(key).is_some(), "missing {key}");
    }
    assert_eq!(body["timezone"], "Europe/Berlin");
    assert_eq!(body["timezone_abbreviation"], "CET");
    assert_eq!(
        body["current_units"],
        json!({"time": "iso8601", "interval": "seconds", "temperature_2m": "°C", "weather_code": "wmo code"})
    );
    assert_eq!(body["current"]["interval"], 900);
    assert_eq!(body["current"]["time"], "2026-01-15T13:00");
    assert_eq!(body["hourly"]["time"].as_array().map(Vec::len), Some(72));
    assert_eq!(
        body["hourly"]["precipitation_probability"]
            .as_array()
            .map(Vec::len),
        Some(72)
    );
    assert_eq!(body["hourly_units"]["precipitation_probability"], "%");
    assert_eq!(
        body["daily"]["time"],
        json!(["2026-01-15", "2026-01-16", "2026-01-17"])
    );
    assert_eq!(body["daily_units"]["precipitation_sum"], "mm");

    for (query, needle) in [
        ("latitude=100&longitude=0", "Latitude"),
        ("latitude=1&longitude=2&forecast_days=17", "Forecast days"),
        ("latitude=1&longitude=2&hourly=foo", "foo"),
        ("latitude=1&longitude=2&temperature_unit=kelvin", "kelvin"),
        ("longitude=2", "latitude"),
    ] {
        let resp = http
            .get(format!("{base}/v1/forecast?{query}"))
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 400, "{query}");
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["error"], true);
        assert!(
            body["reason"].as_str().is_some_and(|r| r.contains(needle)),
            "{query}: {body}"
        );
    }

    let none: Value = http
        .get(format!(
            "{base}/v1/search?name=Atlantis&count=1&language=en&format=json"
        ))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert!(none.get("results").is_none(), "{none}");
    assert!(none.get("generationtime_ms").is_some());
    let paris: Value = http
        .get(format!("{base}/v1/search?name=paris&count=10"))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let results = paris["results"].as_array().expect("results");
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["country_code"], "FR");
    assert_eq!(results[0]["id"], 2988507);
    assert_eq!(results[0]["timezone"], "Europe/Paris");
    assert_eq!(results[1]["admin1"], "Texas");
}

/// `serve` runs on a caller's listener until its token is cancelled.
#[tokio::test]
async fn serve_stops_on_cancel() {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let token = CancellationToken::new();
    let task = tokio::spawn(om::serve(listener, token.clone()));
    let c =
        WeatherClient::new(Config::with_base_url(format!("http://{addr}")), None).expect("client");
    let out = c
        .forecast(&json!({"city": "San Francisco", "days": 1}))
        .await
        .expect("forecast");
    assert_eq!(out["location"]["timezone"], "America/Los_Angeles");
    assert_eq!(out["hourly"]["time"].as_array().map(Vec::len), Some(24));
    token.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("stops promptly")
        .expect("joins")
        .expect("served cleanly");

    let server = Server::start().await.expect("start");
    let base = server.base_url();
    server.stop().await.expect("stops cleanly");
    let gone = WeatherClient::new(
        Config {
            max_retries: 0,
            ..Config::with_base_url(base)
        },
        None,
    )
    .expect("client")
    .current(&json!({"latitude": 1.0, "longitude": 2.0}))
    .await
    .expect_err("nothing listens");
    assert!(
        matches!(
            gone,
            WeatherError::Unreachable {
                endpoint: Endpoint::Forecast,
                ..
            }
        ),
        "{gone:?}"
    );
    assert!(gone.is_retryable());
}

/// Every weather code the fixture generates has a WMO description.
#[test]
fn fixture_weather_codes_are_described() {
    for (lat, lon) in [(52.52, 13.41), (35.69, 139.69), (-33.87, 151.21)] {
        for day in 0..28 {
            for month in [1, 7] {
                let date = chrono::NaiveDate::from_ymd_opt(2026, month, 1 + day).expect("date");
                for hour in 0..24 {
                    let code = om::weather_at(lat, lon, date, f64::from(hour)).weather_code;
                    assert_ne!(crate::wmo::describe(code), "Unknown weather code", "{code}");
                }
            }
        }
    }
}
