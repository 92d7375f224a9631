//! The generator's output activations: a function per range of output columns, so that
//! 0/1 columns can go through a sigmoid and a one-hot group through a softmax while
//! embedding coordinates stay linear.

use serde::{Deserialize, Serialize};

/// What a range of generator output columns goes through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputActivation {
    /// Unchanged.
    Linear,
    /// `1 / (1 + e^-x)`, for values in (0, 1).
    Sigmoid,
    /// `tanh x`, for values in (-1, 1).
    Tanh,
    /// Softmax over the range, for a one-hot group.
    Softmax,
}

/// An activation applied to the output columns `start..end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnActivation {
    /// First column.
    pub start: usize,
    /// One past the last column.
    pub end: usize,
    /// The function.
    pub activation: OutputActivation,
}

/// Why a list of column activations does not fit an output width.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActivationSpecError {
    /// A range is empty or reaches past the output.
    #[error("output activation range {start}..{end} does not fit in {width} output columns")]
    OutOfRange {
        /// First column.
        start: usize,
        /// One past the last column.
        end: usize,
        /// The output width.
        width: usize,
    },
    /// Two ranges share a column.
    #[error("output activation ranges {first_start}..{first_end} and {second_start}..{second_end} overlap")]
    Overlap {
        /// First range's start.
        first_start: usize,
        /// First range's end.
        first_end: usize,
        /// Second range's start.
        second_start: usize,
        /// Second range's end.
        second_end: usize,
    },
}

/// Sorts and checks `spec` and fills the columns it leaves out with [`OutputActivation::Linear`],
/// merging neighbouring linear ranges: the result covers `0..width` in order.
pub fn output_segments(
    width: usize,
    spec: &[ColumnActivation],
) -> Result<Vec<ColumnActivation>, ActivationSpecError> {
    let mut sorted = spec.to_vec();
    sorted.sort_by_key(|s| s.start);
    let mut segments: Vec<ColumnActivation> = Vec::new();
    let mut push = |segment: ColumnActivation| match segments.last_mut() {
        Some(last)
            if last.activation == OutputActivation::Linear
                && segment.activation == OutputActivation::Linear =>
        {
            last.end = segment.end;
        }
        _ => segments.push(segment),
    };

    let mut covered = 0;
    let mut previous: Option<ColumnActivation> = None;
    for s in sorted {
        if s.start >= s.end || s.end > width {
            return Err(ActivationSpecError::OutOfRange {
                start: s.start,
                end: s.end,
                width,
            });
        }
        if let Some(p) = previous.filter(|p| s.start < p.end) {
            return Err(ActivationSpecError::Overlap {
                first_start: p.start,
                first_end: p.end,
                second_start: s.start,
                second_end: s.end,
            });
        }
        if s.start > covered {
            push(linear(covered, s.start));
        }
        push(s);
        covered = s.end;
        previous = Some(s);
    }
    if covered < width {
        push(linear(covered, width));
    }
    Ok(segments)
}

fn linear(start: usize, end: usize) -> ColumnActivation {
    ColumnActivation {
        start,
        end,
        activation: OutputActivation::Linear,
    }
}

/// Applies `segments` (from [`output_segments`]) to each row of `pre`, writing `out`.
pub fn apply(segments: &[ColumnActivation], width: usize, pre: &[f32], out: &mut Vec<f32>) {
    out.clear();
    out.extend_from_slice(pre);
    for row in out.chunks_exact_mut(width) {
        for s in segments {
            let cols = &mut row[s.start..s.end];
            match s.activation {
                OutputActivation::Linear => {}
                OutputActivation::Sigmoid => cols.iter_mut().for_each(|v| *v = sigmoid(*v)),
                OutputActivation::Tanh => cols.iter_mut().for_each(|v| *v = v.tanh()),
                OutputActivation::Softmax => softmax(cols),
            }
        }
    }
}

