//! Agents: started for a Java `AgentBuilder`, called through by `MeshProxy`, stopped by `close()`.

use crate::entry::{ensure_blocking_allowed, entry, Failure};
use crate::handles::HandleTable;
use crate::invocation::{self, JavaToolHandler};
use crate::jvm;
use crate::strings::{string, string_array};
use jni::objects::{JClass, JIntArray, JObject, JObjectArray, JString, JValue};
use jni::sys::{jboolean, jint, jlong, JNI_FALSE};
use jni::JNIEnv;
use serde_json::{json, Value};
use std::future::Future;
use std::sync::Arc;
use tokio::sync::SetOnce;
use toolmesh_core::agent::{parse_catalog, parse_tools, Agent};
use toolmesh_core::config::AgentConfig;
use toolmesh_core::context::RequestContext;
use toolmesh_core::mcp::ResultShape;
use toolmesh_core::report::{Notification, NotificationObserver};
use toolmesh_core::{runtime, Error, ErrorKind};

/// Started agents by handle. The slot exists before the agent does: a tool call can reach Java
/// while `Agent::start` is still returning, and a dependency call its handler makes waits for
/// the slot to be filled.
static AGENTS: HandleTable<Arc<SetOnce<Agent>>> = HandleTable::new();

#[no_mangle]
pub extern "system" fn Java_dev_toolmesh_Native_initialize<'local>(mut env: JNIEnv<'local>, class: JClass<'local>) {
    entry(&mut env, |env| Ok(jvm::initialize(env, &class)?))
}

/// Configures (`TOOLMESH_*` environment, then `options` as key, value, key, value...), checks the
/// tools and the resources and prompts (`catalog_json`, MCP's member names; see
/// `toolmesh_core::agent::parse_catalog`), and starts the agent; blocks until it serves.
/// `dispatcher` receives every tool call, resource read and prompt get that core hands the host.
#[no_mangle]
pub extern "system" fn Java_dev_toolmesh_Native_start<'local>(
    mut env: JNIEnv<'local>,
    _class: JClass<'local>,
    name: JString<'local>,
    options: JObjectArray<'local>,
    tools_json: JString<'local>,
    catalog_json: JString<'local>,
    dispatcher: JObject<'local>,
) -> jlong {
    entry(&mut env, |env| {
        ensure_blocking_allowed("AgentBuilder.start()")?;
        toolmesh_core::logging::init_from_env();
        let name = string(env, &name)?;
        let mut config = AgentConfig::from_env(&name)?;
        let options = string_array(env, &options)?;
        for pair in options.chunks(2) {
            let [key, value] = pair else {
                return Err(Error::new(ErrorKind::InvalidConfig, format!("option '{}' has no value", pair[0])).into());
            };
            config.set(key, value)?;
        }
        let tools = parse_tools(&string(env, &tools_json)?)?;
        let catalog = parse_catalog(&string(env, &catalog_json)?)?;
        let dispatcher = env.new_global_ref(dispatcher)?;
        let slot = Arc::new(SetOnce::new());
        let handle = AGENTS.insert(slot.clone());
        let handler = Arc::new(JavaToolHandler::new(dispatcher, handle));
        match run_blocking(Agent::start_with_catalog(config, tools, catalog, handler)) {
            Ok(agent) => {
                // The slot was made for this agent a moment ago; nothing else fills it.
                let _ = slot.set(agent);
                Ok(handle)
            }
            Err(error) => {
                AGENTS.remove(handle);
                Err(error.into())
            }
        }
    })
}

/// The dependency index of each `MeshProxy` parameter (names in order) of a tool whose
/// dependencies have `capabilities`; null when there are more parameters than dependencies.
/// Core's rule for every language (`toolmesh_core::agent::assign_proxy_parameters`).
#[no_mangle]
pub extern "system" fn Java_dev_toolmesh_Native_assignProxyParameters<'local>(
    mut env: JNIEnv<'local>,
    _class: JClass<'local>,
    parameters: JObjectArray<'local>,
    capabilities: JObjectArray<'local>,
) -> JIntArray<'local> {
    entry(&mut env, |env| {
        let (parameters, capabilities) = (string_array(env, &parameters)?, string_array(env, &capabilities)?);
        let Some(assigned) = toolmesh_core::agent::assign_proxy_parameters(&parameters, &capabilities) else {
            return Ok(JIntArray::default());
        };
        // Fewer than there are parameters of a Java method (at most 255): each fits a jint.
        let assigned: Vec<jint> = assigned.into_iter().map(|index| jint::try_from(index).unwrap_or(jint::MAX)).collect();
        let array = env.new_int_array(jint::try_from(assigned.len()).unwrap_or(jint::MAX))?;
        env.set_int_array_region(&array, 0, &assigned)?;
        Ok(array)
    })
}

/// `{"agent_id": ..., "endpoint": "https://host:port/mcp", "ready_line": ..., "port": ...}`
#[no_mangle]
pub extern "system" fn Java_dev_toolmesh_Native_describe<'local>(
    mut env: JNIEnv<'local>,
    _class: JClass<'local>,
    handle: jlong,
) -> JString<'local> {
    entry(&mut env, |env| {
        let agent = AGENTS.get(handle).and_then(|slot| slot.get().cloned()).ok_or_else(closed)?;
        let description = json!({
            "agent_id": agent.agent_id(),
            "endpoint": agent.endpoint(),
            "ready_line": agent.ready_line(),
            "port": agent.local_addr().port(),
        });
        Ok(env.new_string(description.to_string())?)
    })
}

