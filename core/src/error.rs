//! The one error type of the mesh. Every binding maps [`ErrorKind`] to its own idiom, and the
//! numeric codes are stable: they are part of the public contract in every language.

use serde_json::Value;
use std::fmt;

/// Stable error kinds, grouped by subsystem in blocks of a thousand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    // 1xxx configuration
    /// A configuration value is missing or malformed.
    InvalidConfig,
    /// A certificate, key or CA file is missing, unreadable or not PEM.
    CertificateFile,
    /// The private key does not belong to the certificate.
    KeyMismatch,
    /// The registry URL is not an https:// URL.
    RegistryUrlNotHttps,
    /// The listen address is already in use or cannot be bound.
    AddressInUse,

    // 2xxx TLS and identity
    /// Our own certificate does not chain to the mesh CA.
    CertificateUntrusted,
    /// Our own certificate (or the peer's) has expired or is not yet valid.
    CertificateExpired,
    /// The peer's certificate was not signed by a trusted CA.
    PeerCertificateUntrusted,
    /// The peer's certificate does not name the host that was dialled.
    PeerHostnameMismatch,
    /// The peer refused our client certificate (or we presented none).
    PeerRejectedCertificate,
    /// Any other TLS handshake failure.
    TlsHandshake,
    /// The peer's certificate is valid but its identity is not among the allowed ones.
    PeerIdentityNotAllowed,

    // 3xxx discovery
    /// No healthy provider matches the dependency.
    DependencyUnresolved,
    /// The registry cannot be reached or answered with an error.
    RegistryUnavailable,
    /// The named agent is not registered.
    UnknownAgent,
    /// The dependency is not declared by the tool.
    UnknownDependency,

    // 4xxx transport
    /// The connection to the peer could not be opened.
    ConnectFailed,
    /// The call did not complete before its deadline.
    Timeout,
    /// The peer answered with something that is not valid MCP.
    Protocol,
    /// The connection broke after the request was sent.
    ConnectionLost,
    /// The agent is shutting down.
    Shutdown,
    /// The call was abandoned because the request it was made for was cancelled.
    Cancelled,

    // 5xxx remote tool
    /// The remote tool ran and reported an error.
    ToolFailed,
    /// The remote agent has no tool by that name.
    UnknownTool,
    /// The remote agent rejected the arguments.
    InvalidArguments,
    /// The remote agent answered with a JSON-RPC error.
    RemoteError,
    /// The tool reported an application error: its own code, message and data.
    ToolError,
    /// The remote tool needs input from the MCP client: let this error propagate and toolmesh asks it.
    InputRequired,

    // 6xxx host handler
    /// The local host handler raised or rejected.
    HandlerFailed,
    /// The local host handler returned a value that is not JSON.
    HandlerResult,
    /// The host dropped the completion without answering.
    HandlerDropped,

    // 7xxx authorization
    /// The callee's policy does not allow this caller (or origin) to call the tool.
    CallDenied,
    /// A rate or concurrency limit of the callee's policy was reached; retry later.
    RateLimited,
    /// The origin of a chain of calls is forged, expired or wider than its delegation.
    OriginRejected,
    /// The registry refused the registration (name, capability or cap); the message says which.
    RegistrationRefused,

    // 9xxx internal
    /// A bug in toolmesh; please report it.
    Internal,
}

