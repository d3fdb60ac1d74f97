//! Which traces are recorded: the OpenTelemetry samplers `OTEL_TRACES_SAMPLER` names. The
//! decision travels in the `traceparent` flags, so every hop of a trace decides alike.

use crate::context::TraceContext;

/// A sampler as `OTEL_TRACES_SAMPLER` (and `_ARG`) configure it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampler {
    AlwaysOn,
    AlwaysOff,
    /// Records a trace when its id falls in the ratio (0.0 ..= 1.0).
    TraceIdRatio(f64),
    /// Follows the parent's decision; a root is decided by the inner sampler.
    ParentBased(Root),
}

/// What decides a root span under [`Sampler::ParentBased`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Root {
    AlwaysOn,
    AlwaysOff,
    TraceIdRatio(f64),
}

impl Default for Sampler {
    /// The OpenTelemetry default, `parentbased_always_on`.
    fn default() -> Self {
        Sampler::ParentBased(Root::AlwaysOn)
    }
}

impl Sampler {
    /// The span of a new trace, sampled or not.
    pub fn root(&self) -> TraceContext {
        let mut root = TraceContext::new_root();
        root.sampled = match *self {
            Sampler::AlwaysOn | Sampler::ParentBased(Root::AlwaysOn) => true,
            Sampler::AlwaysOff | Sampler::ParentBased(Root::AlwaysOff) => false,
            Sampler::TraceIdRatio(ratio) | Sampler::ParentBased(Root::TraceIdRatio(ratio)) => in_ratio(&root, ratio),
        };
        root
    }

    /// A new span under `parent`, sampled or not.
    pub fn child(&self, parent: &TraceContext) -> TraceContext {
        let mut child = parent.child();
        child.sampled = match *self {
            Sampler::ParentBased(_) => parent.sampled,
            Sampler::AlwaysOn => true,
            Sampler::AlwaysOff => false,
            Sampler::TraceIdRatio(ratio) => in_ratio(&child, ratio),
        };
        child
    }
}

/// The rule OpenTelemetry's SDKs share, so that every process (in any language) decides one
/// trace id alike: the id's last 8 bytes, as a big-endian number shifted right by one, fall
/// below `ratio` × 2^63.
fn in_ratio(trace: &TraceContext, ratio: f64) -> bool {
    let id = trace.trace_id_bytes();
    let low = u64::from_be_bytes(id[8..].try_into().expect("8 bytes")) >> 1;
    let bound = (ratio.clamp(0.0, 1.0) * (1u64 << 63) as f64) as u64;
    low < bound
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace(id: &str) -> TraceContext {
        TraceContext::parse(&format!("00-{id}-00f067aa0ba902b7-01"), None).unwrap()
    }

    #[test]
    fn a_ratio_samples_the_trace_ids_whose_low_half_falls_under_it() {
        // Low half 0x4000...0 >> 1 = 2^61: under a quarter of 2^63 only when the ratio exceeds 0.25.
        let quarter = trace("ffffffffffffffff4000000000000000");
        assert!(!in_ratio(&quarter, 0.25));
        assert!(in_ratio(&quarter, 0.2501));
        assert!(in_ratio(&trace("00000000000000000000000000000001"), 0.0000001));
        assert!(!in_ratio(&trace("0000000000000000ffffffffffffffff"), 0.9999));
        assert!(in_ratio(&trace("0000000000000000ffffffffffffffff"), 1.0));
        assert!(!in_ratio(&trace("00000000000000000000000000000001"), 0.0));
    }

    #[test]
    fn a_ratio_samples_about_that_share_of_roots() {
        let sampler = Sampler::TraceIdRatio(0.3);
        let sampled = (0..20_000).filter(|_| sampler.root().sampled).count();
        assert!((5_400..6_600).contains(&sampled), "{sampled} of 20000 at 0.3");
    }

    #[test]
    fn parent_based_samplers_follow_the_parent_and_decide_roots_by_their_inner_sampler() {
        let (yes, mut no) = (trace("4bf92f3577b34da6a3ce929d0e0e4736"), trace("4bf92f3577b34da6a3ce929d0e0e4736"));
        no.sampled = false;
        for root in [Root::AlwaysOn, Root::AlwaysOff, Root::TraceIdRatio(0.5)] {
            let sampler = Sampler::ParentBased(root);
            assert!(sampler.child(&yes).sampled);
            assert!(!sampler.child(&no).sampled);
        }
        assert!(Sampler::ParentBased(Root::AlwaysOn).root().sampled);
        assert!(!Sampler::ParentBased(Root::AlwaysOff).root().sampled);
        // Not parent based: the sampler's own decision, whatever the parent's.
        assert!(Sampler::AlwaysOn.child(&no).sampled);
        assert!(!Sampler::AlwaysOff.child(&yes).sampled);
        let child = Sampler::TraceIdRatio(1.0).child(&no);
        assert!(child.sampled && child.trace_id() == no.trace_id() && child.span_id() != no.span_id());
    }
}
