//! Hooks for the binding's own tests, not API: `dev.toolmesh.NativeTesting`, which declares them,
//! exists only in the test sources, so a program using the jar has no way to call them (a class
//! of that name would have to be written for it). They ship in the one library the tests and the
//! jar share; a panic, a core thread and the attached-thread count cannot be reached otherwise.

use crate::agent::spawn_call;
use crate::entry::{entry, Failure};
use crate::jvm;
use jni::objects::{JClass, JObject};
use jni::sys::jlong;
use jni::JNIEnv;
use toolmesh_core::runtime;

/// Panics inside `entry`, as a bug in a native method would: Java gets `INTERNAL`, the JVM lives.
#[no_mangle]
pub extern "system" fn Java_dev_toolmesh_NativeTesting_panicInEntry<'local>(mut env: JNIEnv<'local>, _class: JClass<'local>) {
    entry(&mut env, |_| -> Result<(), Failure> { panic!("a test panic in a native method") })
}

/// Panics in a core task whose outcome reaches `Native.onCallDone(callId, ...)` the way a
/// dependency call's does.
#[no_mangle]
pub extern "system" fn Java_dev_toolmesh_NativeTesting_panicInTask<'local>(
    mut env: JNIEnv<'local>,
    _class: JClass<'local>,
    call_id: jlong,
) {
    entry(&mut env, |_| {
        spawn_call(call_id, async { panic!("a test panic in a core task") });
        Ok(())
    })
}

/// Runs `task.run()` on one of core's runtime threads, the way an upcall does.
#[no_mangle]
pub extern "system" fn Java_dev_toolmesh_NativeTesting_runOnCoreThread<'local>(
    mut env: JNIEnv<'local>,
    _class: JClass<'local>,
    task: JObject<'local>,
) {
    entry(&mut env, |env| {
        let task = env.new_global_ref(task)?;
        runtime::runtime().spawn(async move {
            jvm::with_java("run a test task", |env, _| env.call_method(&task, "run", "()V", &[]).map(drop));
        });
        Ok(())
    })
}

/// How many threads the library has attached to the JVM and not detached (jni's own count).
#[no_mangle]
pub extern "system" fn Java_dev_toolmesh_NativeTesting_threadsAttached<'local>(mut env: JNIEnv<'local>, _class: JClass<'local>) -> jlong {
    entry(&mut env, |_| Ok(jvm::vm().map_or(0, |vm| jlong::try_from(vm.threads_attached()).unwrap_or(jlong::MAX))))
}
