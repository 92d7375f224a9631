//! Binning of the continuous flow attributes (duration, bytes, packets) into
//! vocabulary words, and drawing exact values back out of the bins.
//!
//! Bins are log-spaced in `1 + value` with a fixed ratio, then merged upwards
//! until each holds at least a minimum number of training flows, so that no
//! bin is a word the embedding never learned. Decoding draws a real
//! `(duration, packets, bytes)` triple of a training flow from the decoded
//! cell of the three bins, which keeps the three consistent with each other
//! (in particular `42 * packets <= bytes <= 65535 * packets`, Ring's check
//! T7, holds for every drawn triple because it held in the data).

use serde::{Deserialize, Serialize};

/// Log-spaced bins over a non-negative integer quantity.
///
/// Bin `i` covers `[lower_edges[i], lower_edges[i + 1])`; the first starts at 0
/// and the last is open-ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogBins {
    /// Smallest value of each bin, ascending, the first being 0.
    pub lower_edges: Vec<u64>,
}

impl LogBins {
    /// Fits bins to `values`: raw bins `floor(ln(1 + v) / ln(ratio))`, merged
    /// upwards until each holds `min_count` values (the last merges downwards).
    ///
    /// `ratio` must exceed 1; `min_count` of 0 or 1 keeps every populated raw bin.
    pub fn fit(values: &[u64], ratio: f64, min_count: usize) -> LogBins {
        let ratio = if ratio > 1.0 { ratio } else { 2.0 };
        let mut raw: Vec<u32> = values.iter().map(|&v| raw_bin(v, ratio)).collect();
        raw.sort_unstable();

        // Walk the raw bins in ascending order and close a bin once it is full.
        let mut lower_edges = vec![0u64];
        let mut filled = 0usize;
        let mut i = 0;
        while i < raw.len() {
            let bin = raw[i];
            let run = raw[i..].iter().take_while(|&&b| b == bin).count();
            if filled >= min_count.max(1) {
                lower_edges.push(raw_lower_edge(bin, ratio));
                filled = 0;
            }
            filled += run;
            i += run;
        }
        if filled < min_count && lower_edges.len() > 1 {
            lower_edges.pop();
        }
        lower_edges.dedup();
        LogBins { lower_edges }
    }

    /// Number of bins.
    pub fn len(&self) -> usize {
        self.lower_edges.len()
    }

    /// Whether there are no bins (never true for fitted bins).
    pub fn is_empty(&self) -> bool {
        self.lower_edges.is_empty()
    }

    /// The bin holding `value`.
    pub fn bin_of(&self, value: u64) -> usize {
        self.lower_edges
            .partition_point(|&edge| edge <= value)
            .saturating_sub(1)
    }
}

/// Raw log bin of `value`.
fn raw_bin(value: u64, ratio: f64) -> u32 {
    ((1.0 + value as f64).ln() / ratio.ln()).floor() as u32
}

/// Smallest value whose raw bin is `bin`.
fn raw_lower_edge(bin: u32, ratio: f64) -> u64 {
    let mut edge = (ratio.powi(bin as i32) - 1.0).max(0.0).ceil() as u64;
    // Floating point can land one off either way; settle on the exact boundary.
    while edge > 0 && raw_bin(edge - 1, ratio) >= bin {
        edge -= 1;
    }
    while edge < u64::MAX && raw_bin(edge, ratio) < bin {
        edge += 1;
    }
    edge
}

/// The exact size of one training flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// Duration, milliseconds.
    pub duration_ms: u64,
    /// Packets.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
}

/// The training volumes of one populated `(duration, packets, bytes)` bin cell.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeCell {
    /// Duration bin.
    pub duration_bin: u32,
    /// Packets bin.
    pub packets_bin: u32,
    /// Bytes bin.
    pub bytes_bin: u32,
    /// Training volumes in the cell as `[duration_ms, packets, bytes]`, at most the cap.
    pub volumes: Vec<[u64; 3]>,
}

/// Bins for the three size attributes and the real volumes behind each cell.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeBins {
    /// Duration bins (milliseconds).
    pub duration: LogBins,
    /// Packets bins.
    pub packets: LogBins,
    /// Bytes bins.
    pub bytes: LogBins,
    /// Populated cells, sorted by `(duration_bin, packets_bin, bytes_bin)`.
    pub cells: Vec<VolumeCell>,
}