impl ErrorKind {
    pub const ALL: &'static [ErrorKind] = &[
        ErrorKind::InvalidConfig,
        ErrorKind::CertificateFile,
        ErrorKind::KeyMismatch,
        ErrorKind::RegistryUrlNotHttps,
        ErrorKind::AddressInUse,
        ErrorKind::CertificateUntrusted,
        ErrorKind::CertificateExpired,
        ErrorKind::PeerCertificateUntrusted,
        ErrorKind::PeerHostnameMismatch,
        ErrorKind::PeerRejectedCertificate,
        ErrorKind::TlsHandshake,
        ErrorKind::PeerIdentityNotAllowed,
        ErrorKind::DependencyUnresolved,
        ErrorKind::RegistryUnavailable,
        ErrorKind::UnknownAgent,
        ErrorKind::UnknownDependency,
        ErrorKind::ConnectFailed,
        ErrorKind::Timeout,
        ErrorKind::Protocol,
        ErrorKind::ConnectionLost,
        ErrorKind::Shutdown,
        ErrorKind::Cancelled,
        ErrorKind::ToolFailed,
        ErrorKind::UnknownTool,
        ErrorKind::InvalidArguments,
        ErrorKind::RemoteError,
        ErrorKind::ToolError,
        ErrorKind::InputRequired,
        ErrorKind::HandlerFailed,
        ErrorKind::HandlerResult,
        ErrorKind::HandlerDropped,
        ErrorKind::CallDenied,
        ErrorKind::RateLimited,
        ErrorKind::OriginRejected,
        ErrorKind::RegistrationRefused,
        ErrorKind::Internal,
    ];

    /// The stable numeric code.
    pub const fn code(self) -> u32 {
        match self {
            ErrorKind::InvalidConfig => 1001,
            ErrorKind::CertificateFile => 1002,
            ErrorKind::KeyMismatch => 1003,
            ErrorKind::RegistryUrlNotHttps => 1004,
            ErrorKind::AddressInUse => 1005,
            ErrorKind::CertificateUntrusted => 2001,
            ErrorKind::CertificateExpired => 2002,
            ErrorKind::PeerCertificateUntrusted => 2003,
            ErrorKind::PeerHostnameMismatch => 2004,
            ErrorKind::PeerRejectedCertificate => 2005,
            ErrorKind::TlsHandshake => 2006,
            ErrorKind::PeerIdentityNotAllowed => 2007,
            ErrorKind::DependencyUnresolved => 3001,
            ErrorKind::RegistryUnavailable => 3002,
            ErrorKind::UnknownAgent => 3003,
            ErrorKind::UnknownDependency => 3004,
            ErrorKind::ConnectFailed => 4001,
            ErrorKind::Timeout => 4002,
            ErrorKind::Protocol => 4003,
            ErrorKind::ConnectionLost => 4004,
            ErrorKind::Shutdown => 4005,
            ErrorKind::Cancelled => 4006,
            ErrorKind::ToolFailed => 5001,
            ErrorKind::UnknownTool => 5002,
            ErrorKind::InvalidArguments => 5003,
            ErrorKind::RemoteError => 5004,
            ErrorKind::ToolError => 5005,
            ErrorKind::InputRequired => 5006,
            ErrorKind::HandlerFailed => 6001,
            ErrorKind::HandlerResult => 6002,
            ErrorKind::HandlerDropped => 6003,
            ErrorKind::CallDenied => 7001,
            ErrorKind::RateLimited => 7002,
            ErrorKind::OriginRejected => 7003,
            ErrorKind::RegistrationRefused => 7004,
            ErrorKind::Internal => 9001,
        }
    }

    /// The stable symbolic name, e.g. `DEPENDENCY_UNRESOLVED`.
    pub const fn name(self) -> &'static str {
        match self {
            ErrorKind::InvalidConfig => "INVALID_CONFIG",
            ErrorKind::CertificateFile => "CERTIFICATE_FILE",
            ErrorKind::KeyMismatch => "KEY_MISMATCH",
            ErrorKind::RegistryUrlNotHttps => "REGISTRY_URL_NOT_HTTPS",
            ErrorKind::AddressInUse => "ADDRESS_IN_USE",
            ErrorKind::CertificateUntrusted => "CERTIFICATE_UNTRUSTED",
            ErrorKind::CertificateExpired => "CERTIFICATE_EXPIRED",
            ErrorKind::PeerCertificateUntrusted => "PEER_CERTIFICATE_UNTRUSTED",
            ErrorKind::PeerHostnameMismatch => "PEER_HOSTNAME_MISMATCH",
            ErrorKind::PeerRejectedCertificate => "PEER_REJECTED_CERTIFICATE",
            ErrorKind::TlsHandshake => "TLS_HANDSHAKE",
            ErrorKind::PeerIdentityNotAllowed => "PEER_IDENTITY_NOT_ALLOWED",
            ErrorKind::DependencyUnresolved => "DEPENDENCY_UNRESOLVED",
            ErrorKind::RegistryUnavailable => "REGISTRY_UNAVAILABLE",
            ErrorKind::UnknownAgent => "UNKNOWN_AGENT",
            ErrorKind::UnknownDependency => "UNKNOWN_DEPENDENCY",
            ErrorKind::ConnectFailed => "CONNECT_FAILED",
            ErrorKind::Timeout => "TIMEOUT",
            ErrorKind::Protocol => "PROTOCOL",
            ErrorKind::ConnectionLost => "CONNECTION_LOST",
            ErrorKind::Shutdown => "SHUTDOWN",
            ErrorKind::Cancelled => "CANCELLED",
            ErrorKind::ToolFailed => "TOOL_FAILED",
            ErrorKind::UnknownTool => "UNKNOWN_TOOL",
            ErrorKind::InvalidArguments => "INVALID_ARGUMENTS",
            ErrorKind::RemoteError => "REMOTE_ERROR",
            ErrorKind::ToolError => "TOOL_ERROR",
            ErrorKind::InputRequired => "INPUT_REQUIRED",
            ErrorKind::HandlerFailed => "HANDLER_FAILED",
            ErrorKind::HandlerResult => "HANDLER_RESULT",
            ErrorKind::HandlerDropped => "HANDLER_DROPPED",
            ErrorKind::CallDenied => "CALL_DENIED",
            ErrorKind::RateLimited => "RATE_LIMITED",
            ErrorKind::OriginRejected => "ORIGIN_REJECTED",
            ErrorKind::RegistrationRefused => "REGISTRATION_REFUSED",
            ErrorKind::Internal => "INTERNAL",
        }
    }

    pub fn from_code(code: u32) -> Option<ErrorKind> {
        Self::ALL.iter().copied().find(|k| k.code() == code)
    }

    /// The kind whose stable name is `name` (e.g. `DEPENDENCY_UNRESOLVED`).
    pub fn from_name(name: &str) -> Option<ErrorKind> {
        Self::ALL.iter().copied().find(|k| k.name() == name)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An error with its kind and a message that names the problem and, where there is one, the fix.
/// A `TOOL_ERROR` also carries the tool's application code and data (boxed: every other error
/// stays as small as a kind and a string).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    application: Option<Box<Application>>,
}

