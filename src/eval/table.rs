//! The readable table `flowgen eval` prints: one row per figure, one column
//! for the synthetic set and, with training flows, one for the real yardstick.

use std::fmt;

use super::{CheckScore, Report, Scores};

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let flows = &self.flows;
        write!(
            f,
            "{} synthetic flows against {} reference flows",
            flows.synthetic, flows.reference
        )?;
        if let (Some(train), Some(drawn)) = (flows.train, flows.yardstick) {
            write!(f, "; real (train): {drawn} of {train} training flows")?;
        }
        writeln!(f, " (internal: {})", self.settings.internal.join(","))?;
        writeln!(f)?;

        let synthetic = column(&self.scores);
        let real = self.yardstick.as_ref().map(column);
        let label_width = synthetic
            .iter()
            .map(|(label, _)| label.len())
            .max()
            .unwrap_or(0);
        let value_width = synthetic
            .iter()
            .map(|(_, v)| v.len())
            .max()
            .unwrap_or(0)
            .max(9);

        write!(f, "{:label_width$}  {:>value_width$}", "", "synthetic")?;
        if real.is_some() {
            write!(f, "  {:>value_width$}", "real (train)")?;
        }
        writeln!(f)?;
        for (i, (label, value)) in synthetic.iter().enumerate() {
            write!(f, "{label:label_width$}  {value:>value_width$}")?;
            if let Some(real) = &real {
                write!(f, "  {:>value_width$}", real[i].1)?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

/// The rows of one column: label and formatted value, in table order.
fn column(scores: &Scores) -> Vec<(String, String)> {
    let mut rows: Vec<(String, String)> = scores
        .checks
        .iter()
        .map(|(check, score)| {
            (
                format!("{} {}", check.id(), check.description()),
                check_cell(score),
            )
        })
        .collect();
    let number = |label: &str, value: f64| (label.to_owned(), format!("{value:.4}"));
    let jsd = &scores.jsd;
    rows.extend([
        number("JSD protocol", jsd.protocol),
        number("JSD source address", jsd.src_addr),
        number("JSD destination address", jsd.dst_addr),
        number("JSD source port", jsd.src_port),
        number("JSD destination port", jsd.dst_port),
        number("JSD flags", jsd.flags),
        number("JSD mean", jsd.mean),
    ]);
    let emd = &scores.emd;
    rows.extend([
        number("EMD time of day", emd.time_of_day),
        number("EMD ln(1 + duration)", emd.log_duration),
        number("EMD ln(1 + packets)", emd.log_packets),
        number("EMD ln(1 + bytes)", emd.log_bytes),
        number("EMD mean", emd.mean),
        number("PCD", scores.pcd),
        number("density", scores.density),
        number("coverage", scores.coverage),
    ]);
    let memorized = scores
        .memorization
        .map_or_else(|| "-".to_owned(), |share| format!("{:.2} %", 100.0 * share));
    rows.push((
        "memorization (copies of training flows)".to_owned(),
        memorized,
    ));
    rows
}

/// `99.51 % (935/940)`, or `- (0/0)` when no flow met the premise.
fn check_cell(score: &CheckScore) -> String {
    match score.accuracy {
        Some(percent) => format!("{percent:.2} % ({}/{})", score.pass, score.premise),
        None => format!("- ({}/{})", score.pass, score.premise),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::flow;
    use super::super::{evaluate, EvalOptions};
    use crate::flow::Flow;

    fn flows(n: u16) -> Vec<Flow> {
        (0..n)
            .map(|i| Flow {
                start_ms: i64::from(i) * 60_000,
                bytes: 60 + u64::from(i),
                ..flow("TCP", "192.168.1.2", 40000 + i, "11529_47", 443)
            })
            .collect()
    }

    #[test]
    fn table_lists_every_figure_with_the_yardstick_column() {
        let real = flows(30);
        let report = evaluate(&real, &flows(12), Some(&real), &EvalOptions::default()).unwrap();
        let table = report.to_string();
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[0].starts_with("12 synthetic flows against 30 reference flows"),
            "{table}"
        );
        let header: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(header, ["synthetic", "real", "(train)"], "{table}");
        let t3 = lines.iter().find(|l| l.starts_with("T3 ")).unwrap();
        assert!(t3.contains("100.00 % (12/12)"), "{t3}");
        let t1 = lines.iter().find(|l| l.starts_with("T1 ")).unwrap();
        assert!(t1.contains("- (0/0)"), "{t1}");
        assert!(lines.iter().any(|l| l.starts_with("JSD mean")));
        assert!(lines
            .iter()
            .any(|l| l.starts_with("memorization") && l.contains("100.00 %")));
        assert_eq!(lines.len(), 3 + 7 + 7 + 5 + 3 + 1);
    }

    #[test]
    fn table_without_training_flows_has_one_column() {
        let report = evaluate(&flows(30), &flows(12), None, &EvalOptions::default()).unwrap();
        let table = report.to_string();
        assert!(!table.contains("real (train)"), "{table}");
        let memorization = table
            .lines()
            .find(|l| l.starts_with("memorization"))
            .unwrap();
        assert!(memorization.ends_with(" -"), "{memorization}");
    }
}
