//! Result codes: 0 for success, the core's stable error codes (1000 and above, the same numbers
//! every binding reports), and the few codes of the C ABI itself (100 to 199).

use std::ffi::{c_char, CStr};

/// What a fallible toolmesh function returns: `TOOLMESH_OK` (0) on success, otherwise an error
/// code. Codes from 1000 up are the core's error kinds, identical in Python, Node, Java and C
/// (grouped by thousands: 1xxx configuration, 2xxx TLS, 3xxx discovery, 4xxx transport,
/// 5xxx remote tool, 6xxx host handler, 7xxx authorization, 9xxx internal). Codes from 100
/// to 199 belong to the C ABI alone (a NULL argument, a string that is not UTF-8, ...).
pub type toolmesh_result = i32;

/// Success.
pub const TOOLMESH_OK: toolmesh_result = 0;

// The C ABI's own codes (100-199).
/// A required pointer argument was NULL.
pub const TOOLMESH_NULL_ARGUMENT: toolmesh_result = 101;
/// A string argument is not valid UTF-8.
pub const TOOLMESH_INVALID_UTF8: toolmesh_result = 102;
/// A JSON string argument does not parse.
pub const TOOLMESH_INVALID_JSON: toolmesh_result = 103;
/// A blocking function was called on a toolmesh runtime thread, where it could deadlock.
pub const TOOLMESH_WRONG_THREAD: toolmesh_result = 104;
/// toolmesh panicked inside the call; this is a bug in toolmesh, please report it.
pub const TOOLMESH_PANIC: toolmesh_result = 105;

// The core's error kinds: the same codes and names in every language.
/// A configuration value is missing or malformed.
pub const TOOLMESH_INVALID_CONFIG: toolmesh_result = 1001;
/// A certificate, key or CA file is missing, unreadable or not PEM.
pub const TOOLMESH_CERTIFICATE_FILE: toolmesh_result = 1002;
/// The private key does not belong to the certificate.
pub const TOOLMESH_KEY_MISMATCH: toolmesh_result = 1003;
/// The registry URL is not an https:// URL.
pub const TOOLMESH_REGISTRY_URL_NOT_HTTPS: toolmesh_result = 1004;
/// The listen address is already in use or cannot be bound.
pub const TOOLMESH_ADDRESS_IN_USE: toolmesh_result = 1005;
/// Our own certificate does not chain to the mesh CA.
pub const TOOLMESH_CERTIFICATE_UNTRUSTED: toolmesh_result = 2001;
/// Our own certificate (or the peer's) has expired or is not yet valid.
pub const TOOLMESH_CERTIFICATE_EXPIRED: toolmesh_result = 2002;
/// The peer's certificate was not signed by a trusted CA.
pub const TOOLMESH_PEER_CERTIFICATE_UNTRUSTED: toolmesh_result = 2003;
/// The peer's certificate does not name the host that was dialled.
pub const TOOLMESH_PEER_HOSTNAME_MISMATCH: toolmesh_result = 2004;
/// The peer refused our client certificate (or we presented none).
pub const TOOLMESH_PEER_REJECTED_CERTIFICATE: toolmesh_result = 2005;
/// Any other TLS handshake failure.
pub const TOOLMESH_TLS_HANDSHAKE: toolmesh_result = 2006;
/// The peer's certificate is valid but its identity is not among the allowed ones.
pub const TOOLMESH_PEER_IDENTITY_NOT_ALLOWED: toolmesh_result = 2007;
/// No healthy provider matches the dependency.
pub const TOOLMESH_DEPENDENCY_UNRESOLVED: toolmesh_result = 3001;
/// The registry cannot be reached or answered with an error.
pub const TOOLMESH_REGISTRY_UNAVAILABLE: toolmesh_result = 3002;
/// The named agent is not registered.
pub const TOOLMESH_UNKNOWN_AGENT: toolmesh_result = 3003;
/// The dependency is not declared by the tool.
pub const TOOLMESH_UNKNOWN_DEPENDENCY: toolmesh_result = 3004;
/// The connection to the peer could not be opened.
pub const TOOLMESH_CONNECT_FAILED: toolmesh_result = 4001;
/// The call did not complete before its deadline.
pub const TOOLMESH_TIMEOUT: toolmesh_result = 4002;
/// The peer answered with something that is not valid MCP.
pub const TOOLMESH_PROTOCOL: toolmesh_result = 4003;
/// The connection broke after the request was sent.
pub const TOOLMESH_CONNECTION_LOST: toolmesh_result = 4004;
/// The agent is shutting down.
pub const TOOLMESH_SHUTDOWN: toolmesh_result = 4005;
/// The call was abandoned because the request it was made for was cancelled.
pub const TOOLMESH_CANCELLED: toolmesh_result = 4006;
/// The remote tool ran and reported an error.
pub const TOOLMESH_TOOL_FAILED: toolmesh_result = 5001;
/// The remote agent has no tool by that name.
pub const TOOLMESH_UNKNOWN_TOOL: toolmesh_result = 5002;
/// The remote agent rejected the arguments.
pub const TOOLMESH_INVALID_ARGUMENTS: toolmesh_result = 5003;
/// The remote agent answered with a JSON-RPC error.
pub const TOOLMESH_REMOTE_ERROR: toolmesh_result = 5004;
/// The tool reported an application error: its own code, message and data.
pub const TOOLMESH_TOOL_ERROR: toolmesh_result = 5005;
/// The remote tool needs input from the MCP client: let the error propagate (answer the
/// invocation with it, `toolmesh_invocation_fail_with_error`) and toolmesh asks the client, then
/// runs the call again with the answers.
pub const TOOLMESH_INPUT_REQUIRED: toolmesh_result = 5006;
/// The local host handler raised or rejected.
pub const TOOLMESH_HANDLER_FAILED: toolmesh_result = 6001;
/// The local host handler returned a value that is not JSON.
pub const TOOLMESH_HANDLER_RESULT: toolmesh_result = 6002;
/// The host dropped the completion without answering.
pub const TOOLMESH_HANDLER_DROPPED: toolmesh_result = 6003;
/// The callee's policy does not allow this caller (or origin) to call the tool.
pub const TOOLMESH_CALL_DENIED: toolmesh_result = 7001;
/// A rate or concurrency limit of the callee's policy was reached; retry later.
pub const TOOLMESH_RATE_LIMITED: toolmesh_result = 7002;
/// The origin of a chain of calls is forged, expired or wider than its delegation.
pub const TOOLMESH_ORIGIN_REJECTED: toolmesh_result = 7003;
/// The registry refused the registration (name, capability or cap); the message says which.
pub const TOOLMESH_REGISTRATION_REFUSED: toolmesh_result = 7004;
/// A bug in toolmesh; please report it.
pub const TOOLMESH_INTERNAL: toolmesh_result = 9001;