/// What a tool's own error adds to a `TOOL_ERROR`: the code its author chose and optional data.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Application {
    code: String,
    data: Option<Value>,
}

/// The longest application error code.
pub const APP_CODE_MAX_LEN: usize = 64;

/// Checks an application error code: 1 to 64 characters among `A-Z a-z 0-9 _ . : -`, so that it
/// is a stable identifier a caller can match on in any language (and print in a log line). The
/// error names the code and the rule.
pub fn check_app_code(code: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-');
    if !code.is_empty() && code.len() <= APP_CODE_MAX_LEN && code.chars().all(allowed) {
        return Ok(());
    }
    let shown: String = code.chars().take(APP_CODE_MAX_LEN + 8).collect();
    let shown = if shown.len() < code.len() { format!("{shown}...") } else { shown };
    Err(format!(
        "the error code {shown:?} is not valid: an application error code is 1 to {APP_CODE_MAX_LEN} characters among A-Z a-z 0-9 _ . : - (e.g. \"unknown_sku\")"
    ))
}

/// The exception class an error of `code` is raised as in the bindings whose errors form a
/// hierarchy by group (Python, Node; the classes have the same names in both): the class of the
/// code's group (`ConfigError` for 1xxx, `TlsError`, `DiscoveryError`, `TransportError`,
/// `RemoteToolError`, `HandlerError`, `AuthorizationError` for 7xxx), but `TimeoutError` for
/// `TIMEOUT` and `RateLimitedError` for `RATE_LIMITED` (subclasses of their group's), and
/// `ToolmeshError` for any other code.
pub fn error_class(code: u32) -> &'static str {
    if code == ErrorKind::Timeout.code() {
        return "TimeoutError";
    }
    if code == ErrorKind::RateLimited.code() {
        return "RateLimitedError";
    }
    match code / 1000 {
        1 => "ConfigError",
        2 => "TlsError",
        3 => "DiscoveryError",
        4 => "TransportError",
        5 => "RemoteToolError",
        6 => "HandlerError",
        7 => "AuthorizationError",
        _ => "ToolmeshError",
    }
}

