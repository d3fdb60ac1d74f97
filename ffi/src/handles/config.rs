//! `toolmesh_config`: an agent's configuration, parsed by core exactly as for every language.

use crate::boundary::{catch_panic, guarded, handle_arg, out_arg, report, str_arg, write_out};
use crate::error::{toolmesh_error, Failure};
use crate::result::toolmesh_result;
use toolmesh_core::config::AgentConfig;

/// An agent's configuration: the `TOOLMESH_*` environment read when it is created, then the
/// options set on it.
///
/// Ownership: created by `toolmesh_config_new`, freed by the caller with `toolmesh_config_free`.
/// `toolmesh_agent_start` only borrows it, so one configuration can start several agents.
pub struct toolmesh_config {
    pub(crate) config: AgentConfig,
}

/// Creates the configuration of an agent named `name`: defaults, then the `TOOLMESH_*`
/// environment variables (e.g. `TOOLMESH_REGISTRY_URL`, `TOOLMESH_TLS_CERT`). On success
/// `*config_out` receives a new configuration.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string, borrowed for the call. `config_out` is NULL (an
/// error) or points to storage for one pointer, borrowed for the call, that receives on success a
/// new `toolmesh_config` owned by the caller, who frees it with `toolmesh_config_free`. `error_out`
/// is NULL or points to storage for one pointer (borrowed for the call) that receives, on failure
/// only, a new `toolmesh_error` owned by the caller, who frees it with `toolmesh_error_free`.
#[no_mangle]
pub unsafe extern "C" fn toolmesh_config_new(
    name: *const std::ffi::c_char,
    config_out: *mut *mut toolmesh_config,
    error_out: *mut *mut toolmesh_error,
) -> toolmesh_result {
    let outcome = guarded("toolmesh_config_new", || {
        out_arg(config_out, "config_out")?;
        // SAFETY: NULL or NUL-terminated, as the caller guarantees.
        let name = unsafe { str_arg(name, "name") }?;
        let config = AgentConfig::from_env(name)?;
        // SAFETY: checked by `out_arg`, writable as the caller guarantees.
        unsafe { write_out(config_out, toolmesh_config { config }) };
        Ok(())
    });
    // SAFETY: `error_out` is NULL or writable, as the caller guarantees.
    unsafe { report(outcome, error_out) }
}

/// Sets one option (borrowed strings). The keys are the environment variables' names without
/// `TOOLMESH_`, in lowercase: `registry_url`, `tls_cert`, `tls_key`, `tls_ca`, `host`,
/// `advertise_host`, `port`, `propagate_headers`, `heartbeat_interval_ms`, `call_timeout_ms`,
/// and `name`. An empty value resets an optional setting. On failure the configuration is
/// unchanged.
///
/// # Safety
/// `config` is NULL or a live configuration, borrowed for the call (it stays the caller's) and not
/// used by another thread during it; `key` and `value` are NULL or NUL-terminated strings, borrowed
/// for the call (the configuration keeps copies). `error_out` is NULL or points to storage for one
/// pointer (borrowed for the call) that receives, on failure only, a new `toolmesh_error` owned by
/// the caller, who frees it with `toolmesh_error_free`.
#[no_mangle]
pub unsafe extern "C" fn toolmesh_config_set(
    config: *mut toolmesh_config,
    key: *const std::ffi::c_char,
    value: *const std::ffi::c_char,
    error_out: *mut *mut toolmesh_error,
) -> toolmesh_result {
    let outcome = guarded("toolmesh_config_set", || {
        // SAFETY: NULL or live and not shared during the call, as the caller guarantees.
        let config = unsafe { config.as_mut() }.ok_or_else(|| Failure::null_argument("config"))?;
        // SAFETY: NULL or NUL-terminated, as the caller guarantees.
        let (key, value) = unsafe { (str_arg(key, "key")?, str_arg(value, "value")?) };
        let mut updated = config.config.clone();
        updated.set(key, value)?;
        config.config = updated;
        Ok(())
    });
    // SAFETY: `error_out` is NULL or writable, as the caller guarantees.
    unsafe { report(outcome, error_out) }
}

/// Frees a configuration. Freeing NULL does nothing.
///
/// # Safety
/// `config` is NULL or a configuration from `toolmesh_config_new`, not freed before; it is
/// owned by this call and must not be used afterwards.
#[no_mangle]
pub unsafe extern "C" fn toolmesh_config_free(config: *mut toolmesh_config) {
    catch_panic((), || {
        if !config.is_null() {
            // SAFETY: created by `Box::into_raw` in `toolmesh_config_new`, freed once.
            drop(unsafe { Box::from_raw(config) });
        }
    })
}

/// Borrows a configuration argument.
///
/// # Safety
/// `config` is NULL or a live configuration, borrowed for `'a`.
pub(crate) unsafe fn config_arg<'a>(config: *const toolmesh_config) -> Result<&'a AgentConfig, Failure> {
    // SAFETY: NULL or live, as the caller guarantees.
    Ok(&unsafe { handle_arg(config, "config") }?.config)
}
