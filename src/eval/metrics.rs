//! Metrics over logits `[N, K]` in dataset order: top-k accuracy, agreement with a reference
//! model, KL divergence, and a digest of the logits.

use sha2::{Digest, Sha256};

/// Indices of the `k` largest values, largest first (ties: lower index first).
pub fn topk(row: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..row.len()).collect();
    idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
    idx.truncate(k);
    idx
}

/// Numerically stable log-softmax in f64.
pub fn log_softmax(row: &[f32]) -> Vec<f64> {
    let m = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
    let lse = row.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln() + m;
    row.iter().map(|&v| v as f64 - lse).collect()
}

/// KL(softmax(p) ‖ softmax(q)) for one pair of logit rows.
pub fn kl(p_logits: &[f32], q_logits: &[f32]) -> f64 {
    let lp = log_softmax(p_logits);
    let lq = log_softmax(q_logits);
    lp.iter()
        .zip(&lq)
        .map(|(a, b)| a.exp() * (a - b))
        .sum::<f64>()
        .max(0.0)
}

/// sha256 of all logits as little-endian f32, in order.
pub fn logits_sha256(logits: &[f32]) -> String {
    let mut h = Sha256::new();
    for v in logits {
        h.update(v.to_le_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Fraction of rows whose label is among the top `k` (rows without a label are skipped;
/// `None` when no row has one).
pub fn accuracy(logits: &[f32], classes: usize, labels: &[Option<usize>], k: usize) -> Option<f64> {
    let mut hit = 0usize;
    let mut n = 0usize;
    for (row, l) in logits.chunks(classes).zip(labels) {
        if let Some(l) = l {
            n += 1;
            if topk(row, k).contains(l) {
                hit += 1;
            }
        }
    }
    (n > 0).then(|| hit as f64 / n as f64)
}

/// Agreement of model M with reference R over the same inputs.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Agreement {
    /// Fraction of inputs where both top-1 classes agree.
    pub agreement_top1: f64,
    /// Fraction where R's top-1 class is in M's top 5.
    pub agreement_top5: f64,
    /// Mean KL(softmax R ‖ softmax M).
    pub kl_mean: f64,
}

pub fn agreement(m: &[f32], r: &[f32], classes: usize) -> Agreement {
    let n = (m.len() / classes.max(1)).max(1) as f64;
    let (mut a1, mut a5, mut klsum) = (0usize, 0usize, 0.0f64);
    for (mr, rr) in m.chunks(classes).zip(r.chunks(classes)) {
        let rt = topk(rr, 1)[0];
        let mt = topk(mr, 5);
        a1 += usize::from(mt[0] == rt);
        a5 += usize::from(mt.contains(&rt));
        klsum += kl(rr, mr);
    }
    Agreement {
        agreement_top1: a1 as f64 / n,
        agreement_top5: a5 as f64 / n,
        kl_mean: klsum / n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topk_orders_and_breaks_ties_by_index() {
        assert_eq!(topk(&[1.0, 3.0, 3.0, 0.0], 3), vec![1, 2, 0]);
    }

    #[test]
    fn kl_is_zero_for_equal_and_positive_otherwise() {
        assert!(kl(&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0]).abs() < 1e-12);
        assert!(kl(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]) > 0.1);
    }

    #[test]
    fn agreement_counts() {
        let r = [0.0, 1.0, 0.0, /**/ 1.0, 0.0, 0.0];
        let m = [0.0, 1.0, 0.0, /**/ 0.0, 1.0, 0.0];
        let a = agreement(&m, &r, 3);
        assert_eq!(a.agreement_top1, 0.5);
        assert_eq!(a.agreement_top5, 1.0);
    }

    #[test]
    fn accuracy_skips_unlabelled() {
        let l = [0.0, 1.0, 1.0, 0.0];
        assert_eq!(accuracy(&l, 2, &[Some(1), None], 1), Some(1.0));
        assert_eq!(accuracy(&l, 2, &[None, None], 1), None);
    }
}
