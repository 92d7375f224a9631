//! Pairwise correlation difference (PCD): how far the synthetic set's
//! feature correlations are from the reference's.
//!
//! PCD runs over all [`FEATURE_COUNT`] features of
//! [`feature_vector`](super::features::feature_vector), not only the four
//! continuous ones: most of what makes a flow plausible is in how protocol,
//! flags, ports and the internal/external side go together (UDP has no flags,
//! a well-known port sits on the internal server), and an independent
//! generator scores near zero on the continuous features alone.

use super::features::{FeatureVector, FEATURE_COUNT};

/// A symmetric matrix of Pearson correlations, row-major.
pub type CorrelationMatrix = [[f64; FEATURE_COUNT]; FEATURE_COUNT];

/// Frobenius norm of the difference of the two sets' correlation matrices.
pub fn pairwise_correlation_difference(a: &[FeatureVector], b: &[FeatureVector]) -> f64 {
    let (ca, cb) = (correlation_matrix(a), correlation_matrix(b));
    ca.iter()
        .flatten()
        .zip(cb.iter().flatten())
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f64>()
        .sqrt()
}

/// Pearson correlations between the features of `rows`. A feature that does
/// not vary correlates 0 with every other and 1 with itself, so that it adds
/// nothing when constant in both sets and counts fully when it varies in one.
pub fn correlation_matrix(rows: &[FeatureVector]) -> CorrelationMatrix {
    let n = rows.len().max(1) as f64;
    let mut mean = [0.0; FEATURE_COUNT];
    for row in rows {
        for (m, x) in mean.iter_mut().zip(row) {
            *m += x / n;
        }
    }

    let mut covariance = [[0.0; FEATURE_COUNT]; FEATURE_COUNT];
    for row in rows {
        let centred: FeatureVector = std::array::from_fn(|i| row[i] - mean[i]);
        for (i, cov_row) in covariance.iter_mut().enumerate() {
            for (j, cov) in cov_row.iter_mut().enumerate().skip(i) {
                *cov += centred[i] * centred[j];
            }
        }
    }

    let mut correlation = [[0.0; FEATURE_COUNT]; FEATURE_COUNT];
    for i in 0..FEATURE_COUNT {
        correlation[i][i] = 1.0;
        for j in i + 1..FEATURE_COUNT {
            let scale = (covariance[i][i] * covariance[j][j]).sqrt();
            let r = if scale > 0.0 {
                (covariance[i][j] / scale).clamp(-1.0, 1.0)
            } else {
                0.0
            };
            correlation[i][j] = r;
            correlation[j][i] = r;
        }
    }
    correlation
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(columns: &[&[f64]]) -> Vec<FeatureVector> {
        (0..columns[0].len())
            .map(|r| std::array::from_fn(|c| columns.get(c).map_or(0.0, |col| col[r])))
            .collect()
    }

    #[test]
    fn pearson_by_hand() {
        // x = (1, 2, 3, 4), y = (2, 1, 4, 3): centred dot product 3, squared norms 5 and 5.
        let m = correlation_matrix(&rows(&[&[1.0, 2.0, 3.0, 4.0], &[2.0, 1.0, 4.0, 3.0]]));
        assert!((m[0][1] - 0.6).abs() < 1e-12);
        assert_eq!(m[1][0], m[0][1]);
        assert_eq!(m[0][0], 1.0);
        assert_eq!(m[2][2], 1.0);
        assert_eq!(m[0][2], 0.0);
    }

    #[test]
    fn pcd_counts_each_differing_pair_twice() {
        let a = rows(&[&[1.0, 2.0, 3.0, 4.0], &[1.0, 2.0, 3.0, 4.0]]);
        let b = rows(&[&[1.0, 2.0, 3.0, 4.0], &[4.0, 3.0, 2.0, 1.0]]);
        // r = 1 against r = -1, at (0, 1) and (1, 0): sqrt(2 * 2^2).
        let pcd = pairwise_correlation_difference(&a, &b);
        assert!((pcd - 8f64.sqrt()).abs() < 1e-12, "{pcd}");
        assert_eq!(pairwise_correlation_difference(&a, &a), 0.0);
    }
}
