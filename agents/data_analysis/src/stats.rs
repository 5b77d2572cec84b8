//! `statistical_analysis`: descriptive statistics, Pearson and Spearman
//! correlation matrices, OLS regression and outlier detection on the numeric
//! columns of a data set.
//!
//! Conventions: sample variance and standard deviation divide by n - 1;
//! quartiles are Hyndman-Fan type 7 (R and NumPy default); skewness and
//! excess kurtosis are the bias-corrected G1 and G2 (pandas, Excel);
//! correlations use pairwise-complete observations and average ranks for
//! ties (Spearman); regression uses the rows complete in x and y.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::LogicError;
use super::numeric::{self, Moments};
use super::regression::{self, Estimate};
use super::table::{self, ColType, Table};
use agentry_agent_kit::input::decode;
use agentry_agent_kit::{invalid, num, opt_num};

/// At most this many row indices are listed per column of outliers.
const MAX_LISTED_OUTLIERS: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Analysis {
    Descriptive,
    Correlation,
    Regression,
    Outliers,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum OutlierMethod {
    Iqr,
    Zscore,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// The `statistical_analysis` input
/// (`schemas/capabilities/statistical_analysis.*.json`); an explicit `null`
/// counts as absent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    data: Option<Value>,
    columns: Option<Vec<String>>,
    analyses: Option<Vec<Analysis>>,
    regression: Option<RegressionInput>,
    outliers: Option<OutliersInput>,
}

/// `regression`: predictors and the response.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegressionInput {
    x: OneOrMany,
    y: String,
}

/// `outliers`: the method and its threshold.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutliersInput {
    method: Option<OutlierMethod>,
    threshold: Option<f64>,
}

/// Runs the requested analyses. See the module docs and
/// `schemas/capabilities/statistical_analysis.*.json`.
pub fn statistical_analysis(input: &Value) -> Result<Value, LogicError> {
    let root: Input = decode(input)?;
    let data = root
        .data
        .as_ref()
        .ok_or_else(|| invalid("data: required field is missing"))?;
    let table = table::from_json(data, "data")?;

    let numeric_ok = |ty: ColType| ty.is_numeric() || ty == ColType::Null;
    let (selected, skipped): (Vec<usize>, Vec<usize>) = match root.columns {
        Some(names) => {
            let mut chosen = Vec::with_capacity(names.len());
            for name in &names {
                let c = table.column(name, "columns")?;
                if !numeric_ok(table.types[c]) {
                    return Err(invalid(format!(
                        "columns: column `{name}` is {}, not numeric",
                        table.types[c].name()
                    )));
                }
                if !chosen.contains(&c) {
                    chosen.push(c);
                }
            }
            (chosen, Vec::new())
        }
        None => (0..table.names.len()).partition(|&c| table.types[c].is_numeric()),
    };

    let regression_spec = root.regression;
    let outlier_spec = root.outliers.unwrap_or_default();
    let analyses: Vec<Analysis> = match root.analyses {
        Some(list) => list,
        None => {
            let mut list = vec![Analysis::Descriptive];
            if selected.len() >= 2 {
                list.push(Analysis::Correlation);
            }
            if regression_spec.is_some() {
                list.push(Analysis::Regression);
            }
            list.push(Analysis::Outliers);
            list
        }
    };

    let values: Vec<Vec<Option<f64>>> = table
        .columns
        .iter()
        .map(|column| column.iter().map(|cell| cell.as_f64()).collect())
        .collect();
    let present = |c: usize| values[c].iter().flatten().copied().collect::<Vec<f64>>();

    let mut out = Map::new();
    out.insert(
        "columns".into(),
        json!(
            selected
                .iter()
                .map(|&c| &table.names[c])
                .collect::<Vec<_>>()
        ),
    );
    out.insert(
        "skipped_columns".into(),
        json!(skipped.iter().map(|&c| &table.names[c]).collect::<Vec<_>>()),
    );
    out.insert("rows".into(), json!(table.rows));

    if analyses.contains(&Analysis::Descriptive) {
        let mut block = Map::new();
        for &c in &selected {
            block.insert(table.names[c].clone(), describe(&present(c), table.rows));
        }
        out.insert("descriptive".into(), Value::Object(block));
    }
    if analyses.contains(&Analysis::Correlation) {
        out.insert(
            "correlation".into(),
            correlation(&table, &selected, &values),
        );
    }
    if analyses.contains(&Analysis::Regression) {
        let spec = regression_spec.as_ref().ok_or_else(|| {
            invalid("regression: required when `analyses` contains \"regression\"")
        })?;
        out.insert("regression".into(), regression(&table, &values, spec)?);
    }
    if analyses.contains(&Analysis::Outliers) {
        out.insert(
            "outliers".into(),
            outliers(&table, &selected, &values, &outlier_spec)?,
        );
    }
    Ok(Value::Object(out))
}

