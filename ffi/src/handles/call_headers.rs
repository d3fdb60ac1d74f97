//! `toolmesh_call_headers`: headers a C caller sets on purpose for the calls it makes.

use crate::boundary::{catch_panic, guarded, out_arg, report, str_arg, write_out};
use crate::error::{toolmesh_error, Failure};
use crate::result::toolmesh_result;
use std::ffi::c_char;
use toolmesh_core::context::check_call_header;

/// Headers set on purpose for dependency calls: give it to `toolmesh_agent_call_with_headers`.
/// The handler each call reaches sees them whatever its agent's allow-list (option
/// `propagate_headers`); they go further only where allow-lists name them. Inside a handler they
/// are added to the headers the invocation sends onward (a header set here wins over the
/// invocation's of the same name), by the same rule as in every language (core's
/// `RequestContext::with_call_headers`).
///
/// Ownership: created by `toolmesh_call_headers_new`, freed by the caller with
/// `toolmesh_call_headers_free`. Calls only borrow it (they keep copies of the headers), so one
/// set serves any number of calls, and may be changed or freed as soon as a call has returned.
/// Not to be changed by one thread while another uses it.
pub struct toolmesh_call_headers {
    pub(crate) headers: Vec<(String, String)>,
}

/// Creates an empty set of call headers; on success `*headers_out` receives it.
///
/// # Safety
/// `headers_out` is NULL (an error) or points to storage for one pointer, borrowed for the call,
/// that receives on success a new `toolmesh_call_headers` owned by the caller, who frees it with
/// `toolmesh_call_headers_free`. `error_out` is NULL or points to storage for one pointer
/// (borrowed for the call) that receives, on failure only, a new `toolmesh_error` owned by the
/// caller, who frees it with `toolmesh_error_free`.
#[no_mangle]
pub unsafe extern "C" fn toolmesh_call_headers_new(
    headers_out: *mut *mut toolmesh_call_headers,
    error_out: *mut *mut toolmesh_error,
) -> toolmesh_result {
    let outcome = guarded("toolmesh_call_headers_new", || {
        out_arg(headers_out, "headers_out")?;
        // SAFETY: checked by `out_arg`, writable as the caller guarantees.
        unsafe { write_out(headers_out, toolmesh_call_headers { headers: Vec::new() }) };
        Ok(())
    });
    // SAFETY: `error_out` is NULL or writable, as the caller guarantees.
    unsafe { report(outcome, error_out) }
}

/// Sets header `name` (case-insensitive) to `value`, replacing a value set before. Checked at
/// once: a name that is not an HTTP header name, a value that is not a header value, or a header
/// the request sets itself (`content-type`, `traceparent`, ...) fails with
/// `TOOLMESH_INVALID_ARGUMENTS` and a message naming the header; the set is then unchanged.
///
/// # Safety
/// `headers` is NULL or a live set of call headers, borrowed for the call and not used by another
/// thread during it; `name` and `value` are NULL or NUL-terminated strings, borrowed for the call
/// (the set keeps copies). `error_out` is NULL or points to storage for one pointer (borrowed for
/// the call) that receives, on failure only, a new `toolmesh_error` owned by the caller, who frees
/// it with `toolmesh_error_free`.
#[no_mangle]
pub unsafe extern "C" fn toolmesh_call_headers_set(
    headers: *mut toolmesh_call_headers,
    name: *const c_char,
    value: *const c_char,
    error_out: *mut *mut toolmesh_error,
) -> toolmesh_result {
    let outcome = guarded("toolmesh_call_headers_set", || {
        // SAFETY: NULL or live and not shared during the call, as the caller guarantees.
        let headers = unsafe { headers.as_mut() }.ok_or_else(|| Failure::null_argument("headers"))?;
        // SAFETY: NULL or NUL-terminated, as the caller guarantees.
        let (name, value) = unsafe { (str_arg(name, "name")?, str_arg(value, "value")?) };
        let name = check_call_header(name, value)?;
        headers.headers.retain(|(set, _)| *set != name);
        headers.headers.push((name, value.to_owned()));
        Ok(())
    });
    // SAFETY: `error_out` is NULL or writable, as the caller guarantees.
    unsafe { report(outcome, error_out) }
}

/// Frees a set of call headers. Freeing NULL does nothing.
///
/// # Safety
/// `headers` is NULL or a set from `toolmesh_call_headers_new`, not freed before; it is owned by
/// this call and must not be used afterwards.
#[no_mangle]
pub unsafe extern "C" fn toolmesh_call_headers_free(headers: *mut toolmesh_call_headers) {
    catch_panic((), || {
        if !headers.is_null() {
            // SAFETY: created by `Box::into_raw` in `toolmesh_call_headers_new`, freed once.
            drop(unsafe { Box::from_raw(headers) });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{toolmesh_error_free, toolmesh_error_message};
    use crate::result::{TOOLMESH_INVALID_ARGUMENTS, TOOLMESH_NULL_ARGUMENT, TOOLMESH_OK};
    use std::ffi::CStr;

    #[test]
    fn headers_are_checked_when_set_and_replace_earlier_values() {
        let mut headers = std::ptr::null_mut();
        let mut error = std::ptr::null_mut();
        // SAFETY: valid out-pointers; the set is live until freed at the end; literals are NUL-terminated.
        unsafe {
            assert_eq!(toolmesh_call_headers_new(&mut headers, std::ptr::null_mut()), TOOLMESH_OK);
            assert_eq!(
                toolmesh_call_headers_set(headers, c"X-Tenant".as_ptr(), c"a".as_ptr(), std::ptr::null_mut()),
                TOOLMESH_OK
            );
            assert_eq!(
                toolmesh_call_headers_set(headers, c"x-tenant".as_ptr(), c"b".as_ptr(), std::ptr::null_mut()),
                TOOLMESH_OK
            );
            let code = toolmesh_call_headers_set(headers, c"Content-Type".as_ptr(), c"text/plain".as_ptr(), &mut error);
            assert_eq!(code, TOOLMESH_INVALID_ARGUMENTS);
            let message = CStr::from_ptr(toolmesh_error_message(error)).to_str().unwrap();
            assert!(message.starts_with("call header 'Content-Type' cannot be set"), "{message}");
            toolmesh_error_free(error);
            assert_eq!((*headers).headers, [("x-tenant".to_owned(), "b".to_owned())]);
            assert_eq!(
                toolmesh_call_headers_set(std::ptr::null_mut(), c"x".as_ptr(), c"y".as_ptr(), std::ptr::null_mut()),
                TOOLMESH_NULL_ARGUMENT
            );
            toolmesh_call_headers_free(headers);
            toolmesh_call_headers_free(std::ptr::null_mut());
        }
    }
}
