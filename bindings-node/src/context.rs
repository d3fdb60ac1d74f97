//! The request context of an inbound call, as the object JS handlers see.

use napi::bindgen_prelude::Function;
use napi::threadsafe_function::ThreadsafeFunctionCallMode;
use napi_derive::napi;
use std::collections::HashMap;
use std::sync::Arc;
use toolmesh_core::context::RequestContext as CoreContext;
use toolmesh_core::report::LogLevel;

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
        self.inner.trace_id()
    }

    /// The span of the handler that is running; outbound calls become its children.
    #[napi(getter)]
    pub fn span_id(&self) -> Option<&str> {
        self.inner.span_id()
    }

    #[napi(getter)]
    pub fn sampled(&self) -> bool {
        self.inner.sampled()
    }

    #[napi(getter)]
    pub fn traceparent(&self) -> Option<String> {
        self.inner.traceparent()
    }

    #[napi(getter)]
    pub fn tracestate(&self) -> Option<&str> {
        self.inner.tracestate()
    }

    /// Milliseconds left before the inbound call's deadline, if it has one.
    #[napi(getter)]
    pub fn remaining_ms(&self) -> Option<u32> {
        // JS numbers hold any u32 exactly; a longer wait than 49 days reads as the longest one.
        self.inner.remaining_ms().map(|ms| u32::try_from(ms).unwrap_or(u32::MAX))
    }

    /// Reports the handler's progress to its caller: sent only when the request asked for
    /// progress and its caller is still waiting. Returns whether it was sent.
    #[napi]
    pub fn progress(&self, progress: f64, total: Option<f64>, message: Option<String>) -> bool {
        self.inner.progress(progress, total, message.as_deref())
    }

    /// Sends `data` (any JSON value) as a log message at `level` ("debug" up to "emergency"):
    /// sent only at or above the level the request opted into. Returns whether it was sent.
    #[napi(ts_args_type = "level: string, data: unknown, logger?: string | undefined | null")]
    pub fn log(&self, level: String, data: serde_json::Value, logger: Option<String>) -> napi::Result<bool> {
        let level = LogLevel::named(&level).map_err(|e| napi::Error::new(napi::Status::InvalidArg, e.message()))?;
        Ok(self.inner.log(level, &data, logger.as_deref()))
    }

    /// Whether the request was cancelled (its caller went away): reports are dropped from then on.
    #[napi(getter)]
    pub fn cancelled(&self) -> bool {
        self.inner.is_cancelled()
    }

    /// Calls `callback` on the JS thread once the request is cancelled (its caller went away or
    /// its deadline passed), at once if it already is. The package's `signal` getter passes its
    /// AbortController's `abort`. The callback is queued from core's thread without blocking,
    /// and a pending registration does not keep Node running.
    #[napi(ts_args_type = "callback: () => void")]
    pub fn on_cancel(&self, callback: Function<(), ()>) -> napi::Result<()> {
        let callback = callback.build_threadsafe_function::<()>().callee_handled::<false>().weak::<true>().build()?;
        self.inner.on_cancel(move || {
            callback.call((), ThreadsafeFunctionCallMode::NonBlocking);
        });
        Ok(())
    }

    /// The caller's verified identity (its certificate's SPIFFE ID).
    #[napi(getter)]
    pub fn caller(&self) -> Option<&str> {
        self.inner.caller.as_deref()
    }

    /// The client's answers to this tool's earlier input requests, by key; null when none.
    #[napi(getter, ts_return_type = "Record<string, unknown> | null")]
    pub fn input_responses(&self) -> Option<serde_json::Value> {
        self.inner.input.as_deref().map(|input| serde_json::Value::Object(input.responses.clone()))
    }

    /// The state this tool's earlier input requests carried, checked by core; null when none.
    #[napi(getter, ts_return_type = "unknown")]
    pub fn request_state(&self) -> Option<serde_json::Value> {
        self.inner.input.as_deref().and_then(|input| input.state.clone())
    }

    /// The capabilities the MCP client declared; null when unknown (a legacy-era request).
    #[napi(getter, ts_return_type = "Record<string, unknown> | null")]
    pub fn client_capabilities(&self) -> Option<serde_json::Value> {
        self.inner.client_capabilities.as_deref().cloned()
    }
}
