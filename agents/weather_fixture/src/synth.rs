//! Deterministic weather: the same place and local hour always give the same
//! values. Temperature follows the season and the time of day plus a
//! day-to-day anomaly that is interpolated across midnight; wet days bring
//! rain (snow when cold, showers and thunder when warm), clouds and humidity.
//! All values are metric and unrounded; the server converts and rounds.

use std::f64::consts::TAU;

use chrono::{Datelike, NaiveDate};

use super::cities::{self, City, Climate};

/// A place to generate weather for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Site {
    seed: u64,
    climate: Climate,
    latitude: f64,
}

/// One hour (or instant) of weather, metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hour {
    pub temperature: f64,
    pub apparent_temperature: f64,
    pub humidity: f64,
    /// mm in this hour.
    pub precipitation: f64,
    pub precipitation_probability: f64,
    pub weather_code: i64,
    pub cloud_cover: f64,
    /// km/h.
    pub wind_speed: f64,
    pub wind_gusts: f64,
    pub wind_direction: f64,
    pub is_day: bool,
}

/// Aggregates of one local day.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Day {
    pub temperature_max: f64,
    pub temperature_min: f64,
    pub apparent_temperature_max: f64,
    pub apparent_temperature_min: f64,
    pub precipitation_sum: f64,
    pub precipitation_hours: f64,
    pub precipitation_probability_max: f64,
    /// Most severe code of the day.
    pub weather_code: i64,
    pub wind_speed_max: f64,
    pub wind_gusts_max: f64,
}

