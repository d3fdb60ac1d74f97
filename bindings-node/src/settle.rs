//! Asynchronous native operations as JS promises, run on core's runtime.

use crate::errors::to_js_error;
use napi::bindgen_prelude::{Object, ToNapiValue};
use napi::Env;
use std::future::Future;
use toolmesh_core::{runtime, Error};

/// Settles a promise on the JS thread; boxed so that the deferred's type can be named.
type Settle<T> = Box<dyn FnOnce(Env) -> napi::Result<T> + Send>;

/// Runs `operation` on core's runtime and returns a promise of its outcome; a core error rejects
/// it (see [`to_js_error`]). Core settles it even if the operation panics: an unsettled deferred
/// would also keep Node's event loop alive.
pub(crate) fn promise<T, F>(env: &Env, operation: F) -> napi::Result<Object<'_>>
where
    T: ToNapiValue + Send + 'static,
    F: Future<Output = Result<T, Error>> + Send + 'static,
{
    let (deferred, promise) = env.create_deferred::<T, Settle<T>>()?;
    runtime::spawn_settled(operation, move |outcome| {
        deferred.resolve(Box::new(move |env| outcome.map_err(|error| to_js_error(&env, &error))));
    });
    Ok(promise)
}