/// Every code toolmesh defines, its name and its message; the tests check them against the
/// core's error kinds (the messages against the kinds' documentation in core/src/error.rs) and
/// against the header.
const CODES: &[(toolmesh_result, &CStr, &CStr)] = &[
    (TOOLMESH_OK, c"OK", c"Success."),
    (TOOLMESH_NULL_ARGUMENT, c"NULL_ARGUMENT", c"A required pointer argument was NULL."),
    (TOOLMESH_INVALID_UTF8, c"INVALID_UTF8", c"A string argument is not valid UTF-8."),
    (TOOLMESH_INVALID_JSON, c"INVALID_JSON", c"A JSON string argument does not parse."),
    (
        TOOLMESH_WRONG_THREAD,
        c"WRONG_THREAD",
        c"A blocking function was called on a toolmesh runtime thread, where it could deadlock.",
    ),
    (TOOLMESH_PANIC, c"PANIC", c"toolmesh panicked inside the call; this is a bug in toolmesh, please report it."),
    (TOOLMESH_INVALID_CONFIG, c"INVALID_CONFIG", c"A configuration value is missing or malformed."),
    (TOOLMESH_CERTIFICATE_FILE, c"CERTIFICATE_FILE", c"A certificate, key or CA file is missing, unreadable or not PEM."),
    (TOOLMESH_KEY_MISMATCH, c"KEY_MISMATCH", c"The private key does not belong to the certificate."),
    (TOOLMESH_REGISTRY_URL_NOT_HTTPS, c"REGISTRY_URL_NOT_HTTPS", c"The registry URL is not an https:// URL."),
    (TOOLMESH_ADDRESS_IN_USE, c"ADDRESS_IN_USE", c"The listen address is already in use or cannot be bound."),
    (TOOLMESH_CERTIFICATE_UNTRUSTED, c"CERTIFICATE_UNTRUSTED", c"Our own certificate does not chain to the mesh CA."),
    (
        TOOLMESH_CERTIFICATE_EXPIRED,
        c"CERTIFICATE_EXPIRED",
        c"Our own certificate (or the peer's) has expired or is not yet valid.",
    ),
    (
        TOOLMESH_PEER_CERTIFICATE_UNTRUSTED,
        c"PEER_CERTIFICATE_UNTRUSTED",
        c"The peer's certificate was not signed by a trusted CA.",
    ),
    (
        TOOLMESH_PEER_HOSTNAME_MISMATCH,
        c"PEER_HOSTNAME_MISMATCH",
        c"The peer's certificate does not name the host that was dialled.",
    ),
    (
        TOOLMESH_PEER_REJECTED_CERTIFICATE,
        c"PEER_REJECTED_CERTIFICATE",
        c"The peer refused our client certificate (or we presented none).",
    ),
    (TOOLMESH_TLS_HANDSHAKE, c"TLS_HANDSHAKE", c"Any other TLS handshake failure."),
    (
        TOOLMESH_PEER_IDENTITY_NOT_ALLOWED,
        c"PEER_IDENTITY_NOT_ALLOWED",
        c"The peer's certificate is valid but its identity is not among the allowed ones.",
    ),
    (TOOLMESH_DEPENDENCY_UNRESOLVED, c"DEPENDENCY_UNRESOLVED", c"No healthy provider matches the dependency."),
    (TOOLMESH_REGISTRY_UNAVAILABLE, c"REGISTRY_UNAVAILABLE", c"The registry cannot be reached or answered with an error."),
    (TOOLMESH_UNKNOWN_AGENT, c"UNKNOWN_AGENT", c"The named agent is not registered."),
    (TOOLMESH_UNKNOWN_DEPENDENCY, c"UNKNOWN_DEPENDENCY", c"The dependency is not declared by the tool."),
    (TOOLMESH_CONNECT_FAILED, c"CONNECT_FAILED", c"The connection to the peer could not be opened."),
    (TOOLMESH_TIMEOUT, c"TIMEOUT", c"The call did not complete before its deadline."),
    (TOOLMESH_PROTOCOL, c"PROTOCOL", c"The peer answered with something that is not valid MCP."),
    (TOOLMESH_CONNECTION_LOST, c"CONNECTION_LOST", c"The connection broke after the request was sent."),
    (TOOLMESH_SHUTDOWN, c"SHUTDOWN", c"The agent is shutting down."),
    (TOOLMESH_CANCELLED, c"CANCELLED", c"The call was abandoned because the request it was made for was cancelled."),
    (TOOLMESH_TOOL_FAILED, c"TOOL_FAILED", c"The remote tool ran and reported an error."),
    (TOOLMESH_UNKNOWN_TOOL, c"UNKNOWN_TOOL", c"The remote agent has no tool by that name."),
    (TOOLMESH_INVALID_ARGUMENTS, c"INVALID_ARGUMENTS", c"The remote agent rejected the arguments."),
    (TOOLMESH_REMOTE_ERROR, c"REMOTE_ERROR", c"The remote agent answered with a JSON-RPC error."),
    (TOOLMESH_TOOL_ERROR, c"TOOL_ERROR", c"The tool reported an application error: its own code, message and data."),
    (
        TOOLMESH_INPUT_REQUIRED,
        c"INPUT_REQUIRED",
        c"The remote tool needs input from the MCP client: let this error propagate and toolmesh asks it.",
    ),
    (TOOLMESH_HANDLER_FAILED, c"HANDLER_FAILED", c"The local host handler raised or rejected."),
    (TOOLMESH_HANDLER_RESULT, c"HANDLER_RESULT", c"The local host handler returned a value that is not JSON."),
    (TOOLMESH_HANDLER_DROPPED, c"HANDLER_DROPPED", c"The host dropped the completion without answering."),
    (TOOLMESH_CALL_DENIED, c"CALL_DENIED", c"The callee's policy does not allow this caller (or origin) to call the tool."),
    (TOOLMESH_RATE_LIMITED, c"RATE_LIMITED", c"A rate or concurrency limit of the callee's policy was reached; retry later."),
    (
        TOOLMESH_ORIGIN_REJECTED,
        c"ORIGIN_REJECTED",
        c"The origin of a chain of calls is forged, expired or wider than its delegation.",
    ),
    (
        TOOLMESH_REGISTRATION_REFUSED,
        c"REGISTRATION_REFUSED",
        c"The registry refused the registration (name, capability or cap); the message says which.",
    ),
    (TOOLMESH_INTERNAL, c"INTERNAL", c"A bug in toolmesh; please report it."),
];