// Salts for independent random streams.
const ANOMALY: u64 = 1;
const WET: u64 = 2;
const INTENSITY: u64 = 3;
const CLOUDS: u64 = 4;
const WIND_DIR: u64 = 5;
const WIND_FORCE: u64 = 6;
const CONVECTIVE: u64 = 7;
const RAIN_HOUR: u64 = 8;
const RAIN_RATE: u64 = 9;
const CLOUD_JITTER: u64 = 10;
const DIR_JITTER: u64 = 11;
const PROBABILITY: u64 = 12;
const GUSTS: u64 = 13;

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Site {
    /// A bundled city, or any point: near a bundled city (about 2°) it gets
    /// that city's climate and weather; elsewhere a climate from latitude.
    pub(crate) fn at(latitude: f64, longitude: f64) -> (Self, Option<&'static City>) {
        match cities::near(latitude, longitude) {
            Some(city) => (Self::city(city), Some(city)),
            None => {
                let a = latitude.abs();
                let climate = Climate {
                    mean: (28.0 - 0.45 * a).max(-25.0),
                    seasonal: (0.3 * a).min(22.0),
                    diurnal: 4.5,
                    warmest_day: if latitude >= 0.0 { 200.0 } else { 17.0 },
                    wet_days: 0.35,
                    humidity: 72.0,
                    wind: 14.0,
                };
                let seed = splitmix(((latitude * 100.0).round() as i64 as u64) << 32)
                    ^ splitmix((longitude * 100.0).round() as i64 as u64);
                (
                    Self {
                        seed,
                        climate,
                        latitude,
                    },
                    None,
                )
            }
        }
    }

    pub(crate) fn city(city: &City) -> Self {
        Self {
            seed: splitmix(city.id),
            climate: city.climate,
            latitude: city.latitude,
        }
    }

    /// Uniform in [0, 1) for (day, slot, stream).
    fn u(&self, day: i64, slot: i64, salt: u64) -> f64 {
        let h = splitmix(
            self.seed
                ^ splitmix((day as u64).wrapping_mul(0x0100_0000_01B3))
                ^ splitmix((slot as u64) ^ salt.rotate_left(29)),
        );
        (h >> 11) as f64 / (1u64 << 53) as f64
    }

    fn anomaly(&self, day: i64) -> f64 {
        (self.u(day, 0, ANOMALY) - 0.5) * 7.0
    }

    fn wet(&self, day: i64) -> bool {
        self.u(day, 0, WET) < self.climate.wet_days
    }

    /// Weather at local `date`, `hour` in [0, 24): temperature, humidity and
    /// wind vary continuously, the rest by whole hour.
    pub(crate) fn at_time(&self, date: NaiveDate, hour: f64) -> Hour {
        let c = &self.climate;
        let day = i64::from(date.num_days_from_ce());
        let h = hour.clamp(0.0, 23.999);
        let slot = h.floor() as i64;
        let wet = self.wet(day);

        let day_of_year = f64::from(date.ordinal0()) + h / 24.0;
        let seasonal = c.mean + c.seasonal * (TAU * (day_of_year - c.warmest_day) / 365.25).cos();
        let damp = if wet { 0.6 } else { 1.0 };
        let diurnal = c.diurnal * damp * (TAU * (h - 15.0) / 24.0).cos();
        let (a0, a1) = (self.anomaly(day), self.anomaly(day + 1));
        let anomaly = a0 + (a1 - a0) * h / 24.0;
        let temperature = seasonal + diurnal + anomaly - if wet { 1.0 } else { 0.0 };

        let precipitation = if wet && self.u(day, slot, RAIN_HOUR) < 0.4 {
            let intensity = 0.4 + 2.6 * self.u(day, 0, INTENSITY).powi(2);
            intensity * (0.3 + 1.2 * self.u(day, slot, RAIN_RATE))
        } else {
            0.0
        };
        let raining = precipitation > 0.0;

        let humidity = (c.humidity - 3.0 * diurnal
            + if raining { 15.0 } else { 0.0 }
            + if wet { 5.0 } else { 0.0 })
        .clamp(20.0, 100.0);

        let cloudiness = if wet {
            75.0 + 25.0 * self.u(day, 0, CLOUDS)
        } else {
            90.0 * self.u(day, 0, CLOUDS)
        };
        let cloud_cover = if raining {
            90.0 + 10.0 * self.u(day, slot, CLOUD_JITTER)
        } else {
            (cloudiness + (self.u(day, slot, CLOUD_JITTER) - 0.5) * 30.0).clamp(0.0, 100.0)
        };

        let convective = self.u(day, 0, CONVECTIVE) < 0.35;
        let weather_code = if raining {
            if temperature <= 0.5 {
                match precipitation {
                    r if r < 1.0 => 71,
                    r if r < 2.5 => 73,
                    _ => 75,
                }
            } else if convective && temperature >= 18.0 {
                match precipitation {
                    r if r >= 2.0 => 95,
                    r if r >= 1.0 => 81,
                    _ => 80,
                }
            } else {
                match precipitation {
                    r if r < 0.3 => 51,
                    r if r < 1.0 => 61,
                    r if r < 2.5 => 63,
                    _ => 65,
                }
            }
        } else if humidity >= 97.0 && (3..=9).contains(&slot) && cloud_cover < 60.0 {
            45
        } else {
            match cloud_cover {
                cc if cc < 15.0 => 0,
                cc if cc < 40.0 => 1,
                cc if cc < 75.0 => 2,
                _ => 3,
            }
        };

        let p = self.u(day, slot, PROBABILITY);
        let precipitation_probability = match (wet, raining) {
            (true, true) => 70.0 + 25.0 * p,
            (true, false) => 30.0 + 35.0 * p,
            (false, _) => 15.0 * p,
        };

        let daytime = ((TAU * (h - 14.0) / 24.0).cos() + 1.0) / 2.0;
        let force = 0.6 + 0.9 * self.u(day, 0, WIND_FORCE);
        let wind_speed = c.wind * force * (0.8 + 0.4 * daytime) * if raining { 1.2 } else { 1.0 };
        let wind_gusts = wind_speed * (1.5 + 0.4 * self.u(day, slot, GUSTS));
        let wind_direction = (self.u(day, 0, WIND_DIR) * 360.0
            + (self.u(day, slot, DIR_JITTER) - 0.5) * 50.0)
            .rem_euclid(360.0);

        // Australian apparent temperature (Steadman), as Open-Meteo uses.
        let vapour = humidity / 100.0 * 6.105 * (17.27 * temperature / (237.7 + temperature)).exp();
        let apparent_temperature = temperature + 0.33 * vapour - 0.70 * (wind_speed / 3.6) - 4.0;

        // Day length from latitude and season; solar noon taken as 12:00.
        let amplitude = (4.5 * self.latitude.abs() / 52.0).min(11.9);
        let summer = (TAU * (day_of_year - 172.0) / 365.25).cos() * self.latitude.signum();
        let day_length = 12.0 + amplitude * summer;
        let is_day = (h - 12.0).abs() < day_length / 2.0;

        Hour {
            temperature,
            apparent_temperature,
            humidity,
            precipitation,
            precipitation_probability,
            weather_code,
            cloud_cover,
            wind_speed,
            wind_gusts,
            wind_direction,
            is_day,
        }
    }

    /// The 24 hours of a local day.
    pub(crate) fn hours(&self, date: NaiveDate) -> [Hour; 24] {
        std::array::from_fn(|i| self.at_time(date, i as f64))
    }

    pub(crate) fn day(&self, date: NaiveDate) -> Day {
        let hours = self.hours(date);
        let fold = |f: fn(&Hour) -> f64, pick: fn(f64, f64) -> f64, init: f64| {
            hours.iter().map(f).fold(init, pick)
        };
        Day {
            temperature_max: fold(|h| h.temperature, f64::max, f64::MIN),
            temperature_min: fold(|h| h.temperature, f64::min, f64::MAX),
            apparent_temperature_max: fold(|h| h.apparent_temperature, f64::max, f64::MIN),
            apparent_temperature_min: fold(|h| h.apparent_temperature, f64::min, f64::MAX),
            precipitation_sum: hours.iter().map(|h| h.precipitation).sum(),
            precipitation_hours: hours.iter().filter(|h| h.precipitation > 0.0).count() as f64,
            precipitation_probability_max: fold(|h| h.precipitation_probability, f64::max, 0.0),
            weather_code: hours.iter().map(|h| h.weather_code).max().unwrap_or(0),
            wind_speed_max: fold(|h| h.wind_speed, f64::max, 0.0),
            wind_gusts_max: fold(|h| h.wind_gusts, f64::max, 0.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(s: &str) -> NaiveDate {
        s.parse().expect("date")
    }

    #[test]
    fn deterministic_and_consistent() {
        let (berlin, city) = Site::at(52.52437, 13.41053);
        assert_eq!(city.map(|c| c.name), Some("Berlin"));
        let d = date("2026-01-15");
        assert_eq!(berlin.at_time(d, 13.0), berlin.at_time(d, 13.0));
        let hours = berlin.hours(d);
        let day = berlin.day(d);
        let max = hours.iter().map(|h| h.temperature).fold(f64::MIN, f64::max);
        assert_eq!(day.temperature_max, max);
        let sum: f64 = hours.iter().map(|h| h.precipitation).sum();
        assert_eq!(day.precipitation_sum, sum);
        assert!(hours.iter().all(|h| h.weather_code <= day.weather_code));
    }

    #[test]
    fn seasons_and_places_are_plausible() {
        let (berlin, _) = Site::at(52.52, 13.41);
        let (tokyo, _) = Site::at(35.69, 139.69);
        let mut winter = Vec::new();
        let mut summer = Vec::new();
        for offset in 0..28 {
            let jan = date("2026-01-01") + chrono::Duration::days(offset);
            let jul = date("2026-07-01") + chrono::Duration::days(offset);
            winter.push(berlin.day(jan));
            summer.push(berlin.day(jul));
            for h in berlin.hours(jan).iter().chain(tokyo.hours(jul).iter()) {
                assert!((0.0..=100.0).contains(&h.humidity));
                assert!((0.0..360.0).contains(&h.wind_direction));
                assert!(h.precipitation >= 0.0);
                assert!(
                    (0..=99).contains(&h.weather_code),
                    "WMO code {}",
                    h.weather_code
                );
            }
        }
        let mean = |v: &[Day]| {
            v.iter()
                .map(|d| (d.temperature_max + d.temperature_min) / 2.0)
                .sum::<f64>()
                / v.len() as f64
        };
        let (w, s) = (mean(&winter), mean(&summer));
        assert!((-6.0..6.0).contains(&w), "Berlin January mean {w}");
        assert!((15.0..25.0).contains(&s), "Berlin July mean {s}");
        let wet = winter.iter().filter(|d| d.precipitation_sum > 0.0).count();
        assert!((4..=22).contains(&wet), "{wet} wet days of 28");
    }

    #[test]
    fn points_far_from_bundled_cities_still_get_weather() {
        let (site, city) = Site::at(-33.87, 151.21);
        assert!(city.is_none());
        let jan = site.day(date("2026-01-10"));
        let jul = site.day(date("2026-07-10"));
        assert!(
            jan.temperature_max > jul.temperature_max,
            "southern summer is in January"
        );
    }
}
