//! Arrival processes.
//!
//! * [`poisson`]: exponential gaps, the memoryless baseline (coefficient of variation 1).
//! * [`gamma`]: gamma-distributed gaps with a chosen mean rate and coefficient of variation
//!   (CV): CV 1 is Poisson, larger CVs give bursts (many short gaps) separated by lulls, the
//!   shape real LLM traffic has.
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

/// Gamma-process arrivals at mean `rate` per second over `span`, gaps with coefficient of
/// variation `cv` (shape `1/cv²`, mean `1/rate`). Empty when `rate` or `cv` is not positive.
pub fn gamma(rate: f64, cv: f64, span: Duration, rng: &mut impl Rng) -> Vec<Duration> {
    let mut out = Vec::new();
    if !(rate > 0.0 && rate.is_finite() && cv > 0.0 && cv.is_finite()) {
        return out;
    }
    let shape = 1.0 / (cv * cv);
    let scale = 1.0 / (rate * shape);
    let mut t = 0.0f64;
    loop {
        t += standard_gamma(shape, rng) * scale;
        if t >= span.as_secs_f64() {
            return out;
        }
        out.push(Duration::from_secs_f64(t));
    }
}

/// A Gamma(`shape`, 1) sample (Marsaglia and Tsang; shapes below 1 are boosted by `U^(1/shape)`).
fn standard_gamma(shape: f64, rng: &mut impl Rng) -> f64 {
    if shape < 1.0 {
        let u: f64 = rng.random::<f64>();
        return standard_gamma(shape + 1.0, rng) * (1.0 - u).powf(1.0 / shape);
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = standard_normal(rng);
        let v = (1.0 + c * x).powi(3);
        if v <= 0.0 {
            continue;
        }
        let u: f64 = 1.0 - rng.random::<f64>();
        if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
            return d * v;
        }
    }
}

/// A standard normal sample (Box-Muller).
fn standard_normal(rng: &mut impl Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
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

    /// Mean and coefficient of variation of the gaps.
    fn gap_stats(a: &[Duration]) -> (f64, f64) {
        let gaps: Vec<f64> = a.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()).collect();
        let n = gaps.len() as f64;
        let mean = gaps.iter().sum::<f64>() / n;
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / n;
        (mean, var.sqrt() / mean)
    }

    #[test]
    fn poisson_gaps_have_cv_one() {
        let a = poisson(
            50.0,
            Duration::from_secs(400),
            &mut SmallRng::seed_from_u64(3),
        );
        let (mean, cv) = gap_stats(&a);
        assert!((mean - 0.02).abs() < 0.001, "{mean}");
        assert!((cv - 1.0).abs() < 0.05, "{cv}");
    }

    #[test]
    fn gamma_has_the_asked_rate_and_burstiness() {
        for (cv, seed) in [(0.5, 1), (1.0, 2), (3.0, 3)] {
            let a = gamma(
                50.0,
                cv,
                Duration::from_secs(1000),
                &mut SmallRng::seed_from_u64(seed),
            );
            assert!(a.windows(2).all(|w| w[0] <= w[1]));
            let rate = a.len() as f64 / 1000.0;
            assert!((rate - 50.0).abs() < 50.0 * 0.08, "cv {cv}: rate {rate}");
            let (_, got) = gap_stats(&a);
            assert!((got - cv).abs() < cv * 0.1, "cv {cv}: measured {got}");
        }
    }

    #[test]
    fn bursty_gamma_packs_more_into_its_busiest_second() {
        let span = Duration::from_secs(600);
        let peak = |a: &[Duration]| {
            let mut b = vec![0u32; 600];
            for t in a {
                b[t.as_secs() as usize] += 1;
            }
            b.into_iter().max().unwrap_or(0)
        };
        let p = poisson(10.0, span, &mut SmallRng::seed_from_u64(9));
        let g = gamma(10.0, 4.0, span, &mut SmallRng::seed_from_u64(9));
        assert!(peak(&g) > 2 * peak(&p), "{} vs {}", peak(&g), peak(&p));
    }

    #[test]
    fn degenerate_parameters_give_no_arrivals() {
        let mut rng = SmallRng::seed_from_u64(1);
        assert!(gamma(0.0, 1.0, Duration::from_secs(5), &mut rng).is_empty());
        assert!(gamma(1.0, 0.0, Duration::from_secs(5), &mut rng).is_empty());
        assert!(poisson(f64::NAN, Duration::from_secs(5), &mut rng).is_empty());
    }
}
