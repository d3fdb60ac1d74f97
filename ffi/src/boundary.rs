//! The boundary every exported function runs behind: panics are caught and turned into
//! `TOOLMESH_PANIC`, failures into a result code plus an optional `toolmesh_error`, and C's raw
//! arguments are checked (NULL, UTF-8) before anything is done with them.

use crate::error::{toolmesh_error, Failure};
use crate::result::*;
use std::any::Any;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs `body` and returns what it returns, or `on_panic` if it panics: for exported functions
/// that return a value or nothing rather than a result code.
pub(crate) fn catch_panic<T>(on_panic: T, body: impl FnOnce() -> T) -> T {
    // Unwind safety: after a panic the only thing used is `on_panic`, which `body` never saw.
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(on_panic)
}

/// Runs the body of a fallible exported function behind the panic boundary: a panic becomes a
/// `TOOLMESH_PANIC` failure; `function` names the export in its message.
pub(crate) fn guarded(function: &str, body: impl FnOnce() -> Result<(), Failure>) -> Result<(), Failure> {
    let body = || {
        #[cfg(test)]
        if PANIC_IN.with(|target| target.get() == Some(function)) {
            panic!("injected by a test");
        }
        body()
    };
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|payload| Err(panic_failure(function, payload.as_ref())))
}

#[cfg(test)]
thread_local! {
    /// Tests only: the exported function (by name) whose body panics on this thread, to drive
    /// a panic through a real export.
    pub(crate) static PANIC_IN: std::cell::Cell<Option<&'static str>> = const { std::cell::Cell::new(None) };
}

/// The result code of `outcome`; a failure is also handed to C as a new `toolmesh_error` in
/// `*error_out` when `error_out` is not NULL.
///
/// # Safety
/// `error_out` is NULL or valid for writing one pointer.
pub(crate) unsafe fn report(outcome: Result<(), Failure>, error_out: *mut *mut toolmesh_error) -> toolmesh_result {
    let Err(failure) = outcome else { return TOOLMESH_OK };
    let code = failure.code;
    if !error_out.is_null() {
        let error = Box::new(toolmesh_error::from(failure));
        // SAFETY: the caller guarantees that a non-NULL `error_out` is valid for writing.
        unsafe { error_out.write(Box::into_raw(error)) };
    }
    code
}

fn panic_failure(function: &str, payload: &(dyn Any + Send)) -> Failure {
    let what = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    Failure::new(TOOLMESH_PANIC, format!("toolmesh panicked in {function}: {what}; this is a bug in toolmesh, please report it"))
}

/// A C string of `text`; an interior NUL byte (which C could not see past) is shown as `\0`.
pub(crate) fn c_string_lossy(text: impl Into<String>) -> CString {
    let text = text.into();
    CString::new(text).unwrap_or_else(|e| {
        let escaped = String::from_utf8_lossy(&e.into_vec()).replace('\0', "\\0");
        CString::new(escaped).expect("every NUL byte was escaped")
    })
}

/// Borrows a C string argument as UTF-8.
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string that stays valid and unchanged for `'a`.
pub(crate) unsafe fn str_arg<'a>(ptr: *const c_char, name: &str) -> Result<&'a str, Failure> {
    if ptr.is_null() {
        return Err(Failure::null_argument(name));
    }
    // SAFETY: non-NULL and NUL-terminated, as the caller guarantees.
    let bytes = unsafe { CStr::from_ptr(ptr) };
    bytes.to_str().map_err(|e| Failure::new(TOOLMESH_INVALID_UTF8, format!("the argument '{name}' is not valid UTF-8: {e}")))
}

/// Borrows a handle argument.
///
/// # Safety
/// `ptr` is NULL or points to a live `T` that is not freed for `'a`.
pub(crate) unsafe fn handle_arg<'a, T>(ptr: *const T, name: &str) -> Result<&'a T, Failure> {
    // SAFETY: NULL or live, as the caller guarantees.
    unsafe { ptr.as_ref() }.ok_or_else(|| Failure::null_argument(name))
}

/// Checks an output parameter before any work is done, so that a NULL one fails cleanly.
pub(crate) fn out_arg<T>(ptr: *mut *mut T, name: &str) -> Result<(), Failure> {
    if ptr.is_null() {
        Err(Failure::null_argument(name))
    } else {
        Ok(())
    }
}

/// Hands a new handle to C through a checked (non-NULL) output parameter.
///
/// # Safety
/// `out` passed `out_arg` and is valid for writing one pointer.
pub(crate) unsafe fn write_out<T>(out: *mut *mut T, value: T) {
    // SAFETY: checked non-NULL by `out_arg`, writable as the caller guarantees.
    unsafe { out.write(Box::into_raw(Box::new(value))) }
}

