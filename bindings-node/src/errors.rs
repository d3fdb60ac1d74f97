//! Core errors as the JS values native functions throw or reject with.

use napi::bindgen_prelude::{JsObjectValue, JsValue};
use napi::Env;
use toolmesh_core::Error;

/// An `Error` whose message is core's message, with `code` (the stable number) and `kind` (the
/// stable name, e.g. `DEPENDENCY_UNRESOLVED`). The TypeScript layer turns it into the matching
/// `ToolmeshError` subclass. A tool error also has `appCode` and `dataJson` (its data as JSON
/// text, when it has any): the TypeScript layer makes it a `ToolError`.
pub(crate) fn to_js_error(env: &Env, error: &Error) -> napi::Error {
    build_js_error(env, error).unwrap_or_else(|failure| failure)
}

fn build_js_error(env: &Env, error: &Error) -> napi::Result<napi::Error> {
    let mut object = env.create_error(napi::Error::from_reason(error.message()))?;
    object.set_named_property("code", error.code())?;
    object.set_named_property("kind", error.kind().name())?;
    if let Some(app_code) = error.app_code() {
        object.set_named_property("appCode", app_code)?;
    }
    if let Some(data) = error.data() {
        object.set_named_property("dataJson", data.to_string())?;
    }
    Ok(napi::Error::from(object.to_unknown()))
}
