//! `toolmesh_error`: the code and message of one failure, handed to C through the optional
//! `toolmesh_error **error_out` parameter that every fallible function takes last.

use crate::boundary::{c_string_lossy, catch_panic};
use crate::result::*;
use std::ffi::{c_char, CString};
use std::ptr;

/// One failure: its result code and message. The message is the core's message, word for word
/// the one Python, Node and Java report for the same failure. A `TOOLMESH_TOOL_ERROR` (a tool's
/// own error) also carries the tool's application code and, when it gave any, its data.
///
/// Ownership: created by a failing toolmesh function into `*error_out`; the caller frees it with
/// `toolmesh_error_free`. The error a dependency call's callback receives is borrowed instead:
/// valid for the duration of the callback, never freed by the callback.
pub struct toolmesh_error {
    code: toolmesh_result,
    message: CString,
    app_code: Option<CString>,
    data_json: Option<CString>,
}

/// Why an operation failed, before it becomes a `toolmesh_error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub code: toolmesh_result,
    pub message: String,
    /// A tool error's application code and data (JSON text).
    pub tool_error: Option<(String, Option<String>)>,
}

impl Failure {
    pub fn new(code: toolmesh_result, message: impl Into<String>) -> Self {
        Failure { code, message: message.into(), tool_error: None }
    }

    pub fn null_argument(name: &str) -> Self {
        Failure::new(TOOLMESH_NULL_ARGUMENT, format!("the argument '{name}' is NULL"))
    }
}

impl From<toolmesh_core::Error> for Failure {
    fn from(error: toolmesh_core::Error) -> Self {
        // Core codes are small positive numbers (1001-9999): they always fit.
        let tool_error = error.app_code().map(|code| (code.to_owned(), error.data().map(|data| data.to_string())));
        Failure { code: error.code() as toolmesh_result, message: error.message().to_owned(), tool_error }
    }
}

impl From<Failure> for toolmesh_error {
    fn from(failure: Failure) -> Self {
        let (app_code, data_json) = match failure.tool_error {
            Some((code, data)) => (Some(c_string_lossy(code)), data.map(c_string_lossy)),
            None => (None, None),
        };
        toolmesh_error { code: failure.code, message: c_string_lossy(failure.message), app_code, data_json }
    }
}

impl toolmesh_error {
    pub(crate) fn code(&self) -> toolmesh_result {
        self.code
    }

    pub(crate) fn message(&self) -> &std::ffi::CStr {
        &self.message
    }

    /// The core error this one was made from, for a handler that re-raises it: a core code keeps
    /// its kind (a tool error its application code and data); a C ABI code (below 1000) has no
    /// kind and is `None`.
    pub(crate) fn to_core(&self) -> Option<toolmesh_core::Error> {
        let kind = u32::try_from(self.code).ok().and_then(toolmesh_core::ErrorKind::from_code)?;
        let message = self.message.to_string_lossy().into_owned();
        match &self.app_code {
            Some(app_code) => {
                let data = self.data_json.as_ref().and_then(|d| serde_json::from_slice(d.as_bytes()).ok());
                toolmesh_core::Error::tool_error(app_code.to_string_lossy(), message, data).ok()
            }
            None => Some(toolmesh_core::Error::new(kind, message)),
        }
    }
}

/// The error's result code; `TOOLMESH_NULL_ARGUMENT` when `error` is NULL.
///
/// # Safety
/// `error` is NULL or a live `toolmesh_error` (borrowed for the call).
#[no_mangle]
pub unsafe extern "C" fn toolmesh_error_code(error: *const toolmesh_error) -> toolmesh_result {
    catch_panic(TOOLMESH_PANIC, || {
        // SAFETY: the caller passes NULL or a live error it has not freed.
        unsafe { error.as_ref() }.map_or(TOOLMESH_NULL_ARGUMENT, |e| e.code)
    })
}

/// The error's message (UTF-8). Borrowed from `error`: valid until `toolmesh_error_free(error)`.
/// An empty string when `error` is NULL.
///
/// # Safety
/// `error` is NULL or a live `toolmesh_error` (borrowed for the call).
#[no_mangle]
pub unsafe extern "C" fn toolmesh_error_message(error: *const toolmesh_error) -> *const c_char {
    catch_panic(c"".as_ptr(), || {
        // SAFETY: the caller passes NULL or a live error it has not freed.
        unsafe { error.as_ref() }.map_or(c"".as_ptr(), |e| e.message.as_ptr())
    })
}

/// The application code of a `TOOLMESH_TOOL_ERROR` (e.g. "unknown_sku"): the code the tool's
/// handler failed with, 1 to 64 characters among `A-Z a-z 0-9 _ . : -`. NULL for every other
/// error and when `error` is NULL. Borrowed from `error`: valid as long as it is.
///
/// # Safety
/// `error` is NULL or a live `toolmesh_error` (borrowed for the call).
#[no_mangle]
pub unsafe extern "C" fn toolmesh_error_app_code(error: *const toolmesh_error) -> *const c_char {
    catch_panic(ptr::null(), || {
        // SAFETY: the caller passes NULL or a live error it has not freed.
        unsafe { error.as_ref() }.and_then(|e| e.app_code.as_ref()).map_or(ptr::null(), |c| c.as_ptr())
    })
}

/// The data of a `TOOLMESH_TOOL_ERROR` as UTF-8 JSON text, when the tool gave any; NULL when it
/// gave none, for every other error and when `error` is NULL. Borrowed from `error`: valid as
/// long as it is.
///
/// # Safety
/// `error` is NULL or a live `toolmesh_error` (borrowed for the call).
#[no_mangle]
pub unsafe extern "C" fn toolmesh_error_data_json(error: *const toolmesh_error) -> *const c_char {
    catch_panic(ptr::null(), || {
        // SAFETY: the caller passes NULL or a live error it has not freed.
        unsafe { error.as_ref() }.and_then(|e| e.data_json.as_ref()).map_or(ptr::null(), |d| d.as_ptr())
    })
}

/// Frees an error. Freeing NULL does nothing.
///
/// # Safety
/// `error` is NULL or a `toolmesh_error` from a toolmesh function, not freed before; it is owned
/// by this call and must not be used afterwards.
#[no_mangle]
pub unsafe extern "C" fn toolmesh_error_free(error: *mut toolmesh_error) {
    catch_panic((), || {
        if !error.is_null() {
            // SAFETY: a non-NULL error came from `Box::into_raw` in `boundary::report` and is
            // freed once, as the caller promises.
            drop(unsafe { Box::from_raw(error) });
        }
    })
}
