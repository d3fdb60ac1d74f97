//! One call of a Java tool: handed to the agent's Java dispatcher, which only enqueues it onto the
//! agent's executor, and answered later through a completion handle.

use crate::entry::entry;
use crate::handles::HandleTable;
use crate::jvm;
use crate::strings::{optional_string, string};
use jni::objects::{GlobalRef, JClass, JString, JValue};
use jni::sys::{jboolean, jdouble, jint, jlong, JNI_FALSE, JNI_TRUE};
use jni::JNIEnv;
use std::sync::Arc;
use toolmesh_core::context::RequestContext;
use toolmesh_core::host::{CatalogInvocation, Completion, HostError, ToolHandler, ToolInvocation};
use toolmesh_core::report::LogLevel;
use toolmesh_core::{Error, ErrorKind};

/// Unanswered invocations. Answering removes the entry, so a second answer finds nothing; so does
/// `releaseCompletion`, which Java's cleaner calls for a call whose handler vanished unanswered,
/// and core then reports `HANDLER_DROPPED` to the caller.
static COMPLETIONS: HandleTable<Completion> = HandleTable::new();

/// The request contexts Java's `RequestContext` objects stand for, until they are garbage
/// collected; `MeshProxy` hands them back to core with every dependency call.
static CONTEXTS: HandleTable<Arc<RequestContext>> = HandleTable::new();

/// Core's host handler for a Java agent.
pub(crate) struct JavaToolHandler {
    /// The agent's `dev.toolmesh.ToolDispatcher`.
    dispatcher: GlobalRef,
    /// The agent's handle, for the dependency calls its handlers make.
    agent: jlong,
}

impl JavaToolHandler {
    pub(crate) fn new(dispatcher: GlobalRef, agent: jlong) -> Self {
        JavaToolHandler { dispatcher, agent }
    }
}

impl ToolHandler for JavaToolHandler {
    /// On a tokio worker: one JNI call that enqueues the invocation, never the handler itself.
    fn invoke(&self, invocation: ToolInvocation, completion: Completion) {
        let ToolInvocation { tool, arguments, context } = invocation;
        let context_json = context.view_json().to_string();
        self.hand_over("hand a tool call to Java", context, completion, |env, dispatcher, agent, context, completion| {
            let tool = env.new_string(&tool)?;
            let arguments = env.new_string(arguments.to_string())?;
            let context_json = env.new_string(&context_json)?;
            env.call_method(
                dispatcher,
                "dispatch",
                "(JLjava/lang/String;Ljava/lang/String;Ljava/lang/String;JJ)V",
                &[
                    JValue::Long(agent),
                    JValue::Object(&tool),
                    JValue::Object(&arguments),
                    JValue::Object(&context_json),
                    JValue::Long(context),
                    JValue::Long(completion),
                ],
            )?;
            Ok(())
        });
    }

    /// A resource read or prompt get, handed over like a tool call: core's JSON request
    /// (`{"kind": "readResource", ...}` or `{"kind": "getPrompt", ...}`), enqueued, never run here.
    fn invoke_catalog(&self, invocation: CatalogInvocation, completion: Completion) {
        let CatalogInvocation { request, context } = invocation;
        let request_json = match serde_json::to_string(&request) {
            Ok(json) => json,
            Err(e) => return completion.err(format!("the request could not be encoded for the Java host: {e}")),
        };
        let context_json = context.view_json().to_string();
        self.hand_over("hand a resource read or prompt get to Java", context, completion, |env, dispatcher, agent, context, completion| {
            let request_json = env.new_string(&request_json)?;
            let context_json = env.new_string(&context_json)?;
            env.call_method(
                dispatcher,
                "dispatchCatalog",
                "(JLjava/lang/String;Ljava/lang/String;JJ)V",
                &[
                    JValue::Long(agent),
                    JValue::Object(&request_json),
                    JValue::Object(&context_json),
                    JValue::Long(context),
                    JValue::Long(completion),
                ],
            )?;
            Ok(())
        });
    }
}

impl JavaToolHandler {
    /// Registers the completion and the context under the ids Java answers by, and runs `call`
    /// (given the dispatcher, the agent, the context id and the completion id) to enqueue the work on the agent's Java dispatcher. When Java cannot be reached, both are
    /// dropped again: dropping the completion answers the caller HANDLER_DROPPED instead of
    /// leaving it waiting.
    fn hand_over(
        &self,
        what: &str,
        context: Arc<RequestContext>,
        completion: Completion,
        call: impl FnOnce(&mut JNIEnv, &GlobalRef, jlong, jlong, jlong) -> jni::errors::Result<()>,
    ) {
        let completion = COMPLETIONS.insert(completion);
        let context = CONTEXTS.insert(context);
        let delivered = jvm::with_java(what, |env, _| call(env, &self.dispatcher, self.agent, context, completion));
        if delivered.is_none() {
            CONTEXTS.remove(context);
            COMPLETIONS.remove(completion);
        }
    }
}

