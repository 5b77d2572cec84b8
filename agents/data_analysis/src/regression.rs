//! Ordinary least squares with an intercept, solved stably: predictors and
//! response are centred (which removes the intercept column and its
//! collinearity with large-valued predictors), predictor columns are scaled
//! to unit length, and the least-squares problem is solved by Householder
//! QR (never by forming X'X), followed by one step of iterative refinement.
//! Standard errors come from R⁻¹ (X'X)⁻¹ = R⁻¹R⁻ᵀ.

use super::numeric::{mean, sum};
use super::{LogicError, dist};
use agentry_agent_kit::invalid;

/// A predictor is collinear with the others when its unit-length centred
/// column lies within this distance of their span.
const RANK_TOLERANCE: f64 = 1e-10;

/// One estimated parameter.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Estimate {
    pub(super) estimate: f64,
    pub(super) std_error: f64,
    /// `None` when the standard error is zero (exact fit).
    pub(super) t_value: Option<f64>,
    pub(super) p_value: Option<f64>,
}

/// A fitted model y = b0 + Σ bj xj.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Fit {
    pub(super) n: usize,
    pub(super) intercept: Estimate,
    pub(super) slopes: Vec<Estimate>,
    pub(super) residual_ss: f64,
    pub(super) regression_ss: f64,
    pub(super) r_squared: f64,
    pub(super) adj_r_squared: f64,
    pub(super) residual_std_error: f64,
    pub(super) df_residual: usize,
    pub(super) f_statistic: Option<f64>,
    pub(super) f_p_value: Option<f64>,
}

/// Householder QR of a column-major n x p matrix, kept as reflectors.
struct Qr {
    /// Reflector vectors v_k (entries k..n), with H_k = I - 2 v vᵀ / (vᵀv).
    reflectors: Vec<Vec<f64>>,
    /// Upper triangle, r[i][j] for j >= i.
    r: Vec<Vec<f64>>,
}

impl Qr {
    fn new(mut columns: Vec<Vec<f64>>) -> Self {
        let p = columns.len();
        let n = columns.first().map_or(0, Vec::len);
        let mut reflectors = Vec::with_capacity(p);
        let mut r = vec![vec![0.0; p]; p];
        for k in 0..p {
            let head = &columns[k][k..];
            let norm = sum(head.iter().map(|x| x * x)).sqrt();
            let alpha = if head[0] > 0.0 { -norm } else { norm };
            let mut v = head.to_vec();
            v[0] -= alpha;
            let vv = sum(v.iter().map(|x| x * x));
            if vv > 0.0 {
                for column in columns.iter_mut().skip(k) {
                    reflect(&v, vv, &mut column[k..n]);
                }
            }
            for (j, column) in columns.iter().enumerate().skip(k) {
                r[k][j] = column[k];
            }
            reflectors.push(v);
        }
        Self { reflectors, r }
    }

    /// Qᵀ applied to a vector, in place.
    fn apply_qt(&self, y: &mut [f64]) {
        for (k, v) in self.reflectors.iter().enumerate() {
            let vv = sum(v.iter().map(|x| x * x));
            if vv > 0.0 {
                reflect(v, vv, &mut y[k..]);
            }
        }
    }

    /// Least-squares solution of A b = y: R b = (Qᵀ y)[..p].
    fn solve(&self, y: &[f64]) -> Vec<f64> {
        let mut qty = y.to_vec();
        self.apply_qt(&mut qty);
        let p = self.r.len();
        let mut b = vec![0.0; p];
        for i in (0..p).rev() {
            let tail = sum((i + 1..p).map(|j| self.r[i][j] * b[j]));
            b[i] = (qty[i] - tail) / self.r[i][i];
        }
        b
    }

    /// R⁻¹ (upper triangular), by back substitution column by column.
    #[allow(clippy::needless_range_loop)]
    fn r_inverse(&self) -> Vec<Vec<f64>> {
        let p = self.r.len();
        let mut inv = vec![vec![0.0; p]; p];
        for j in 0..p {
            inv[j][j] = 1.0 / self.r[j][j];
            for i in (0..j).rev() {
                let s = sum((i + 1..=j).map(|k| self.r[i][k] * inv[k][j]));
                inv[i][j] = -s / self.r[i][i];
            }
        }
        inv
    }
}

fn reflect(v: &[f64], vv: f64, x: &mut [f64]) {
    let scale = 2.0 * sum(v.iter().zip(x.iter()).map(|(a, b)| a * b)) / vv;
    for (xi, vi) in x.iter_mut().zip(v) {
        *xi -= scale * vi;
    }
}