/// Turns d loss / d output into d loss / d pre-activation, given the activated `out`.
pub fn backward(
    segments: &[ColumnActivation],
    width: usize,
    out: &[f32],
    grad_out: &[f32],
    grad_pre: &mut Vec<f32>,
) {
    grad_pre.clear();
    grad_pre.extend_from_slice(grad_out);
    for (row, y) in grad_pre
        .chunks_exact_mut(width)
        .zip(out.chunks_exact(width))
    {
        for s in segments {
            let (g, y) = (&mut row[s.start..s.end], &y[s.start..s.end]);
            match s.activation {
                OutputActivation::Linear => {}
                OutputActivation::Sigmoid => {
                    g.iter_mut().zip(y).for_each(|(g, &y)| *g *= y * (1.0 - y));
                }
                OutputActivation::Tanh => g.iter_mut().zip(y).for_each(|(g, &y)| *g *= 1.0 - y * y),
                OutputActivation::Softmax => {
                    let dot: f32 = g.iter().zip(y).map(|(g, y)| g * y).sum();
                    g.iter_mut().zip(y).for_each(|(g, &y)| *g = y * (*g - dot));
                }
            }
        }
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

fn softmax(cols: &mut [f32]) {
    let max = cols.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in cols.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    cols.iter_mut().for_each(|v| *v /= sum);
}

#[cfg(test)]
mod tests {
    use super::*;
    use OutputActivation::*;

    fn seg(start: usize, end: usize, activation: OutputActivation) -> ColumnActivation {
        ColumnActivation {
            start,
            end,
            activation,
        }
    }

    #[test]
    fn segments_fill_gaps_with_linear_and_merge_neighbours() {
        let spec = [seg(6, 9, Softmax), seg(2, 4, Sigmoid), seg(4, 5, Linear)];
        let got = output_segments(12, &spec).unwrap();
        assert_eq!(
            got,
            vec![
                seg(0, 2, Linear),
                seg(2, 4, Sigmoid),
                seg(4, 6, Linear),
                seg(6, 9, Softmax),
                seg(9, 12, Linear)
            ]
        );
        assert_eq!(output_segments(3, &[]).unwrap(), vec![seg(0, 3, Linear)]);
    }

    #[test]
    fn segments_reject_bad_ranges() {
        assert!(matches!(
            output_segments(4, &[seg(2, 5, Tanh)]),
            Err(ActivationSpecError::OutOfRange { .. })
        ));
        assert!(matches!(
            output_segments(4, &[seg(2, 2, Tanh)]),
            Err(ActivationSpecError::OutOfRange { .. })
        ));
        let err = output_segments(8, &[seg(0, 3, Tanh), seg(2, 4, Sigmoid)]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "output activation ranges 0..3 and 2..4 overlap"
        );
    }

    #[test]
    fn activations_have_their_textbook_values() {
        let segments = output_segments(
            6,
            &[seg(0, 1, Sigmoid), seg(1, 2, Tanh), seg(3, 6, Softmax)],
        )
        .unwrap();
        let mut out = Vec::new();
        apply(&segments, 6, &[0.0, 0.5, -7.0, 1.0, 1.0, 1.0], &mut out);
        assert_eq!(out[0], 0.5);
        assert!((out[1] - 0.462_117_16).abs() < 1e-6);
        assert_eq!(out[2], -7.0);
        for v in &out[3..] {
            assert!((v - 1.0 / 3.0).abs() < 1e-6);
        }
    }

    #[test]
    fn backward_matches_finite_differences() {
        let width = 7;
        let segments = output_segments(
            width,
            &[seg(0, 2, Sigmoid), seg(2, 3, Tanh), seg(4, 7, Softmax)],
        )
        .unwrap();
        let pre = [0.3_f32, -1.2, 0.7, 2.0, 0.1, -0.4, 1.3];
        let weights = [0.5_f32, -1.0, 2.0, 0.25, 1.5, -0.7, 0.9];
        let loss = |p: &[f32]| -> f64 {
            let mut out = Vec::new();
            apply(&segments, width, p, &mut out);
            out.iter()
                .zip(&weights)
                .map(|(o, w)| f64::from(o * w))
                .sum()
        };
        let mut out = Vec::new();
        apply(&segments, width, &pre, &mut out);
        let mut grad = Vec::new();
        backward(&segments, width, &out, &weights, &mut grad);
        for i in 0..width {
            let (mut plus, mut minus) = (pre, pre);
            plus[i] += 1e-3;
            minus[i] -= 1e-3;
            let numeric = (loss(&plus) - loss(&minus)) / 2e-3;
            assert!(
                (f64::from(grad[i]) - numeric).abs() < 1e-3,
                "column {i}: {} vs {numeric}",
                grad[i]
            );
        }
    }
}
