//! Head sampling by `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`, the
//! standard samplers of the OpenTelemetry SDK specification: consulted
//! once per entry span (engine intake, agent execution, A2A handle);
//! children follow their parent.

use opentelemetry::trace::TraceId;

/// A sampler (`parentbased_always_on` unless configured otherwise).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sampler {
    AlwaysOn,
    AlwaysOff,
    /// `traceidratio`: a fraction of traces, chosen by trace id so every
    /// process decides the same for one trace.
    Ratio(f64),
    /// `parentbased_*`: a span with a parent follows the parent's sampled
    /// flag; a root span asks the inner sampler.
    ParentBased(Root),
}

/// The root sampler of [`Sampler::ParentBased`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Root {
    AlwaysOn,
    AlwaysOff,
    Ratio(f64),
}

impl Default for Sampler {
    fn default() -> Self {
        Sampler::ParentBased(Root::AlwaysOn)
    }
}

/// An `OTEL_TRACES_SAMPLER` value this build does not implement.
#[derive(Debug, thiserror::Error)]
#[error("unsupported OTEL_TRACES_SAMPLER {0:?} (using parentbased_always_on)")]
pub struct UnknownSampler(pub String);

impl Sampler {
    /// The sampler `name` with `arg` (the ratio of the `*traceidratio`
    /// samplers, 1.0 when missing or not a number in [0, 1]).
    pub fn from_env(name: Option<&str>, arg: Option<&str>) -> Result<Self, UnknownSampler> {
        let ratio = || {
            arg.and_then(|a| a.trim().parse::<f64>().ok())
                .filter(|r| (0.0..=1.0).contains(r))
                .unwrap_or(1.0)
        };
        Ok(match name.map(str::trim) {
            None | Some("") | Some("parentbased_always_on") => Sampler::default(),
            Some("always_on") => Sampler::AlwaysOn,
            Some("always_off") => Sampler::AlwaysOff,
            Some("traceidratio") => Sampler::Ratio(ratio()),
            Some("parentbased_always_off") => Sampler::ParentBased(Root::AlwaysOff),
            Some("parentbased_traceidratio") => Sampler::ParentBased(Root::Ratio(ratio())),
            Some(other) => return Err(UnknownSampler(other.to_owned())),
        })
    }

    /// Whether a new span of `trace_id` records; `parent_sampled` is the
    /// sampled flag of its parent, `None` for a root span.
    #[inline]
    pub fn sample(&self, parent_sampled: Option<bool>, trace_id: TraceId) -> bool {
        match (self, parent_sampled) {
            (Sampler::AlwaysOn, _) => true,
            (Sampler::AlwaysOff, _) => false,
            (Sampler::Ratio(r), _) => by_ratio(*r, trace_id),
            (Sampler::ParentBased(_), Some(sampled)) => sampled,
            (Sampler::ParentBased(Root::AlwaysOn), None) => true,
            (Sampler::ParentBased(Root::AlwaysOff), None) => false,
            (Sampler::ParentBased(Root::Ratio(r)), None) => by_ratio(*r, trace_id),
        }
    }
}

/// The trace id ratio test: the lower 63 bits of the id's last eight
/// bytes below `ratio` of their range (the SDKs' rule, so agentry decides
/// as other services in the same trace do).
fn by_ratio(ratio: f64, trace_id: TraceId) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    let bound = (ratio.max(0.0) * (1u64 << 63) as f64) as u64;
    let bytes = trace_id.to_bytes();
    let mut low = [0u8; 8];
    low.copy_from_slice(&bytes[8..]);
    (u64::from_be_bytes(low) >> 1) < bound
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(low: u64) -> TraceId {
        TraceId::from_bytes(((7u128 << 64) | u128::from(low)).to_be_bytes())
    }

    #[test]
    fn reads_the_standard_names() {
        let s = |n: &str, a: Option<&str>| Sampler::from_env(Some(n), a).unwrap();
        assert_eq!(Sampler::from_env(None, None).unwrap(), Sampler::default());
        assert_eq!(s("always_on", None), Sampler::AlwaysOn);
        assert_eq!(s("always_off", None), Sampler::AlwaysOff);
        assert_eq!(s("traceidratio", Some("0.25")), Sampler::Ratio(0.25));
        assert_eq!(
            s("parentbased_traceidratio", Some("x")),
            Sampler::ParentBased(Root::Ratio(1.0))
        );
        assert_eq!(
            s("parentbased_always_off", None),
            Sampler::ParentBased(Root::AlwaysOff)
        );
        assert!(matches!(
            Sampler::from_env(Some("jaeger_remote"), None),
            Err(UnknownSampler(n)) if n == "jaeger_remote"
        ));
    }

    #[test]
    fn parent_based_follows_the_parent() {
        let s = Sampler::ParentBased(Root::AlwaysOff);
        assert!(s.sample(Some(true), id(1)));
        assert!(!s.sample(Some(false), id(1)));
        assert!(!s.sample(None, id(1)));
        assert!(Sampler::default().sample(None, id(1)));
        assert!(!Sampler::default().sample(Some(false), id(1)));
        assert!(Sampler::AlwaysOn.sample(Some(false), id(1)));
    }

    #[test]
    fn ratio_keeps_about_that_fraction_by_trace_id() {
        assert!(Sampler::Ratio(0.5).sample(None, id(0)));
        assert!(!Sampler::Ratio(0.5).sample(None, id(u64::MAX)));
        assert!(!Sampler::Ratio(0.0).sample(None, id(0)));
        let kept = (0..10_000u64)
            .filter(|i| Sampler::Ratio(0.1).sample(None, id(i.wrapping_mul(0x9e37_79b9_7f4a_7c15))))
            .count();
        assert!((800..1200).contains(&kept), "{kept}");
    }
}