/// The context behind a `RequestContext` handle (0: none).
pub(crate) fn context(handle: jlong) -> Option<Arc<RequestContext>> {
    CONTEXTS.get(handle)
}

/// Answers the call behind the `completion` handle with `answer`; false (and `answer` unused)
/// when the call was answered already, so a second answer finds nothing.
fn answer(completion: jlong, answer: impl FnOnce(Completion)) -> jboolean {
    match COMPLETIONS.remove(completion) {
        Some(completion) => {
            answer(completion);
            JNI_TRUE
        }
        None => JNI_FALSE,
    }
}

/// Fails the call behind the `completion` handle with `error`; false when it was answered already.
fn fail_with(completion: jlong, error: HostError) -> jboolean {
    answer(completion, |completion| completion.complete(Err(error)))
}

/// The handler's JSON result. False when the call was answered already.
#[no_mangle]
pub extern "system" fn Java_dev_toolmesh_Native_complete<'local>(
    mut env: JNIEnv<'local>,
    _class: JClass<'local>,
    completion: jlong,
    result_json: JString<'local>,
) -> jboolean {
    entry(&mut env, |env| {
        let result = string(env, &result_json)?;
        Ok(answer(completion, |completion| match serde_json::from_str(&result) {
            Ok(value) => completion.ok(value),
            Err(e) => completion.not_json(e.to_string()),
        }))
    })
}

/// The handler's result in MCP's `CallToolResult` shape (a `ToolResult`), for tool `tool`: core
/// reads and checks it. One it refuses is the caller's `HANDLER_RESULT`, naming the item at fault.
/// False when the call was answered already.
#[no_mangle]
pub extern "system" fn Java_dev_toolmesh_Native_completeResult<'local>(
    mut env: JNIEnv<'local>,
    _class: JClass<'local>,
    completion: jlong,
    tool: JString<'local>,
    result_json: JString<'local>,
) -> jboolean {
    entry(&mut env, |env| {
        let tool = string(env, &tool)?;
        let result = string(env, &result_json)?;
        Ok(answer(completion, |completion| {
            // A refusal is the caller's HANDLER_RESULT; the handler has answered either way.
            let _ = completion.answer_document_text(&format!("tool '{tool}'"), &result);
        }))
    })
}

/// The handler's result is not JSON, for `reason` (Jackson's words): core words the caller's
/// HANDLER_RESULT error, the same in every language. False when the call was answered already.
#[no_mangle]
pub extern "system" fn Java_dev_toolmesh_Native_notJson<'local>(
    mut env: JNIEnv<'local>,
    _class: JClass<'local>,
    completion: jlong,
    reason: JString<'local>,
) -> jboolean {
    entry(&mut env, |env| {
        let reason = string(env, &reason)?;
        Ok(answer(completion, |completion| completion.not_json(reason)))
    })
}

/// Argument `argument` did not decode into `type_name`, the type the handler asked for; `reason`
/// in Jackson's words. Core words the caller's INVALID_ARGUMENTS, the same in every language.
/// False when the call was answered already.
#[no_mangle]
pub extern "system" fn Java_dev_toolmesh_Native_argumentNotDecoded<'local>(
    mut env: JNIEnv<'local>,
    _class: JClass<'local>,
    completion: jlong,
    argument: JString<'local>,
    type_name: JString<'local>,
    reason: JString<'local>,
) -> jboolean {
    entry(&mut env, |env| {
        let argument = string(env, &argument)?;
        let type_name = string(env, &type_name)?;
        let reason = string(env, &reason)?;
        Ok(answer(completion, |completion| completion.argument_not_decoded(argument, type_name, reason)))
    })
}

/// The handler failed. With a mesh error's `code` (a dependency call it made failed, or its
/// result is not JSON) the caller gets that code and message unchanged; with 0, `HANDLER_FAILED`
/// (`TOOL_FAILED` across the network) with this message.
#[no_mangle]
pub extern "system" fn Java_dev_toolmesh_Native_fail<'local>(
    mut env: JNIEnv<'local>,
    _class: JClass<'local>,
    completion: jlong,
    code: jint,
    message: JString<'local>,
) -> jboolean {
    entry(&mut env, |env| {
        let message = string(env, &message)?;
        Ok(fail_with(completion, HostError::with_code(code.into(), message)))
    })
}

/// The handler threw a `ToolException` (its own, or one a dependency call threw): the caller gets
/// `TOOL_ERROR` with this application code, message and data (JSON text, or null). False when
/// the call was answered already.
#[no_mangle]
pub extern "system" fn Java_dev_toolmesh_Native_failToolError<'local>(
    mut env: JNIEnv<'local>,
    _class: JClass<'local>,
    completion: jlong,
    app_code: JString<'local>,
    message: JString<'local>,
    data_json: JString<'local>,
) -> jboolean {
    entry(&mut env, |env| {
        let app_code = string(env, &app_code)?;
        let message = string(env, &message)?;
        let data_json = optional_string(env, &data_json)?;
        let error = match data_json.map(|json| serde_json::from_str(&json)).transpose() {
            Ok(data) => HostError::tool_error(&app_code, message, data),
            Err(e) => HostError::tool_error_data_not_json(&app_code, &e.to_string()),
        };
        Ok(fail_with(completion, error))
    })
}