/// Fits y on the predictor columns `x` (each as long as `y`, no missing
/// values). `names` label the predictors in error messages.
pub(super) fn ols(x: &[Vec<f64>], y: &[f64], names: &[String]) -> Result<Fit, LogicError> {
    let n = y.len();
    let p = x.len();
    if n < p + 2 {
        return Err(invalid(format!(
            "regression: {p} predictor(s) need at least {} complete rows, got {n}",
            p + 2
        )));
    }
    let y_mean = mean(y).unwrap_or(0.0);
    let yc: Vec<f64> = y.iter().map(|v| v - y_mean).collect();
    let mut x_means = Vec::with_capacity(p);
    let mut norms = Vec::with_capacity(p);
    let mut scaled = Vec::with_capacity(p);
    for (j, column) in x.iter().enumerate() {
        let m = mean(column).unwrap_or(0.0);
        let centred: Vec<f64> = column.iter().map(|v| v - m).collect();
        let norm = sum(centred.iter().map(|v| v * v)).sqrt();
        let magnitude = column.iter().fold(0.0_f64, |acc, v| acc.max(v.abs()));
        if norm <= 1e-14 * magnitude * (n as f64).sqrt() || norm == 0.0 {
            return Err(invalid(format!(
                "regression.x: predictor `{}` is constant",
                names.get(j).map_or("?", String::as_str)
            )));
        }
        x_means.push(m);
        norms.push(norm);
        scaled.push(centred.iter().map(|v| v / norm).collect::<Vec<f64>>());
    }
    let qr = Qr::new(scaled.clone());
    if let Some(k) = (0..p).find(|&k| qr.r[k][k].abs() < RANK_TOLERANCE) {
        return Err(invalid(format!(
            "regression.x: predictor `{}` is collinear with the predictors before it \
             (the design matrix is rank-deficient)",
            names.get(k).map_or("?", String::as_str)
        )));
    }
    // Solve in the scaled coordinates, then refine once on the residual.
    let mut b = qr.solve(&yc);
    let residual: Vec<f64> = (0..n)
        .map(|i| yc[i] - sum((0..p).map(|j| scaled[j][i] * b[j])))
        .collect();
    for (bj, dj) in b.iter_mut().zip(qr.solve(&residual)) {
        *bj += dj;
    }
    let slopes: Vec<f64> = b.iter().zip(&norms).map(|(bj, nj)| bj / nj).collect();
    let intercept = y_mean - sum(slopes.iter().zip(&x_means).map(|(bj, mj)| bj * mj));

    let residuals: Vec<f64> = (0..n)
        .map(|i| y[i] - intercept - sum((0..p).map(|j| slopes[j] * x[j][i])))
        .collect();
    let residual_ss = sum(residuals.iter().map(|e| e * e));
    let total_ss = sum(yc.iter().map(|v| v * v));
    let df = n - p - 1;
    let sigma2 = residual_ss / df as f64;

    // Cov(b) = σ² D⁻¹ R⁻¹ R⁻ᵀ D⁻¹ with D = diag(norms).
    let r_inv = qr.r_inverse();
    let cov = |j: usize, k: usize| {
        let start = j.max(k);
        sigma2 * sum((start..p).map(|l| r_inv[j][l] * r_inv[k][l])) / (norms[j] * norms[k])
    };
    let inference = |estimate: f64, variance: f64| {
        let std_error = variance.max(0.0).sqrt();
        let t_value = (std_error > 0.0).then(|| estimate / std_error);
        Estimate {
            estimate,
            std_error,
            t_value,
            p_value: t_value.and_then(|t| dist::t_two_sided(t, df as f64)),
        }
    };
    let slopes_out: Vec<Estimate> = (0..p).map(|j| inference(slopes[j], cov(j, j))).collect();
    let mut quad = Vec::with_capacity(p * p);
    for j in 0..p {
        for k in 0..p {
            quad.push(x_means[j] * x_means[k] * cov(j, k));
        }
    }
    let intercept_var = sigma2 / n as f64 + sum(quad);

    let regression_ss = (total_ss - residual_ss).max(0.0);
    let r_squared = if total_ss > 0.0 {
        1.0 - residual_ss / total_ss
    } else {
        0.0
    };
    let adj_r_squared = 1.0 - (1.0 - r_squared) * (n - 1) as f64 / df as f64;
    let f_statistic = (residual_ss > 0.0).then(|| (regression_ss / p as f64) / sigma2);
    Ok(Fit {
        n,
        intercept: inference(intercept, intercept_var),
        slopes: slopes_out,
        residual_ss,
        regression_ss,
        r_squared,
        adj_r_squared,
        residual_std_error: sigma2.sqrt(),
        df_residual: df,
        f_statistic,
        f_p_value: f_statistic.and_then(|f| dist::f_upper(f, p as f64, df as f64)),
    })
}