/// Knobs for fitting [`VolumeBins`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BinParams {
    /// Ratio between successive raw duration bin edges (in `1 + ms`).
    pub duration_ratio: f64,
    /// Ratio between successive raw packets bin edges (in `1 + packets`).
    pub packets_ratio: f64,
    /// Ratio between successive raw bytes bin edges (in `1 + bytes`).
    pub bytes_ratio: f64,
    /// Fewest training flows per bin.
    pub min_count: usize,
    /// Most volumes kept per cell (a seeded sample beyond), bounding the bundle size.
    pub max_volumes_per_cell: usize,
}

impl Default for BinParams {
    fn default() -> Self {
        BinParams {
            duration_ratio: 2.0,
            packets_ratio: 1.5,
            bytes_ratio: 1.5,
            min_count: 10,
            max_volumes_per_cell: 256,
        }
    }
}

impl VolumeBins {
    /// Fits the bins to the training volumes; `pick` samples a cell down to the cap
    /// (given the cell's volumes and the cap, it keeps the chosen ones).
    pub fn fit(
        volumes: &[Volume],
        params: &BinParams,
        mut pick: impl FnMut(&mut Vec<[u64; 3]>, usize),
    ) -> VolumeBins {
        let column = |f: fn(&Volume) -> u64| volumes.iter().map(f).collect::<Vec<_>>();
        let duration = LogBins::fit(
            &column(|v| v.duration_ms),
            params.duration_ratio,
            params.min_count,
        );
        let packets = LogBins::fit(
            &column(|v| v.packets),
            params.packets_ratio,
            params.min_count,
        );
        let bytes = LogBins::fit(&column(|v| v.bytes), params.bytes_ratio, params.min_count);

        let mut keyed: Vec<([u32; 3], [u64; 3])> = volumes
            .iter()
            .map(|v| {
                let key = [
                    duration.bin_of(v.duration_ms) as u32,
                    packets.bin_of(v.packets) as u32,
                    bytes.bin_of(v.bytes) as u32,
                ];
                (key, [v.duration_ms, v.packets, v.bytes])
            })
            .collect();
        keyed.sort_unstable();

        let mut cells: Vec<VolumeCell> = Vec::new();
        for (key, volume) in keyed {
            match cells.last_mut() {
                Some(cell) if [cell.duration_bin, cell.packets_bin, cell.bytes_bin] == key => {
                    cell.volumes.push(volume)
                }
                _ => cells.push(VolumeCell {
                    duration_bin: key[0],
                    packets_bin: key[1],
                    bytes_bin: key[2],
                    volumes: vec![volume],
                }),
            }
        }
        for cell in &mut cells {
            if cell.volumes.len() > params.max_volumes_per_cell {
                pick(&mut cell.volumes, params.max_volumes_per_cell);
            }
        }
        VolumeBins {
            duration,
            packets,
            bytes,
            cells,
        }
    }

    /// The bins of a volume as `(duration, packets, bytes)`.
    pub fn bins_of(&self, volume: &Volume) -> [usize; 3] {
        [
            self.duration.bin_of(volume.duration_ms),
            self.packets.bin_of(volume.packets),
            self.bytes.bin_of(volume.bytes),
        ]
    }
}

/// A dense lookup from every bin cell to the real volumes to draw from.
///
/// Cells never seen in training borrow the volumes of the nearest populated
/// cell, distance counted in bins with packets and bytes weighted twice as
/// much as duration (they decide check T7 and dominate realism).
#[derive(Clone, Debug)]
pub struct VolumeTable {
    dims: [usize; 3],
    /// Per dense cell: range into `volumes`.
    ranges: Vec<(u32, u32)>,
    volumes: Vec<Volume>,
}

impl VolumeTable {
    /// Builds the dense table; `None` when there is no populated cell.
    pub fn new(bins: &VolumeBins) -> Option<VolumeTable> {
        let dims = [bins.duration.len(), bins.packets.len(), bins.bytes.len()];
        let mut volumes = Vec::new();
        let mut populated = Vec::new();
        for cell in &bins.cells {
            let key = [
                cell.duration_bin as usize,
                cell.packets_bin as usize,
                cell.bytes_bin as usize,
            ];
            if cell.volumes.is_empty() || key.iter().zip(&dims).any(|(k, d)| k >= d) {
                continue;
            }
            let start = volumes.len() as u32;
            volumes.extend(
                cell.volumes
                    .iter()
                    .map(|&[duration_ms, packets, bytes]| Volume {
                        duration_ms,
                        packets,
                        bytes,
                    }),
            );
            populated.push((key, (start, volumes.len() as u32)));
        }
        if populated.is_empty() {
            return None;
        }

        let mut ranges = Vec::with_capacity(dims.iter().product());
        for d in 0..dims[0] {
            for p in 0..dims[1] {
                for b in 0..dims[2] {
                    let nearest = populated
                        .iter()
                        .min_by_key(|(key, _)| {
                            d.abs_diff(key[0]) + 2 * p.abs_diff(key[1]) + 2 * b.abs_diff(key[2])
                        })
                        .map(|(_, range)| *range);
                    ranges.extend(nearest);
                }
            }
        }
        Some(VolumeTable {
            dims,
            ranges,
            volumes,
        })
    }

