//! `toolmesh_error`: the code and message of one failure, handed to C through the optional
//! `toolmesh_error **error_out` parameter that every fallible function takes last.

use crate::boundary::{c_string_lossy, catch_panic};
use crate::result::*;
use std::ffi::{c_char, CString};

/// One failure: its result code and message. The message is the core's message, word for word
/// the one Python, Node and Java report for the same failure.
///
/// Ownership: created by a failing toolmesh function into `*error_out`; the caller frees it with
/// `toolmesh_error_free`.
pub struct toolmesh_error {
    code: toolmesh_result,
    message: CString,
}

/// Why an operation failed, before it becomes a `toolmesh_error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub code: toolmesh_result,
    pub message: String,
}

impl Failure {
    pub fn new(code: toolmesh_result, message: impl Into<String>) -> Self {
        Failure { code, message: message.into() }
    }

    pub fn null_argument(name: &str) -> Self {
        Failure::new(TOOLMESH_NULL_ARGUMENT, format!("the argument '{name}' is NULL"))
    }
}

impl From<toolmesh_core::Error> for Failure {
    fn from(error: toolmesh_core::Error) -> Self {
        // Core codes are small positive numbers (1001-9999): they always fit.
        Failure { code: error.code() as toolmesh_result, message: error.message().to_owned() }
    }
}

impl From<Failure> for toolmesh_error {
    fn from(failure: Failure) -> Self {
        toolmesh_error { code: failure.code, message: c_string_lossy(failure.message) }
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