/// The stable symbolic name of a result code, e.g. "UNKNOWN_TOOL" for 5002 and "OK" for 0;
/// "UNKNOWN" for a code toolmesh does not define. The string is static: never free it.
#[no_mangle]
pub extern "C" fn toolmesh_result_name(code: toolmesh_result) -> *const c_char {
    crate::boundary::catch_panic(c"UNKNOWN".as_ptr(), || {
        CODES.iter().find(|(c, _, _)| *c == code).map_or(c"UNKNOWN", |(_, name, _)| name).as_ptr()
    })
}

/// What a result code means, in one English sentence, e.g. "The remote agent has no tool by
/// that name." for 5002 (`TOOLMESH_UNKNOWN_TOOL`): worded as the core documents its error
/// kinds. "unknown result code" for a code toolmesh does not define. The string is static:
/// never free it. For what went wrong in one failure, use the `toolmesh_error`'s own message,
/// which names the problem and the fix.
#[no_mangle]
pub extern "C" fn toolmesh_result_message(code: toolmesh_result) -> *const c_char {
    crate::boundary::catch_panic(c"unknown result code".as_ptr(), || {
        CODES.iter().find(|(c, _, _)| *c == code).map_or(c"unknown result code", |(_, _, message)| message).as_ptr()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use toolmesh_core::ErrorKind;

    fn name_of(code: toolmesh_result) -> &'static str {
        // SAFETY: toolmesh_result_name returns a static NUL-terminated string.
        unsafe { CStr::from_ptr(toolmesh_result_name(code)) }.to_str().unwrap()
    }

    #[test]
    fn every_core_error_kind_has_its_code_and_name_here() {
        for kind in ErrorKind::ALL {
            let code = kind.code() as toolmesh_result;
            assert_eq!(name_of(code), kind.name(), "code {code}");
        }
        let ffi_only = CODES.iter().filter(|(code, _, _)| *code < 1000).count();
        assert_eq!(CODES.len(), ErrorKind::ALL.len() + ffi_only, "a code here that core does not define");
    }

    #[test]
    fn the_c_abi_codes_are_below_the_core_range_and_unknown_codes_have_a_name() {
        assert!(CODES
            .iter()
            .filter(|(code, _, _)| *code < 1000)
            .all(|(code, _, _)| u32::try_from(*code).ok().and_then(ErrorKind::from_code).is_none()));
        assert_eq!(name_of(TOOLMESH_OK), "OK");
        assert_eq!(name_of(TOOLMESH_PANIC), "PANIC");
        assert_eq!(name_of(-1), "UNKNOWN");
        assert_eq!(name_of(4999), "UNKNOWN");
    }

    fn message_of(code: toolmesh_result) -> &'static str {
        // SAFETY: toolmesh_result_message returns a static NUL-terminated string.
        unsafe { CStr::from_ptr(toolmesh_result_message(code)) }.to_str().unwrap()
    }

    /// The messages are the core's: each error kind's documentation in core/src/error.rs (what
    /// the kind means, as the other languages' docs describe it), word for word.
    #[test]
    fn every_code_has_a_message_and_the_core_kinds_have_the_cores_wording() {
        let source = include_str!("../../core/src/error.rs");
        let body = &source[source.find("pub enum ErrorKind {").unwrap()..];
        let body = &body[..body.find("\n}").unwrap()];
        let mut documented = std::collections::HashMap::new();
        let mut doc = None;
        for line in body.lines().map(str::trim) {
            if let Some(text) = line.strip_prefix("/// ") {
                doc = Some(text);
            } else if let Some(variant) = line.strip_suffix(',') {
                documented.insert(variant, doc.take().expect("every kind is documented"));
            }
        }
        for kind in ErrorKind::ALL {
            let variant = format!("{kind:?}");
            assert_eq!(message_of(kind.code() as toolmesh_result), documented[variant.as_str()], "{variant}");
        }
        for (code, _, message) in CODES {
            assert_eq!(message_of(*code), message.to_str().unwrap());
            assert!(message_of(*code).ends_with('.'), "{code}");
        }
        assert_eq!(message_of(TOOLMESH_OK), "Success.");
        assert_eq!(message_of(TOOLMESH_NULL_ARGUMENT), "A required pointer argument was NULL.");
        assert_eq!(message_of(-1), "unknown result code");
        assert_eq!(message_of(4999), "unknown result code");
    }
}