/// How an agent program (`toolmesh.run`, Node's `agent.run()`) reports that it could not start,
/// the same in every language: the line it prints on stderr, `toolmesh: error [CODE NAME]:
/// message`, and its exit status: 2 for a configuration or TLS problem (codes below 3000), which
/// starting again will not fix, else 1.
pub fn start_failure(code: u32, name: &str, message: &str) -> (String, u8) {
    let status = if code < 3000 { 2 } else { 1 };
    (format!("toolmesh: error [{code} {name}]: {message}"), status)
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into(), application: None }
    }

    /// A tool's own error (`TOOL_ERROR`): its application code (checked by [`check_app_code`]),
    /// its message, word for word, and optional JSON data. The error is why the code is refused.
    pub fn tool_error(app_code: impl Into<String>, message: impl Into<String>, data: Option<Value>) -> Result<Self, String> {
        let code = app_code.into();
        check_app_code(&code)?;
        Ok(Error { kind: ErrorKind::ToolError, message: message.into(), application: Some(Box::new(Application { code, data })) })
    }

    /// Whether the peer could not be reached or went away (no connection, a connection lost,
    /// a peer shutting down): another provider may do, and what the peer held may be gone.
    pub fn is_unreachable(&self) -> bool {
        matches!(self.kind, ErrorKind::ConnectFailed | ErrorKind::ConnectionLost | ErrorKind::Shutdown)
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn code(&self) -> u32 {
        self.kind.code()
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// The application code of a `TOOL_ERROR`, e.g. `"unknown_sku"`; `None` for every other error.
    pub fn app_code(&self) -> Option<&str> {
        self.application.as_deref().map(|a| a.code.as_str())
    }

    /// The data of a `TOOL_ERROR`, when the tool gave any.
    pub fn data(&self) -> Option<&Value> {
        self.application.as_deref().and_then(|a| a.data.as_ref())
    }

    /// Prefixes the message with what was being done, keeping the kind (and a tool error's code
    /// and data).
    pub fn context(self, what: impl fmt::Display) -> Self {
        Error { message: format!("{what}: {}", self.message), ..self }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.app_code() {
            Some(app_code) => write!(f, "[{} {} {app_code}] {}", self.kind.code(), self.kind.name(), self.message),
            None => write!(f, "[{} {}] {}", self.kind.code(), self.kind.name(), self.message),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_and_names_are_unique_and_round_trip() {
        let codes: HashSet<_> = ErrorKind::ALL.iter().map(|k| k.code()).collect();
        let names: HashSet<_> = ErrorKind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(codes.len(), ErrorKind::ALL.len());
        assert_eq!(names.len(), ErrorKind::ALL.len());
        for kind in ErrorKind::ALL {
            assert_eq!(ErrorKind::from_code(kind.code()), Some(*kind));
        }
    }

    #[test]
    fn display_carries_code_name_and_message() {
        let e = Error::new(ErrorKind::Timeout, "no answer within 30000 ms");
        assert_eq!(e.to_string(), "[4002 TIMEOUT] no answer within 30000 ms");
        assert_eq!(e.context("calling add").message(), "calling add: no answer within 30000 ms");
        let e = Error::tool_error("unknown_sku", "no such sku: X", Some(serde_json::json!({"sku": "X"}))).unwrap();
        assert_eq!(e.to_string(), "[5005 TOOL_ERROR unknown_sku] no such sku: X");
        let e = e.context("ordering");
        assert_eq!(
            (e.app_code(), e.data(), e.message()),
            (Some("unknown_sku"), Some(&serde_json::json!({"sku": "X"})), "ordering: no such sku: X")
        );
    }

    #[test]
    fn each_code_is_raised_as_its_group_class_with_two_subclasses() {
        let classes: Vec<(u32, &str)> = [1004, 2002, 3001, 4001, 4002, 5001, 5005, 6001, 7001, 7002, 9001, 0]
            .into_iter()
            .map(|code| (code, error_class(code)))
            .collect();
        assert_eq!(
            classes,
            [
                (1004, "ConfigError"),
                (2002, "TlsError"),
                (3001, "DiscoveryError"),
                (4001, "TransportError"),
                (4002, "TimeoutError"),
                (5001, "RemoteToolError"),
                (5005, "RemoteToolError"),
                (6001, "HandlerError"),
                (7001, "AuthorizationError"),
                (7002, "RateLimitedError"),
                (9001, "ToolmeshError"),
                (0, "ToolmeshError"),
            ]
        );
    }

    #[test]
    fn a_start_failure_is_reported_with_exit_status_2_for_configuration_and_tls_else_1() {
        assert_eq!(start_failure(1002, "CERTIFICATE_FILE", "no file"), ("toolmesh: error [1002 CERTIFICATE_FILE]: no file".into(), 2));
        assert_eq!(start_failure(2999, "X", "m").1, 2);
        assert_eq!(start_failure(3000, "X", "m").1, 1);
        assert_eq!(start_failure(1005, "ADDRESS_IN_USE", "taken").1, 2);
        assert_eq!(start_failure(7004, "REGISTRATION_REFUSED", "no").1, 1);
    }

    #[test]
    fn application_codes_are_short_identifiers() {
        for good in ["unknown_sku", "a", "billing.card:declined-2", &"x".repeat(APP_CODE_MAX_LEN)] {
            assert_eq!(check_app_code(good), Ok(()), "{good}");
        }
        for bad in ["", "has space", "naïve", "semi;colon", &"x".repeat(APP_CODE_MAX_LEN + 1)] {
            let problem = check_app_code(bad).unwrap_err();
            assert!(problem.contains("1 to 64 characters among A-Z a-z 0-9 _ . : -"), "{problem}");
        }
        assert!(check_app_code(&"y".repeat(500)).unwrap_err().contains("...\" is not valid"));
        assert_eq!(Error::tool_error("bad code", "m", None).unwrap_err(), check_app_code("bad code").unwrap_err());
        // Every error but a tool error pays one pointer for the application part.
        assert_eq!(std::mem::size_of::<Error>(), std::mem::size_of::<(ErrorKind, String, usize)>());
    }
}
