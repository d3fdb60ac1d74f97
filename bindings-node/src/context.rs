//! The request context of an inbound call, as the object JS handlers see.

use napi_derive::napi;
use std::collections::HashMap;
use std::sync::Arc;
use toolmesh_core::context::RequestContext as CoreContext;

/// Read-only view of core's request context. Proxies hand it back to core unchanged, so header
/// filtering and trace spans are decided there, not here.
#[napi]
pub struct RequestContext {
    pub(crate) inner: Arc<CoreContext>,
}

#[napi]
impl RequestContext {
    /// The propagated headers (lowercase names); a fresh object each time.
    #[napi(getter)]
    pub fn headers(&self) -> HashMap<String, String> {
        self.inner.headers.iter().cloned().collect()
    }

    #[napi(getter)]
    pub fn trace_id(&self) -> Option<&str> {
        self.inner.trace.as_ref().map(|t| t.trace_id.as_str())
    }

    /// The span of the handler that is running; outbound calls become its children.
    #[napi(getter)]
    pub fn span_id(&self) -> Option<&str> {
        self.inner.trace.as_ref().map(|t| t.span_id.as_str())
    }

    #[napi(getter)]
    pub fn sampled(&self) -> bool {
        self.inner.trace.as_ref().is_some_and(|t| t.sampled)
    }

    #[napi(getter)]
    pub fn traceparent(&self) -> Option<String> {
        self.inner.trace.as_ref().map(|t| t.traceparent())
    }

    #[napi(getter)]
    pub fn tracestate(&self) -> Option<&str> {
        self.inner.trace.as_ref().and_then(|t| t.tracestate.as_deref())
    }

    /// Milliseconds left before the inbound call's deadline, if it has one.
    #[napi(getter)]
    pub fn remaining_ms(&self) -> Option<u32> {
        let left = self.inner.deadline?.saturating_duration_since(tokio::time::Instant::now());
        Some(u32::try_from(left.as_millis()).unwrap_or(u32::MAX))
    }
}