    /// The real volumes to draw from for the given bins (out-of-range bins clamp).
    pub fn candidates(
        &self,
        duration_bin: usize,
        packets_bin: usize,
        bytes_bin: usize,
    ) -> &[Volume] {
        let d = duration_bin.min(self.dims[0] - 1);
        let p = packets_bin.min(self.dims[1] - 1);
        let b = bytes_bin.min(self.dims[2] - 1);
        let (start, end) = self.ranges[(d * self.dims[1] + p) * self.dims[2] + b];
        &self.volumes[start as usize..end as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_edges_are_exact_boundaries() {
        for ratio in [1.2, 1.5, 2.0, 3.0] {
            for bin in 0..=raw_bin(1 << 40, ratio) {
                let edge = raw_lower_edge(bin, ratio);
                assert!(raw_bin(edge, ratio) >= bin, "ratio {ratio} bin {bin}");
                if edge > 0 {
                    assert!(raw_bin(edge - 1, ratio) < bin, "ratio {ratio} bin {bin}");
                }
            }
        }
    }

    #[test]
    fn bins_are_log_spaced_and_merged_to_min_count() {
        // 100 flows of 1 packet, 50 of 2, 3 of 1000, 1 of 5000.
        let mut values = vec![1u64; 100];
        values.extend([2; 50]);
        values.extend([1000; 3]);
        values.push(5000);
        let bins = LogBins::fit(&values, 2.0, 4);
        // 1 and 2 share raw bin 1 (ln 2 / ln 2 = 1, ln 3 / ln 2 = 1.58); 1000 and
        // 5000 (raw bins 9 and 12) hold four values together, so they merge.
        assert_eq!(bins.bin_of(1), bins.bin_of(2));
        assert_eq!(bins.bin_of(1000), bins.bin_of(5000));
        assert_ne!(bins.bin_of(2), bins.bin_of(1000));
        assert_eq!(bins.len(), 2);
        assert_eq!(bins.bin_of(0), 0);
        assert_eq!(bins.bin_of(u64::MAX), bins.len() - 1);
    }

    #[test]
    fn a_short_last_bin_merges_downwards() {
        let mut values = vec![0u64; 20];
        values.push(1_000_000);
        let bins = LogBins::fit(&values, 2.0, 5);
        assert_eq!(bins.len(), 1);
        let fine = LogBins::fit(&values, 2.0, 1);
        assert_eq!(fine.len(), 2);
    }

    fn volume(duration_ms: u64, packets: u64, bytes: u64) -> Volume {
        Volume {
            duration_ms,
            packets,
            bytes,
        }
    }

    #[test]
    fn table_draws_real_volumes_and_falls_back_to_the_nearest_cell() {
        let mut volumes = vec![volume(0, 1, 66); 40];
        volumes.extend(vec![volume(500, 20, 20_000); 40]);
        let params = BinParams {
            min_count: 10,
            ..BinParams::default()
        };
        let bins = VolumeBins::fit(&volumes, &params, |_, _| {});
        let table = VolumeTable::new(&bins).unwrap();

        let small = bins.bins_of(&volume(0, 1, 66));
        assert_eq!(
            table.candidates(small[0], small[1], small[2]),
            &volumes[..40]
        );

        // Short duration with the big packet and byte bins: never seen; the nearest
        // populated cell is the big one (packets and bytes weigh more).
        let big = bins.bins_of(&volume(500, 20, 20_000));
        let mixed = table.candidates(small[0], big[1], big[2]);
        assert!(mixed.iter().all(|v| v.packets == 20 && v.bytes == 20_000));
        for v in mixed {
            assert!(42 * v.packets <= v.bytes && v.bytes <= 65_535 * v.packets);
        }
    }

    #[test]
    fn cells_are_capped() {
        let volumes: Vec<Volume> = (0..100).map(|i| volume(0, 1, 60 + i % 3)).collect();
        let params = BinParams {
            max_volumes_per_cell: 8,
            ..BinParams::default()
        };
        let bins = VolumeBins::fit(&volumes, &params, |cell, cap| cell.truncate(cap));
        assert!(bins.cells.iter().all(|c| c.volumes.len() <= 8));
    }
}