/// The data of the handler's `ToolException` cannot be encoded as JSON, for `reason` (Jackson's
/// words): core words the caller's error, the same in every language. False when the call was
/// answered already.
#[no_mangle]
pub extern "system" fn Java_dev_toolmesh_Native_failToolErrorDataNotJson<'local>(
    mut env: JNIEnv<'local>,
    _class: JClass<'local>,
    completion: jlong,
    app_code: JString<'local>,
    reason: JString<'local>,
) -> jboolean {
    entry(&mut env, |env| {
        let app_code = string(env, &app_code)?;
        let reason = string(env, &reason)?;
        Ok(fail_with(completion, HostError::tool_error_data_not_json(&app_code, &reason)))
    })
}

/// Drops an unanswered completion (core answers `HANDLER_DROPPED`); nothing if it was answered.
#[no_mangle]
pub extern "system" fn Java_dev_toolmesh_Native_releaseCompletion<'local>(
    mut env: JNIEnv<'local>,
    _class: JClass<'local>,
    completion: jlong,
) {
    entry(&mut env, |_| {
        COMPLETIONS.remove(completion);
        Ok(())
    })
}

#[no_mangle]
pub extern "system" fn Java_dev_toolmesh_Native_releaseContext<'local>(mut env: JNIEnv<'local>, _class: JClass<'local>, context: jlong) {
    entry(&mut env, |_| {
        CONTEXTS.remove(context);
        Ok(())
    })
}

/// Reports progress for the request behind `context` (`total` NaN: none, `message` null: none);
/// whether core sent it. A released context sends nothing.
#[no_mangle]
pub extern "system" fn Java_dev_toolmesh_Native_progress<'local>(
    mut env: JNIEnv<'local>,
    _class: JClass<'local>,
    context: jlong,
    progress: jdouble,
    total: jdouble,
    message: JString<'local>,
) -> jboolean {
    entry(&mut env, |env| {
        let message = optional_string(env, &message)?;
        let sent = CONTEXTS.get(context).is_some_and(|c| c.progress(progress, Some(total).filter(|t| !t.is_nan()), message.as_deref()));
        Ok(jboolean::from(sent))
    })
}

/// Sends a log message (`data_json`, any JSON) at `level` for the request behind `context`;
/// whether core sent it. A level MCP does not name, or data that is not JSON, is
/// `INVALID_ARGUMENTS`.
#[no_mangle]
pub extern "system" fn Java_dev_toolmesh_Native_log<'local>(
    mut env: JNIEnv<'local>,
    _class: JClass<'local>,
    context: jlong,
    level: JString<'local>,
    logger: JString<'local>,
    data_json: JString<'local>,
) -> jboolean {
    entry(&mut env, |env| {
        let (level, logger, data) = (string(env, &level)?, optional_string(env, &logger)?, string(env, &data_json)?);
        let level = LogLevel::named(&level)?;
        let data: serde_json::Value = serde_json::from_str(&data)
            .map_err(|e| Error::new(ErrorKind::InvalidArguments, format!("the log message is not JSON: {e}")))?;
        Ok(jboolean::from(CONTEXTS.get(context).is_some_and(|c| c.log(level, &data, logger.as_deref()))))
    })
}

/// Whether the request behind `context` was cancelled (its caller went away).
#[no_mangle]
pub extern "system" fn Java_dev_toolmesh_Native_cancelled<'local>(
    mut env: JNIEnv<'local>,
    _class: JClass<'local>,
    context: jlong,
) -> jboolean {
    entry(&mut env, |_| Ok(jboolean::from(CONTEXTS.get(context).is_some_and(|c| c.is_cancelled()))))
}

/// Watches the request behind `context` for cancellation: once it is cancelled (its caller went
/// away or its deadline passed), `Native.onCancelled(watchId)` runs on a core thread, which only
/// hands the watch's action to an executor. False when the context is released (answered).
#[no_mangle]
pub extern "system" fn Java_dev_toolmesh_Native_onCancel<'local>(
    mut env: JNIEnv<'local>,
    _class: JClass<'local>,
    context: jlong,
    watch_id: jlong,
) -> jboolean {
    entry(&mut env, |_| {
        let Some(context) = CONTEXTS.get(context) else { return Ok(JNI_FALSE) };
        context.on_cancel(move || {
            jvm::with_java("deliver a cancellation", |env, classes| {
                env.call_static_method(&classes.native, "onCancelled", "(J)V", &[JValue::Long(watch_id)])?;
                Ok(())
            });
        });
        Ok(JNI_TRUE)
    })
}