/// Fails with `TOOLMESH_WRONG_THREAD` on a toolmesh runtime thread, where blocking on the
/// runtime would deadlock (tokio refuses it with a panic); core words the refusal.
pub(crate) fn ensure_blocking_allowed(function: &str) -> Result<(), Failure> {
    match toolmesh_core::runtime::blocking_refused(function) {
        Some(message) => Err(Failure::new(TOOLMESH_WRONG_THREAD, message)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{toolmesh_error_code, toolmesh_error_free, toolmesh_error_message};

    fn message(error: *const toolmesh_error) -> String {
        // SAFETY: `error` is a live error made by `report`.
        unsafe { CStr::from_ptr(toolmesh_error_message(error)) }.to_str().unwrap().to_owned()
    }

    #[test]
    fn a_panic_becomes_a_code_and_a_message() {
        let mut error: *mut toolmesh_error = std::ptr::null_mut();
        let outcome = guarded("toolmesh_test", || panic!("boom"));
        // SAFETY: `error` is a valid place for one pointer.
        let code = unsafe { report(outcome, &mut error) };
        assert_eq!(code, TOOLMESH_PANIC);
        // SAFETY: `report` wrote a live error.
        assert_eq!(unsafe { toolmesh_error_code(error) }, TOOLMESH_PANIC);
        assert_eq!(message(error), "toolmesh panicked in toolmesh_test: boom; this is a bug in toolmesh, please report it");
        // SAFETY: freed once.
        unsafe { toolmesh_error_free(error) };
        assert_eq!(catch_panic(7, || panic!("{}", String::from("formatted"))), 7);
    }

    /// A panic inside real exports: each returns TOOLMESH_PANIC with its own name in the message,
    /// writes no output, and leaves the process (and the next call) fine.
    #[test]
    fn a_panic_in_an_export_becomes_toolmesh_panic() {
        use crate::handles::config::{toolmesh_config_free, toolmesh_config_new};
        let mut config = std::ptr::null_mut();
        let mut error: *mut toolmesh_error = std::ptr::null_mut();
        PANIC_IN.with(|target| target.set(Some("toolmesh_config_new")));
        // SAFETY: valid string and out-pointers.
        let code = unsafe { toolmesh_config_new(c"calc".as_ptr(), &mut config, &mut error) };
        PANIC_IN.with(|target| target.set(None));
        assert_eq!(code, TOOLMESH_PANIC);
        assert!(config.is_null(), "an output written by a call that panicked");
        assert_eq!(
            message(error),
            "toolmesh panicked in toolmesh_config_new: injected by a test; this is a bug in toolmesh, please report it"
        );
        // SAFETY: freed once.
        unsafe { toolmesh_error_free(error) };

        unsafe extern "C" fn never(_: *mut std::ffi::c_void, _: toolmesh_result, _: *const c_char, _: *const toolmesh_error) {
            panic!("a call that panicked must not complete");
        }
        PANIC_IN.with(|target| target.set(Some("toolmesh_agent_call")));
        // SAFETY: NULL agent and invocation are allowed (the panic comes first); valid strings.
        let code = unsafe {
            crate::call::toolmesh_agent_call(
                std::ptr::null(),
                std::ptr::null(),
                c"t".as_ptr(),
                0,
                c"{}".as_ptr(),
                Some(never),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        PANIC_IN.with(|target| target.set(None));
        assert_eq!(code, TOOLMESH_PANIC);

        // SAFETY: as above; no panic injected now.
        assert_eq!(unsafe { toolmesh_config_new(c"calc".as_ptr(), &mut config, std::ptr::null_mut()) }, TOOLMESH_OK);
        // SAFETY: freed once.
        unsafe { toolmesh_config_free(config) };
    }

    #[test]
    fn the_error_is_written_only_on_failure_and_only_when_asked_for() {
        let untouched = std::ptr::dangling_mut::<toolmesh_error>();
        let mut error = untouched;
        // SAFETY: `error` is a valid place for one pointer; NULL asks for no error.
        unsafe {
            assert_eq!(report(Ok(()), &mut error), TOOLMESH_OK);
            assert_eq!(error, untouched);
            assert_eq!(report(Err(Failure::null_argument("agent")), std::ptr::null_mut()), TOOLMESH_NULL_ARGUMENT);
        }
        let mut error = std::ptr::null_mut();
        let core_error = toolmesh_core::Error::new(toolmesh_core::ErrorKind::UnknownTool, "Unknown tool: nope");
        // SAFETY: as above.
        assert_eq!(unsafe { report(Err(core_error.into()), &mut error) }, TOOLMESH_UNKNOWN_TOOL);
        assert_eq!(message(error), "Unknown tool: nope");
        // SAFETY: freed once.
        unsafe { toolmesh_error_free(error) };
    }

    #[test]
    fn string_arguments_are_checked_for_null_and_utf8() {
        // SAFETY: NULL and NUL-terminated literals.
        unsafe {
            assert_eq!(
                str_arg(std::ptr::null(), "tool").unwrap_err(),
                Failure::new(TOOLMESH_NULL_ARGUMENT, "the argument 'tool' is NULL")
            );
            assert_eq!(str_arg(c"add".as_ptr(), "tool").unwrap(), "add");
            let failure = str_arg(c"\xff".as_ptr(), "tool").unwrap_err();
            assert_eq!(failure.code, TOOLMESH_INVALID_UTF8);
            assert!(failure.message.starts_with("the argument 'tool' is not valid UTF-8"), "{}", failure.message);
        }
    }

    #[test]
    fn blocking_is_refused_on_a_runtime_thread() {
        let runtime = toolmesh_core::runtime::runtime();
        let refused = runtime.block_on(async { ensure_blocking_allowed("toolmesh_agent_stop") }).unwrap_err();
        assert_eq!(refused.code, TOOLMESH_WRONG_THREAD);
        assert!(ensure_blocking_allowed("toolmesh_agent_stop").is_ok());
    }
}