/// Calls dependency `dependency` of local tool `tool` with the context `context` (0: none) and
/// the headers of the open `CallHeaders` scopes (`call_headers`: name, value, ..., outer scopes
/// first), which core merges in; the result reaches `Native.onCallDone(callId, ...)` on a core
/// thread.
#[no_mangle]
pub extern "system" fn Java_dev_toolmesh_Native_call<'local>(
    mut env: JNIEnv<'local>,
    _class: JClass<'local>,
    handle: jlong,
    tool: JString<'local>,
    dependency: jint,
    arguments_json: JString<'local>,
    context: jlong,
    call_headers: JObjectArray<'local>,
    whole: jboolean,
    observed: jboolean,
    call_id: jlong,
) {
    entry(&mut env, |env| {
        let shape = if whole == JNI_FALSE { ResultShape::Value } else { ResultShape::Whole };
        let slot = AGENTS.get(handle).ok_or_else(closed)?;
        let tool = string(env, &tool)?;
        let arguments: Value = serde_json::from_str(&string(env, &arguments_json)?)
            .map_err(|e| Error::new(ErrorKind::InvalidArguments, format!("the call arguments are not JSON: {e}")))?;
        // A negative index names no dependency; core says so.
        let dependency = usize::try_from(dependency).unwrap_or(usize::MAX);
        let context = invocation::context(context);
        let call_headers: Vec<(String, String)> =
            string_array(env, &call_headers)?.chunks_exact(2).map(|pair| (pair[0].clone(), pair[1].clone())).collect();
        // The callee's reports go to `Native.onCallUpdate` (which only queues them, in order,
        // before the result), instead of being relayed to the handler's own caller.
        let observer = (observed != JNI_FALSE).then(|| NotificationObserver::new(move |update| deliver_call_update(call_id, &update)));
        spawn_call(call_id, async move {
            let mut context = RequestContext::for_call(context, &call_headers)?;
            if let Some(observer) = observer {
                let base = context.as_deref().cloned().unwrap_or_default();
                context = Some(Arc::new(RequestContext { on_notification: Some(observer), ..base }));
            }
            let agent = slot.wait().await.clone();
            agent.call_shaped(&tool, dependency, arguments, context, shape).await
        });
        Ok(())
    })
}

/// Deregisters, drains and stops serving; blocks until done. A second stop does nothing.
#[no_mangle]
pub extern "system" fn Java_dev_toolmesh_Native_stop<'local>(mut env: JNIEnv<'local>, _class: JClass<'local>, handle: jlong) {
    entry(&mut env, |_| {
        ensure_blocking_allowed("MeshAgent.close()")?;
        let Some(slot) = AGENTS.get(handle) else {
            return Ok(());
        };
        if let Some(agent) = slot.get().cloned() {
            run_blocking(async move {
                agent.shutdown().await;
                Ok(())
            })?;
        }
        // Dropped on core's runtime: the agent's last parts may need its reactor to close.
        let _inside_runtime = runtime::runtime().enter();
        AGENTS.remove(handle);
        Ok(())
    })
}

/// Runs `operation` on core's runtime and hands its outcome to `Native.onCallDone(callId, ...)`.
/// In a task of its own, so that even a panic in core answers the Java future (`INTERNAL`).
pub(crate) fn spawn_call(call_id: jlong, operation: impl Future<Output = Result<Value, Error>> + Send + 'static) {
    runtime::spawn_settled(operation, move |outcome| deliver_call_result(call_id, outcome));
}

fn deliver_call_update(call_id: jlong, update: &Notification) {
    jvm::with_java("deliver a callee's report", |env, classes| {
        let json = env.new_string(update.to_json().to_string())?;
        env.call_static_method(&classes.native, "onCallUpdate", "(JLjava/lang/String;)V", &[JValue::Long(call_id), JValue::Object(&json)])?;
        Ok(())
    });
}

fn deliver_call_result(call_id: jlong, outcome: Result<Value, Error>) {
    jvm::with_java("deliver a call result", |env, classes| {
        let (result, code, kind, message, app_code, data_json) = match outcome {
            Ok(value) => (env.new_string(value.to_string())?, 0, JObject::null(), JObject::null(), JObject::null(), JObject::null()),
            Err(error) => (
                JString::default(),
                i32::try_from(error.code()).unwrap_or(i32::MAX),
                env.new_string(error.kind().name())?.into(),
                env.new_string(error.message())?.into(),
                // A tool error's application code and data (JSON text); null for other errors.
                match error.app_code() {
                    Some(app_code) => env.new_string(app_code)?.into(),
                    None => JObject::null(),
                },
                match error.data() {
                    Some(data) => env.new_string(data.to_string())?.into(),
                    None => JObject::null(),
                },
            ),
        };
        env.call_static_method(
            &classes.native,
            "onCallDone",
            "(JLjava/lang/String;ILjava/lang/String;Ljava/lang/String;Ljava/lang/String;Ljava/lang/String;)V",
            &[
                JValue::Long(call_id),
                JValue::Object(&result),
                JValue::Int(code),
                JValue::Object(&kind),
                JValue::Object(&message),
                JValue::Object(&app_code),
                JValue::Object(&data_json),
            ],
        )?;
        Ok(())
    });
}

/// Runs `operation` on core's runtime and waits for it on this (Java) thread. In a task of its
/// own, so a panic in core comes back as an error.
fn run_blocking<T: Send + 'static>(operation: impl Future<Output = Result<T, Error>> + Send + 'static) -> Result<T, Error> {
    let runtime = runtime::runtime();
    runtime.block_on(runtime.spawn(operation)).unwrap_or_else(|panic| Err(task_failed(panic)))
}

fn task_failed(panic: tokio::task::JoinError) -> Error {
    Error::new(ErrorKind::Internal, format!("a toolmesh task failed: {panic}"))
}

fn closed() -> Failure {
    Error::new(ErrorKind::Shutdown, "the agent is closed; no new calls are made").into()
}