fn describe(values: &[f64], rows: usize) -> Value {
    let missing = rows - values.len();
    let Some(m) = Moments::of(values) else {
        return json!({"count": 0, "missing": missing, "mean": null, "std": null,
            "variance": null, "min": null, "q1": null, "median": null, "q3": null,
            "max": null, "iqr": null, "range": null, "sum": null, "skewness": null,
            "kurtosis": null});
    };
    let sorted = numeric::sorted(values);
    let q1 = numeric::quantile_sorted(&sorted, 0.25);
    let q3 = numeric::quantile_sorted(&sorted, 0.75);
    json!({
        "count": m.n,
        "missing": missing,
        "mean": num(m.mean),
        "std": opt_num(m.std()),
        "variance": opt_num(m.variance()),
        "min": num(m.min),
        "q1": opt_num(q1),
        "median": opt_num(numeric::quantile_sorted(&sorted, 0.5)),
        "q3": opt_num(q3),
        "max": num(m.max),
        "iqr": opt_num(q1.zip(q3).map(|(a, b)| b - a)),
        "range": num(m.max - m.min),
        "sum": num(numeric::sum(values.iter().copied())),
        "skewness": opt_num(m.skewness()),
        "kurtosis": opt_num(m.kurtosis()),
    })
}

/// Pairs of the two columns where both are present.
fn complete_pairs(a: &[Option<f64>], b: &[Option<f64>]) -> (Vec<f64>, Vec<f64>) {
    a.iter().zip(b).filter_map(|(x, y)| x.zip(*y)).unzip()
}

fn correlation(table: &Table, selected: &[usize], values: &[Vec<Option<f64>>]) -> Value {
    let k = selected.len();
    let mut pearson = vec![vec![Value::Null; k]; k];
    let mut spearman = vec![vec![Value::Null; k]; k];
    let mut pairs = vec![vec![json!(0); k]; k];
    for i in 0..k {
        for j in i..k {
            let (x, y) = complete_pairs(&values[selected[i]], &values[selected[j]]);
            let (r, rho) = if i == j {
                let defined = numeric::pearson(&x, &y).is_some();
                (defined.then_some(1.0), defined.then_some(1.0))
            } else {
                (numeric::pearson(&x, &y), numeric::spearman(&x, &y))
            };
            for (a, b) in [(i, j), (j, i)] {
                pearson[a][b] = opt_num(r);
                spearman[a][b] = opt_num(rho);
                pairs[a][b] = json!(x.len());
            }
        }
    }
    json!({
        "columns": selected.iter().map(|&c| &table.names[c]).collect::<Vec<_>>(),
        "pearson": pearson,
        "spearman": spearman,
        "pairs": pairs,
    })
}

fn estimate_json(name: Option<&str>, e: &Estimate) -> Value {
    let mut object = Map::new();
    if let Some(name) = name {
        object.insert("name".into(), json!(name));
    }
    object.insert("estimate".into(), num(e.estimate));
    object.insert("std_error".into(), num(e.std_error));
    object.insert("t_value".into(), opt_num(e.t_value));
    object.insert("p_value".into(), opt_num(e.p_value));
    Value::Object(object)
}

