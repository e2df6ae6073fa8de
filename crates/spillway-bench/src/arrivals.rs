//! Arrival processes.
use std::time::Duration;

use rand::Rng;

/// Poisson arrivals at `rate` per second over `span`: exponential gaps drawn from `rng`.
pub fn poisson(rate: f64, span: Duration, rng: &mut impl Rng) -> Vec<Duration> {
    let mut out = Vec::new();
    if !(rate > 0.0 && rate.is_finite()) {
        return out;
    }
    let mut t = 0.0f64;
    loop {
        let u: f64 = rng.random::<f64>();
        t += -(1.0 - u).ln() / rate;
        if t >= span.as_secs_f64() {
            return out;
        }
        out.push(Duration::from_secs_f64(t));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    #[test]
    fn rate_is_about_right_and_sorted() {
        let mut rng = SmallRng::seed_from_u64(7);
        let a = poisson(100.0, Duration::from_secs(100), &mut rng);
        assert!((9_500..10_500).contains(&a.len()), "{}", a.len());
        assert!(a.windows(2).all(|w| w[0] <= w[1]));
        assert!(a.iter().all(|t| *t < Duration::from_secs(100)));
    }

    #[test]
    fn same_seed_same_arrivals() {
        let a = poisson(
            10.0,
            Duration::from_secs(5),
            &mut SmallRng::seed_from_u64(1),
        );
        let b = poisson(
            10.0,
            Duration::from_secs(5),
            &mut SmallRng::seed_from_u64(1),
        );
        assert_eq!(a, b);
    }
}
