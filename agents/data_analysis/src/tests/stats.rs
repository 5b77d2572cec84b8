use serde_json::{Value, json};

use super::LogicError;
use super::nist;
use super::statistical_analysis;
use super::{close, f};

fn describe(values: &[f64]) -> Value {
    let out =
        statistical_analysis(&json!({"data": {"v": values}, "analyses": ["descriptive"]})).unwrap();
    out["descriptive"]["v"].clone()
}

#[test]
fn nist_univariate_certified_mean_and_std() {
    // (data, certified mean, certified std, relative tolerance reached)
    let cases: Vec<(&str, Vec<f64>, f64, f64, f64)> = vec![
        ("NumAcc1", nist::NUMACC1.to_vec(), 10_000_002.0, 1.0, 0.0),
        (
            "NumAcc2",
            nist::numacc("1.2", "1.1", "1.3"),
            1.2,
            0.1,
            1e-14,
        ),
        (
            "NumAcc3",
            nist::numacc("1000000.2", "1000000.1", "1000000.3"),
            1_000_000.2,
            0.1,
            1e-9,
        ),
        (
            "Michelso",
            nist::MICHELSO.to_vec(),
            299.852_400_000_000,
            0.079_010_547_819_051_8,
            1e-13,
        ),
        (
            "Mavro",
            nist::MAVRO.to_vec(),
            2.001_856_000_000_00,
            0.000_429_123_454_003_053,
            1e-12,
        ),
        (
            "Lew",
            nist::LEW.to_vec(),
            -177.435_000_000_000,
            277.332_168_044_316,
            1e-14,
        ),
    ];
    for (name, values, mean, std, rel) in cases {
        let d = describe(&values);
        assert_eq!(d["count"], values.len(), "{name}");
        println!("{name}: mean {} std {}", d["mean"], d["std"]);
        close(f(&d, "/mean"), mean, rel.max(1e-15));
        close(f(&d, "/std"), std, rel);
        close(f(&d, "/variance"), std * std, rel * 2.0 + 1e-15);
    }
}

#[test]
fn nist_numacc4_is_exact_for_its_binary_inputs() {
    // 10000000.1 and 10000000.3 are not representable in binary64: the
    // inputs differ from the decimal ones by ~9e-10, which moves the exact
    // standard deviation of the binary values to 0.10000000055879354477...
    // (computed with exact rational arithmetic). The computation matches
    // that to 1e-12 and the certified 0.1 to the 5.6e-9 the data allow.
    let d = describe(&nist::numacc("10000000.2", "10000000.1", "10000000.3"));
    close(f(&d, "/std"), 0.100_000_000_558_793_544_77, 1e-12);
    close(f(&d, "/std"), 0.1, 6e-9);
    close(f(&d, "/mean"), 10_000_000.2, 1e-15);
}

