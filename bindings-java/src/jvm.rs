//! The JVM and the Java classes the native side needs, captured once when `dev.toolmesh.Native`
//! loads the library; and the one way core's threads call into Java.

use jni::objects::{GlobalRef, JClass, JValue};
use jni::{JNIEnv, JavaVM};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Classes looked up once, from a Java thread: a thread attached from native code finds only
/// system classes, since it has no class loader of ours on its stack.
pub(crate) struct Classes {
    /// `dev.toolmesh.Native`: receives the results of asynchronous operations.
    pub native: GlobalRef,
    /// `dev.toolmesh.ToolmeshException`
    pub exception: GlobalRef,
}

static JVM: OnceLock<JavaVM> = OnceLock::new();
static CLASSES: OnceLock<Classes> = OnceLock::new();

/// Local references one upcall may create before its frame is popped; JNI grows the frame if
/// more are needed, this only avoids the growth for the common case.
const UPCALL_FRAME_CAPACITY: i32 = 16;

pub(crate) fn initialize(env: &mut JNIEnv, native_class: &JClass) -> jni::errors::Result<()> {
    if CLASSES.get().is_some() {
        return Ok(());
    }
    let vm = env.get_java_vm()?;
    let exception = env.find_class("dev/toolmesh/ToolmeshException")?;
    let classes = Classes { native: env.new_global_ref(native_class)?, exception: env.new_global_ref(exception)? };
    // Two threads racing here store equal values; the loser's are dropped.
    let _ = JVM.set(vm);
    let _ = CLASSES.set(classes);
    Ok(())
}

pub(crate) fn classes() -> Option<&'static Classes> {
    CLASSES.get()
}

pub(crate) fn vm() -> Option<&'static JavaVM> {
    JVM.get()
}

/// Attaches this (core) thread as a daemon, named `toolmesh-worker-N` in Java: JNI would call it
/// `Thread-N`, which says nothing in a stack dump and cannot be told apart from the application's.
fn attach<'vm>(vm: &'vm JavaVM) -> jni::errors::Result<JNIEnv<'vm>> {
    static ATTACHED: AtomicUsize = AtomicUsize::new(0);
    let mut env = vm.attach_current_thread_as_daemon()?;
    let name = format!("{}-{}", std::thread::current().name().unwrap_or("toolmesh-thread"), ATTACHED.fetch_add(1, Ordering::Relaxed) + 1);
    let named = env.with_local_frame(4, |env| -> jni::errors::Result<()> {
        let thread = env.call_static_method("java/lang/Thread", "currentThread", "()Ljava/lang/Thread;", &[])?.l()?;
        let name = env.new_string(&name)?;
        env.call_method(&thread, "setName", "(Ljava/lang/String;)V", &[JValue::Object(&name)])?;
        Ok(())
    });
    if named.is_err() {
        // Only the name is lost; the thread works.
        let _ = env.exception_clear();
    }
    Ok(env)
}

/// Runs `call` on this thread attached to the JVM, inside a local reference frame of its own.
///
/// Core's tokio workers are attached the first time they get here, as named daemon threads, and stay
/// attached until they exit: later calls cost one `GetEnv`, and the JVM never waits for them at
/// exit. The frame frees every local reference `call` makes, which matters because a worker
/// lives as long as the process. A Java exception thrown by `call` has no Java caller to go to:
/// it is printed and cleared. `None` when Java could not be reached; the caller then drops what
/// it was delivering, and core answers for it (e.g. `HANDLER_DROPPED`).
pub(crate) fn with_java<T>(what: &str, call: impl FnOnce(&mut JNIEnv, &Classes) -> jni::errors::Result<T>) -> Option<T> {
    let (vm, classes) = (JVM.get()?, CLASSES.get()?);
    let attached = match vm.get_env() {
        Ok(env) => Ok(env),
        Err(_) => attach(vm),
    };
    let mut env = match attached {
        Ok(env) => env,
        Err(error) => {
            eprintln!("toolmesh: cannot attach a thread to the JVM to {what}: {error}");
            return None;
        }
    };
    let outcome = env.with_local_frame(UPCALL_FRAME_CAPACITY, |env| call(env, classes));
    match outcome {
        Ok(value) => Some(value),
        Err(error) => {
            if env.exception_check().unwrap_or(false) {
                let _ = env.exception_describe();
                let _ = env.exception_clear();
            } else {
                eprintln!("toolmesh: cannot {what}: {error}");
            }
            None
        }
    }
}
