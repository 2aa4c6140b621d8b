//! How till shows numbers to people: money and the like. Foundation layer: it knows no other
//! module, and nothing here parses (the scope syntax has its own exact formatter in `scope`).

/// Dollars for a human: `$0`, `$12.34`, `$0.0123`, `$0.000012` (more digits the smaller it is).
pub fn usd(v: f64) -> String {
    if v == 0.0 {
        "$0".to_string()
    } else if v >= 1.0 {
        format!("${v:.2}")
    } else if v >= 0.0001 {
        format!("${v:.4}")
    } else {
        format!("${v:.6}")
    }
}

/// [`usd`] of an amount in micro-dollars, the unit budgets and costs are kept in.
pub fn usd_micros(micros: u64) -> String {
    usd(micros as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn more_digits_for_smaller_amounts() {
        assert_eq!(usd(0.0), "$0");
        assert_eq!(usd(12.345), "$12.35");
        assert_eq!(usd(0.0123), "$0.0123");
        assert_eq!(usd_micros(12), "$0.000012");
    }
}