#[test]
fn quartiles_type7_and_shape_hand_computed() {
    // 7 15 36 39 40 41: h = 5p. q1: h = 1.25 -> 15 + 0.25 * 21 = 20.25;
    // median: h = 2.5 -> 36 + 0.5 * 3 = 37.5; q3: h = 3.75 -> 39 + 0.75 = 39.75.
    let d = describe(&[41.0, 7.0, 39.0, 15.0, 40.0, 36.0]);
    assert_eq!(d["q1"], 20.25);
    assert_eq!(d["median"], 37.5);
    assert_eq!(d["q3"], 39.75);
    assert_eq!(d["iqr"], 19.5);
    assert_eq!(d["min"], 7.0);
    assert_eq!(d["max"], 41.0);
    assert_eq!(d["range"], 34.0);
    // 1..10: q1 h = 2.25 -> 3.25, median 5.5, q3 h = 6.75 -> 7.75.
    let d = describe(&(1..=10).map(f64::from).collect::<Vec<_>>());
    assert_eq!(
        (d["q1"].as_f64(), d["median"].as_f64(), d["q3"].as_f64()),
        (Some(3.25), Some(5.5), Some(7.75))
    );
    // 2 4 4 4 5 5 7 9: mean 5, deviations -3 -1 -1 -1 0 0 2 4,
    // m2 = 32, m3 = 42, m4 = 356; variance 32/7; g1 = sqrt(8) 42 / 32^1.5 =
    // 0.65625, G1 = g1 sqrt(56) / 6 = 0.81848755335679967...; g2 = 8 * 356 /
    // 1024 - 3 = -0.21875, G2 = (9 g2 + 6) 7 / 30 = 0.940625 (both equal to
    // Excel's SKEW/KURT formulas evaluated at 40 digits).
    let d = describe(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
    assert_eq!(d["mean"], 5.0);
    close(f(&d, "/variance"), 32.0 / 7.0, 1e-15);
    close(f(&d, "/std"), 2.138_089_935_299_395, 1e-15);
    close(f(&d, "/skewness"), 0.818_487_553_356_799_7, 1e-14);
    close(f(&d, "/kurtosis"), 0.940_625, 1e-14);
    assert_eq!(d["sum"], 40.0);
}

#[test]
fn small_samples_and_missing_values() {
    let out = statistical_analysis(
        &json!({"data": {"a": [1, null, 3], "b": [null, null, null]},
        "columns": ["a", "b"], "analyses": ["descriptive"]}),
    )
    .unwrap();
    let a = &out["descriptive"]["a"];
    assert_eq!(
        (a["count"].as_u64(), a["missing"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(a["mean"], 2.0);
    assert_eq!(a["skewness"], Value::Null);
    let b = &out["descriptive"]["b"];
    assert_eq!(b["count"], 0);
    assert_eq!(b["mean"], Value::Null);
    // A constant column has zero spread and no shape statistics.
    let d = describe(&[0.1, 0.1, 0.1, 0.1]);
    assert_eq!(d["std"], 0.0);
    assert_eq!(d["skewness"], Value::Null);
}

/// Anscombe's quartet, data set I.
fn anscombe() -> Value {
    json!({
        "x": [10, 8, 13, 9, 11, 14, 6, 4, 12, 7, 5],
        "y": [8.04, 6.95, 7.58, 8.81, 8.33, 9.96, 7.24, 4.26, 10.84, 4.82, 5.68],
    })
}

#[test]
fn anscombe_correlation_and_regression() {
    // Reference values from exact rational arithmetic on the decimal data
    // (Sxx = 110, Sxy = 55.01): mean y = 82.51/11, slope = 5501/11000,
    // intercept = 3.000090909..., r = 0.81642051634483984..., R² =
    // 0.66654245950877489..., se(slope) = 0.11790550059563409, t = 4.24145528889283,
    // p = 0.00216962887307880 (mpmath, 50 digits), se(intercept) =
    // 1.12474679080864393, residual se 1.23660332272632107, F 17.9899429676769717.
    let out = statistical_analysis(&json!({
        "data": anscombe(),
        "analyses": ["descriptive", "correlation", "regression"],
        "regression": {"x": "x", "y": "y"},
    }))
    .unwrap();
    assert_eq!(out["descriptive"]["x"]["mean"], 9.0);
    close(f(&out, "/descriptive/y/mean"), 7.500_909_090_909_091, 1e-15);
    close(
        f(&out, "/correlation/pearson/0/1"),
        0.816_420_516_344_839_8,
        1e-14,
    );
    assert_eq!(
        out["correlation"]["pearson"][1][0],
        out["correlation"]["pearson"][0][1]
    );
    assert_eq!(out["correlation"]["pearson"][0][0], 1.0);
    assert_eq!(out["correlation"]["pairs"][0][1], 11);
    let r = &out["regression"];
    close(
        f(r, "/coefficients/0/estimate"),
        0.500_090_909_090_909_1,
        1e-14,
    );
    close(f(r, "/intercept/estimate"), 3.000_090_909_090_909, 1e-14);
    close(f(r, "/r_squared"), 0.666_542_459_508_774_9, 1e-14);
    close(f(r, "/adj_r_squared"), 0.629_491_621_676_416_6, 1e-14);
    close(
        f(r, "/coefficients/0/std_error"),
        0.117_905_500_595_634_09,
        1e-13,
    );
    close(
        f(r, "/coefficients/0/t_value"),
        4.241_455_288_892_831,
        1e-13,
    );
    close(
        f(r, "/coefficients/0/p_value"),
        0.002_169_628_873_078_797,
        1e-11,
    );
    close(f(r, "/intercept/std_error"), 1.124_746_790_808_643_9, 1e-13);
    close(f(r, "/intercept/t_value"), 2.667_347_827_624_362, 1e-13);
    close(f(r, "/intercept/p_value"), 0.025_734_051_399_162_47, 1e-11);
    close(f(r, "/residual_std_error"), 1.236_603_322_726_321, 1e-13);
    close(f(r, "/f_statistic"), 17.989_942_967_676_97, 1e-13);
    close(f(r, "/f_p_value"), f(r, "/coefficients/0/p_value"), 1e-11);
    assert_eq!(
        (r["n"].as_u64(), r["df_residual"].as_u64()),
        (Some(11), Some(9))
    );
}

#[test]
fn spearman_with_ties_hand_computed() {
    // x = 1 2 2 3 4 -> ranks 1 2.5 2.5 4 5; y = 2 1 3 3 5 -> ranks 2 1 3.5 3.5 5.
    // Centred rank products sum to 29/4, each rank sum of squares is 19/2:
    // rho = 29/38. Pearson on the values: (27/5) / sqrt(26/5 * 44/5) = 27/sqrt(1144).
    let out = statistical_analysis(&json!({
        "data": [{"x": 1, "y": 2}, {"x": 2, "y": 1}, {"x": 2, "y": 3}, {"x": 3, "y": 3}, {"x": 4, "y": 5},
                 {"x": null, "y": 9}],
        "analyses": ["correlation"],
    }))
    .unwrap();
    assert_eq!(out["correlation"]["columns"], json!(["x", "y"]));
    close(f(&out, "/correlation/spearman/0/1"), 29.0 / 38.0, 1e-15);
    close(
        f(&out, "/correlation/pearson/0/1"),
        27.0 / 1144f64.sqrt(),
        1e-15,
    );
    // The row with x missing is left out pairwise.
    assert_eq!(out["correlation"]["pairs"][0][1], 5);
}

#[test]
fn nist_norris_simple_regression() {
    let out = statistical_analysis(&json!({
        "data": {"x": nist::NORRIS_X.to_vec(), "y": nist::NORRIS_Y.to_vec()},
        "analyses": ["regression"],
        "regression": {"x": "x", "y": "y"},
    }))
    .unwrap();
    let r = &out["regression"];
    close(f(r, "/intercept/estimate"), -0.262_323_073_774_029, 1e-12);
    close(
        f(r, "/coefficients/0/estimate"),
        1.002_116_818_020_45,
        1e-14,
    );
    close(f(r, "/intercept/std_error"), 0.232_818_234_301_152, 1e-12);
    close(
        f(r, "/coefficients/0/std_error"),
        0.429_796_848_199_937E-03,
        1e-12,
    );
    close(f(r, "/residual_std_error"), 0.884_796_396_144_373, 1e-12);
    close(f(r, "/r_squared"), 0.999_993_745_883_712, 1e-14);
    close(
        f(r, "/residual_sum_of_squares"),
        26.617_398_529_422_4,
        1e-12,
    );
    close(
        f(r, "/regression_sum_of_squares"),
        4_255_954.132_323_69,
        1e-14,
    );
    close(f(r, "/f_statistic"), 5_436_385.540_797_85, 1e-12);
}

#[test]
fn nist_longley_multiple_regression() {
    let names = ["y", "x1", "x2", "x3", "x4", "x5", "x6"];
    let records: Vec<Value> = nist::LONGLEY
        .iter()
        .map(|row| {
            let object: serde_json::Map<String, Value> = names
                .iter()
                .zip(row)
                .map(|(n, v)| (n.to_string(), json!(v)))
                .collect();
            Value::Object(object)
        })
        .collect();
    let out = statistical_analysis(&json!({
        "data": records,
        "analyses": ["regression"],
        "regression": {"x": ["x1", "x2", "x3", "x4", "x5", "x6"], "y": "y"},
    }))
    .unwrap();
    let r = &out["regression"];
    let mut worst: f64 = 0.0;
    for k in 0..7 {
        let (est, se) = if k == 0 {
            (f(r, "/intercept/estimate"), f(r, "/intercept/std_error"))
        } else {
            (
                f(r, &format!("/coefficients/{}/estimate", k - 1)),
                f(r, &format!("/coefficients/{}/std_error", k - 1)),
            )
        };
        worst = worst
            .max(((est - nist::LONGLEY_B[k]) / nist::LONGLEY_B[k]).abs())
            .max(((se - nist::LONGLEY_SD[k]) / nist::LONGLEY_SD[k]).abs());
        close(est, nist::LONGLEY_B[k], 1e-11);
        close(se, nist::LONGLEY_SD[k], 1e-11);
    }
    println!("Longley worst relative error: {worst:e}");
    close(f(r, "/residual_std_error"), 304.854_073_561_965, 1e-10);
    close(f(r, "/r_squared"), 0.995_479_004_577_296, 1e-13);
    close(f(r, "/residual_sum_of_squares"), 836_424.055_505_915, 1e-10);
    close(f(r, "/f_statistic"), 330.285_339_234_588, 1e-10);
    assert_eq!(r["df_residual"], 9);
}

#[test]
fn outliers_by_iqr_and_zscore() {
    // 1..9 and 50: q1 = 3.25, q3 = 7.75, IQR 4.5 -> fences -3.5 and 14.5.
    let mut v: Vec<f64> = (1..=9).map(f64::from).collect();
    v.push(50.0);
    let out = statistical_analysis(&json!({"data": {"v": v}, "analyses": ["outliers"]})).unwrap();
    let o = &out["outliers"];
    assert_eq!(o["method"], "iqr");
    assert_eq!(o["threshold"], 1.5);
    assert_eq!(o["columns"]["v"]["lower"], -3.5);
    assert_eq!(o["columns"]["v"]["upper"], 14.5);
    assert_eq!(o["columns"]["v"]["rows"], json!([9]));
    assert_eq!(o["columns"]["v"]["values"], json!([50.0]));
    // z-scores: with 19 zeros and one 10, mean 0.5, s = sqrt(95/19) = sqrt(5),
    // z(10) = 9.5 / sqrt(5) = 4.25 > 3; with threshold 5 nothing is flagged.
    let mut w = vec![0.0; 19];
    w.push(10.0);
    let out = statistical_analysis(&json!({"data": {"w": w}, "analyses": ["outliers"],
        "outliers": {"method": "zscore"}}))
    .unwrap();
    assert_eq!(out["outliers"]["columns"]["w"]["count"], 1);
    close(
        f(&out, "/outliers/columns/w/upper"),
        0.5 + 3.0 * 5f64.sqrt(),
        1e-15,
    );
    let out = statistical_analysis(&json!({"data": {"w": w}, "analyses": ["outliers"],
        "outliers": {"method": "zscore", "threshold": 5}}))
    .unwrap();
    assert_eq!(out["outliers"]["columns"]["w"]["count"], 0);
}

#[test]
fn defaults_skip_non_numeric_columns() {
    let out = statistical_analysis(&json!({"data": [
        {"city": "Oslo", "t": 3.5, "rain": 1}, {"city": "Rome", "t": 14.0, "rain": 0},
        {"city": "Lima", "t": 19.0, "rain": 0}]}))
    .unwrap();
    assert_eq!(out["columns"], json!(["rain", "t"]));
    assert_eq!(out["skipped_columns"], json!(["city"]));
    assert!(out.get("descriptive").is_some());
    assert!(out.get("correlation").is_some());
    assert!(out.get("outliers").is_some());
    assert!(out.get("regression").is_none());
    assert_eq!(out["rows"], 3);
}

#[test]
fn invalid_statistics_input() {
    let message = |input: Value| match statistical_analysis(&input) {
        Err(LogicError::InvalidInput(m)) => m,
        other => panic!("expected InvalidInput, got {other:?}"),
    };
    assert!(message(json!({"data": {"a": [1, 2], "b": [1]}})).starts_with("data.b: has 1 values"));
    assert_eq!(
        message(json!({"data": {"a": [1, 2]}, "columns": ["z"]})),
        "columns: unknown column `z` (columns: a)"
    );
    assert_eq!(
        message(json!({"data": [{"a": "x"}], "columns": ["a"]})),
        "columns: column `a` is string, not numeric"
    );
    assert_eq!(
        message(json!({"data": {"a": [1, 2, 3]}, "analyses": ["regression"]})),
        "regression: required when `analyses` contains \"regression\""
    );
    let m = message(json!({"data": {"a": [1]}, "analyses": ["descriptive", "magic"]}));
    assert!(m.starts_with("analyses[1]: unknown variant `magic`"), "{m}");
    let m = message(json!({"data": {"a": [1]}, "outliers": {"method": "iqr", "limit": 2}}));
    assert!(
        m.starts_with("outliers.limit: unknown field `limit`"),
        "{m}"
    );
    // Collinear predictors: b = 2a.
    let m = message(
        json!({"data": {"a": [1, 2, 3, 4, 5], "b": [2, 4, 6, 8, 10], "y": [1, 3, 2, 5, 4]},
        "analyses": ["regression"], "regression": {"x": ["a", "b"], "y": "y"}}),
    );
    assert!(
        m.starts_with("regression.x: predictor `b` is collinear"),
        "{m}"
    );
    let m = message(json!({"data": {"a": [1, 1, 1, 1], "y": [1, 3, 2, 5]},
        "analyses": ["regression"], "regression": {"x": "a", "y": "y"}}));
    assert_eq!(m, "regression.x: predictor `a` is constant");
    let m = message(json!({"data": {"a": [1, 2], "y": [1, 3]},
        "analyses": ["regression"], "regression": {"x": "a", "y": "y"}}));
    assert_eq!(
        m,
        "regression: 1 predictor(s) need at least 3 complete rows, got 2"
    );
}

#[test]
fn too_many_cells_is_refused() {
    let column: Vec<u8> = vec![1; 500_001];
    let err =
        statistical_analysis(&json!({"data": {"a": column.clone(), "b": column}})).unwrap_err();
    assert!(matches!(err, LogicError::TooLarge(_)), "{err:?}");
}