fn regression(
    table: &Table,
    values: &[Vec<Option<f64>>],
    spec: &RegressionInput,
) -> Result<Value, LogicError> {
    let x_names = match &spec.x {
        OneOrMany::One(name) => vec![name.clone()],
        OneOrMany::Many(names) => names.clone(),
    };
    if x_names.is_empty() {
        return Err(invalid("regression.x: at least one predictor is required"));
    }
    let y_name = spec.y.clone();
    let numeric_column = |name: &str, path: &str| -> Result<usize, LogicError> {
        let c = table.column(name, path)?;
        if table.types[c].is_numeric() {
            Ok(c)
        } else {
            Err(invalid(format!(
                "{path}: column `{name}` is {}, not numeric",
                table.types[c].name()
            )))
        }
    };
    let y_col = numeric_column(&y_name, "regression.y")?;
    let mut x_cols = Vec::with_capacity(x_names.len());
    for name in &x_names {
        let c = numeric_column(name, "regression.x")?;
        if c == y_col {
            return Err(invalid(format!(
                "regression.x: `{name}` is also the response `y`"
            )));
        }
        if x_cols.contains(&c) {
            return Err(invalid(format!("regression.x: `{name}` is listed twice")));
        }
        x_cols.push(c);
    }
    let complete: Vec<usize> = (0..table.rows)
        .filter(|&i| values[y_col][i].is_some() && x_cols.iter().all(|&c| values[c][i].is_some()))
        .collect();
    let column = |c: usize| -> Vec<f64> { complete.iter().filter_map(|&i| values[c][i]).collect() };
    let x: Vec<Vec<f64>> = x_cols.iter().map(|&c| column(c)).collect();
    let fit = regression::ols(&x, &column(y_col), &x_names)?;
    Ok(json!({
        "y": y_name,
        "x": x_names,
        "n": fit.n,
        "df_model": x_names.len(),
        "df_residual": fit.df_residual,
        "intercept": estimate_json(None, &fit.intercept),
        "coefficients": x_names
            .iter()
            .zip(&fit.slopes)
            .map(|(name, e)| estimate_json(Some(name), e))
            .collect::<Vec<_>>(),
        "r_squared": num(fit.r_squared),
        "adj_r_squared": num(fit.adj_r_squared),
        "residual_std_error": num(fit.residual_std_error),
        "residual_sum_of_squares": num(fit.residual_ss),
        "regression_sum_of_squares": num(fit.regression_ss),
        "f_statistic": opt_num(fit.f_statistic),
        "f_p_value": opt_num(fit.f_p_value),
    }))
}

fn outliers(
    table: &Table,
    selected: &[usize],
    values: &[Vec<Option<f64>>],
    spec: &OutliersInput,
) -> Result<Value, LogicError> {
    let method = spec.method.unwrap_or(OutlierMethod::Iqr);
    let threshold = spec.threshold;
    let threshold = threshold.unwrap_or(match method {
        OutlierMethod::Iqr => 1.5,
        OutlierMethod::Zscore => 3.0,
    });
    if !threshold.is_finite() || threshold <= 0.0 {
        return Err(invalid(format!(
            "outliers.threshold: must be a number > 0, got {threshold}"
        )));
    }
    let mut columns = Map::new();
    for &c in selected {
        let present: Vec<f64> = values[c].iter().flatten().copied().collect();
        let fences = match method {
            OutlierMethod::Iqr => {
                let sorted = numeric::sorted(&present);
                numeric::quantile_sorted(&sorted, 0.25)
                    .zip(numeric::quantile_sorted(&sorted, 0.75))
                    .map(|(q1, q3)| (q1 - threshold * (q3 - q1), q3 + threshold * (q3 - q1)))
            }
            OutlierMethod::Zscore => Moments::of(&present).and_then(|m| {
                m.std()
                    .filter(|s| *s > 0.0)
                    .map(|s| (m.mean - threshold * s, m.mean + threshold * s))
            }),
        };
        let mut rows = Vec::new();
        let mut found = Vec::new();
        let mut count = 0usize;
        if let Some((lower, upper)) = fences {
            for (i, v) in values[c].iter().enumerate() {
                let Some(v) = *v else { continue };
                if v < lower || v > upper {
                    count += 1;
                    if rows.len() < MAX_LISTED_OUTLIERS {
                        rows.push(i);
                        found.push(num(v));
                    }
                }
            }
        }
        columns.insert(
            table.names[c].clone(),
            json!({
                "lower": opt_num(fences.map(|f| f.0)),
                "upper": opt_num(fences.map(|f| f.1)),
                "count": count,
                "rows": rows,
                "values": found,
                "truncated": count > rows.len(),
            }),
        );
    }
    Ok(json!({
        "method": match method { OutlierMethod::Iqr => "iqr", OutlierMethod::Zscore => "zscore" },
        "threshold": num(threshold),
        "columns": columns,
    }))
}
