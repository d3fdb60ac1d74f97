//! The way into every native method: a core error is thrown as a `ToolmeshException`, and so is a
//! panic (code INTERNAL), which must never unwind into the JVM: that would abort the process.

use crate::jvm;
use jni::objects::{JThrowable, JValue};
use jni::JNIEnv;
use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use toolmesh_core::{Error, ErrorKind};

/// Why a native method failed.
pub(crate) enum Failure {
    /// Thrown to Java as a `ToolmeshException` with the error's code, kind and message.
    Mesh(Error),
    /// A JNI call failed; if it left a Java exception pending, that exception is what Java sees.
    Jni(jni::errors::Error),
    /// Called where it must not be (a blocking call on a core thread): an `IllegalStateException`.
    WrongThread(String),
}

/// Refuses a native method that blocks on core's runtime when it is called on one of core's
/// threads (a handler run in place by an executor such as `Runnable::run`): blocking there would
/// deadlock, and tokio would panic. Core words the refusal, as for every binding.
pub(crate) fn ensure_blocking_allowed(function: &str) -> Result<(), Failure> {
    match toolmesh_core::runtime::blocking_refused(function) {
        Some(message) => Err(Failure::WrongThread(message)),
        None => Ok(()),
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure::Mesh(error)
    }
}

impl From<jni::errors::Error> for Failure {
    fn from(error: jni::errors::Error) -> Self {
        Failure::Jni(error)
    }
}

/// Runs the body of a native method; on failure, leaves the matching Java exception pending and
/// returns `T::default()` (which Java never sees, since the exception is thrown instead).
pub(crate) fn entry<'local, T: Default>(env: &mut JNIEnv<'local>, body: impl FnOnce(&mut JNIEnv<'local>) -> Result<T, Failure>) -> T {
    let error = match catch_unwind(AssertUnwindSafe(|| body(env))) {
        Ok(Ok(value)) => return value,
        Ok(Err(Failure::Mesh(error))) => error,
        Ok(Err(Failure::Jni(jni::errors::Error::JavaException))) => return T::default(),
        Ok(Err(Failure::Jni(error))) => Error::new(ErrorKind::Internal, format!("a JNI call failed: {error}")),
        Ok(Err(Failure::WrongThread(message))) => {
            let _ = env.throw_new("java/lang/IllegalStateException", message);
            return T::default();
        }
        Err(panic) => Error::new(
            ErrorKind::Internal,
            format!("toolmesh panicked: {}; this is a bug in toolmesh, please report it", panic_message(&*panic)),
        ),
    };
    throw(env, &error);
    T::default()
}

/// Makes `error` the pending Java exception, replacing any other.
fn throw(env: &mut JNIEnv, error: &Error) {
    if env.exception_check().unwrap_or(false) {
        let _ = env.exception_clear();
    }
    let thrown = (|| -> jni::errors::Result<()> {
        let classes = jvm::classes().ok_or(jni::errors::Error::NullPtr("the toolmesh classes are not initialized"))?;
        let kind = env.new_string(error.kind().name())?;
        let message = env.new_string(error.message())?;
        let code = i32::try_from(error.code()).unwrap_or(i32::MAX);
        let exception = env.new_object(
            &classes.exception,
            "(ILjava/lang/String;Ljava/lang/String;)V",
            &[JValue::Int(code), JValue::Object(&kind), JValue::Object(&message)],
        )?;
        env.throw(JThrowable::from(exception))
    })();
    if thrown.is_err() {
        let _ = env.exception_clear();
        let _ = env.throw_new("java/lang/IllegalStateException", error.to_string());
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message")
}
