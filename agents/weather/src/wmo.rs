//! WMO weather interpretation codes (WW) as Open-Meteo reports them in `weather_code`.

/// Every code Open-Meteo emits, with a short English description.
pub const CODES: &[(i64, &str)] = &[
    (0, "Clear sky"),
    (1, "Mainly clear"),
    (2, "Partly cloudy"),
    (3, "Overcast"),
    (45, "Fog"),
    (48, "Depositing rime fog"),
    (51, "Light drizzle"),
    (53, "Moderate drizzle"),
    (55, "Dense drizzle"),
    (56, "Light freezing drizzle"),
    (57, "Dense freezing drizzle"),
    (61, "Slight rain"),
    (63, "Moderate rain"),
    (65, "Heavy rain"),
    (66, "Light freezing rain"),
    (67, "Heavy freezing rain"),
    (71, "Slight snow fall"),
    (73, "Moderate snow fall"),
    (75, "Heavy snow fall"),
    (77, "Snow grains"),
    (80, "Slight rain showers"),
    (81, "Moderate rain showers"),
    (82, "Violent rain showers"),
    (85, "Slight snow showers"),
    (86, "Heavy snow showers"),
    (95, "Thunderstorm"),
    (96, "Thunderstorm with slight hail"),
    (99, "Thunderstorm with heavy hail"),
];

/// Text for a WMO code; codes outside the table read "Unknown weather code".
pub fn describe(code: i64) -> &'static str {
    CODES
        .iter()
        .find(|(c, _)| *c == code)
        .map_or("Unknown weather code", |(_, d)| d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_covers_the_ends() {
        assert!(CODES.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(describe(0), "Clear sky");
        assert_eq!(describe(63), "Moderate rain");
        assert_eq!(describe(99), "Thunderstorm with heavy hail");
        assert_eq!(describe(42), "Unknown weather code");
    }
}
