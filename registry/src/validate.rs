//! Checks a request body against the rules `registry/openapi.yaml` states for it, before it
//! touches the state, so a bad request changes nothing and its answer names the member to fix by
//! its path (`tools[2].version`). The document and this module say the same thing:
//! `registry/tests/openapi_properties.rs` sends generated bodies, valid and broken, and checks
//! that the registry accepts exactly those the document's schema accepts.
//!
//! Unknown members are refused while the body is read (the request types deny them); this
//! module checks the values: no control characters in any string (a name is printed by
//! `toolmesh list` and logged), bounded lengths, semver tool versions, https endpoints.

use std::collections::{BTreeMap, HashSet};
use toolmesh_core::registry_api::{
    DependencySpec, RegisterRequest, ReportedCalls, ReportedDenial, TagSelector, MAX_REPORTED_CALLEES, MAX_REPORTED_DENIALS,
};
use toolmesh_core::resolve::Selector;

/// Agent ids travel in URL paths and logs; names, capabilities and tags in tables and logs.
pub const MAX_NAME_CHARS: usize = 256;
/// A URL long enough for any host and path an agent serves MCP at.
pub const MAX_ENDPOINT_CHARS: usize = 2048;
/// Tool descriptions are prose for people and models, often several lines.
pub const MAX_DESCRIPTION_CHARS: usize = 8192;
/// Tool versions and dependency version constraints.
pub const MAX_VERSION_CHARS: usize = 256;

/// A dependency an agent declared, parsed once at registration.
#[derive(Debug, Clone)]
pub struct Dependency {
    pub spec: DependencySpec,
    pub selector: Selector,
}

/// Validates `request` and returns its distinct dependencies (across all its tools), ordered by
/// [`DependencySpec::key`] so that equal registrations always yield equal topologies.
pub fn registration(request: &RegisterRequest) -> Result<Vec<Dependency>, String> {
    name("agent_id", &request.agent_id)?;
    name("name", &request.name)?;
    endpoint("endpoint", &request.endpoint)?;
    let mut tool_names = HashSet::new();
    let mut dependencies = BTreeMap::new();
    for (i, tool) in request.tools.iter().enumerate() {
        let at = |member: &str| format!("tools[{i}].{member}");
        name(&at("name"), &tool.name)?;
        if !tool_names.insert(tool.name.as_str()) {
            return Err(format!("{}: tool name '{}' is declared twice; tool names must be unique within an agent", at("name"), tool.name));
        }
        name(&at("capability"), &tool.capability)?;
        version(&at("version"), &tool.version)?;
        for (j, tag) in tool.tags.iter().enumerate() {
            name(&at(&format!("tags[{j}]")), tag)?;
        }
        description(&at("description"), &tool.description)?;
        if let Some(title) = &tool.annotations.title {
            description(&at("annotations.title"), title)?;
        }
        if !tool.input_schema.is_object() {
            return Err(format!(
                "{} must be a JSON object (the JSON Schema of the tool's arguments, like {{\"type\":\"object\"}}), not {}",
                at("input_schema"),
                kind(&tool.input_schema)
            ));
        }
        toolmesh_core::mcp::check_mirrored_parameters(&tool.input_schema)
            .and_then(|()| toolmesh_core::mcp::check_tool_contract(tool.output_schema.as_ref(), &tool.required_client_capabilities))
            .map_err(|why| format!("tools[{i}]: {why}"))?;
        for (j, spec) in tool.dependencies.iter().enumerate() {
            let selector = dependency(&at(&format!("dependencies[{j}]")), spec)?;
            dependencies.entry(spec.key()).or_insert_with(|| Dependency { spec: spec.clone(), selector });
        }
    }
    Ok(dependencies.into_values().collect())
}

/// Validates a dependency (declared by a tool at `path`, or the body of `POST /v1/resolve` at
/// path `""`) and parses it.
pub fn dependency(path: &str, spec: &DependencySpec) -> Result<Selector, String> {
    let at = |member: &str| if path.is_empty() { member.to_owned() } else { format!("{path}.{member}") };
    name(&at("capability"), &spec.capability)?;
    for (k, term) in spec.tags.iter().enumerate() {
        match term {
            TagSelector::One(tag) => name(&at(&format!("tags[{k}]")), tag)?,
            TagSelector::AnyOf(group) if group.is_empty() => {
                return Err(format!(
                    "{} is an empty list; a list of tags needs at least one (it requires one of them)",
                    at(&format!("tags[{k}]"))
                ))
            }
            TagSelector::AnyOf(group) => {
                for (l, tag) in group.iter().enumerate() {
                    name(&at(&format!("tags[{k}][{l}]")), tag)?;
                }
            }
        }
    }
    if let Some(requirement) = &spec.version {
        text(&at("version"), requirement, MAX_VERSION_CHARS, false)?;
    }
    Selector::new(spec).map_err(|e| if path.is_empty() { e.message().to_owned() } else { format!("{path}: {}", e.message()) })
}

/// A name, id, capability or tag: 1 to [`MAX_NAME_CHARS`] characters, not all white space, no
/// control characters.
/// The refusals a heartbeat reports: at most [`MAX_REPORTED_DENIALS`], known kinds, names.
pub fn reported_denials(denials: &[ReportedDenial]) -> Result<(), String> {
    if denials.len() > MAX_REPORTED_DENIALS {
        return Err(format!("denials holds {} entries; a heartbeat reports at most {MAX_REPORTED_DENIALS}", denials.len()));
    }
    for (i, d) in denials.iter().enumerate() {
        if !REPORTED_KINDS.contains(&d.kind.as_str()) {
            return Err(format!(
                "denials[{i}].kind '{}' is not one of {}",
                toolmesh_core::text::escape(&d.kind),
                REPORTED_KINDS.join(", ")
            ));
        }
        name(&format!("denials[{i}].caller"), &d.caller)?;
        if let Some(origin) = &d.origin {
            name(&format!("denials[{i}].origin"), origin)?;
        }
        name(&format!("denials[{i}].tool"), &d.tool)?;
        name(&format!("denials[{i}].rule"), &d.rule)?;
        name(&format!("denials[{i}].time"), &d.time)?;
    }
    Ok(())
}

/// The calls a heartbeat reports: at most [`MAX_REPORTED_CALLEES`] providers, each named once,
/// no more errors than calls.
pub fn reported_calls(calls: &[ReportedCalls]) -> Result<(), String> {
    if calls.len() > MAX_REPORTED_CALLEES {
        return Err(format!("calls holds {} entries; a heartbeat reports at most {MAX_REPORTED_CALLEES}", calls.len()));
    }
    let mut seen = HashSet::new();
    for (i, c) in calls.iter().enumerate() {
        name(&format!("calls[{i}].agent_id"), &c.agent_id)?;
        if !seen.insert(c.agent_id.as_str()) {
            return Err(format!(
                "calls[{i}].agent_id '{}' is reported twice; report each provider once",
                toolmesh_core::text::escape(&c.agent_id)
            ));
        }
        if c.errors > c.calls {
            return Err(format!("calls[{i}] has {} errors but {} calls; errors are counted among the calls", c.errors, c.calls));
        }
    }
    Ok(())
}

/// What an agent's policy refuses, as its heartbeat reports it.
const REPORTED_KINDS: &[&str] = &["call_denied", "rate_limited", "origin_rejected", "origin_out_of_scope"];

fn name(path: &str, value: &str) -> Result<(), String> {
    if value.chars().all(is_blank) {
        return Err(format!("{path} must not be empty or blank"));
    }
    text(path, value, MAX_NAME_CHARS, false)
}

/// Prose: up to [`MAX_DESCRIPTION_CHARS`]; tabs and line breaks allowed, other controls not.
fn description(path: &str, value: &str) -> Result<(), String> {
    text(path, value, MAX_DESCRIPTION_CHARS, true)
}

/// White space as the document's `\S` pattern counts it (ECMAScript's, which includes U+FEFF).
fn is_blank(c: char) -> bool {
    c.is_whitespace() || c == '\u{feff}'
}

/// Any string the registry stores: at most `max` characters (Unicode scalar values, as JSON
/// Schema's `maxLength` counts), and no control character (C0, DEL, C1; `prose` allows tab, line
/// feed and carriage return).
fn text(path: &str, value: &str, max: usize, prose: bool) -> Result<(), String> {
    let allowed = |c: char| prose && matches!(c, '\t' | '\n' | '\r');
    if let Some((at, c)) = value.chars().enumerate().find(|&(_, c)| c.is_control() && !allowed(c)) {
        let which = if prose { "control characters other than tab and line breaks" } else { "control characters" };
        return Err(format!(
            "{path} has the control character U+{:04X} at character {at} ('{}'); {which} (U+0000-U+001F, U+007F-U+009F) \
             are refused in every string the registry stores: remove it",
            u32::from(c),
            toolmesh_core::text::escape(value)
        ));
    }
    let length = value.chars().count();
    if length > max {
        return Err(format!("{path} is {length} characters long; the limit is {max}: shorten it"));
    }
    Ok(())
}

/// A tool's version: Semantic Versioning 2.0.0 (`MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD]`),
/// each of MAJOR, MINOR and PATCH at most 19 digits (so it fits 64 bits).
fn version(path: &str, value: &str) -> Result<(), String> {
    text(path, value, MAX_VERSION_CHARS, false)?;
    check_semver(value).map_err(|why| {
        format!("{path} '{value}' is not a semantic version ({why}); write MAJOR.MINOR.PATCH like 1.2.0 or 2.0.0-rc.1 (semver.org)")
    })
}

/// Semantic Versioning 2.0.0, exactly as the document's pattern states it.
pub fn check_semver(value: &str) -> Result<(), &'static str> {
    let (rest, build) = match value.split_once('+') {
        Some((rest, build)) => (rest, Some(build)),
        None => (value, None),
    };
    let (core, pre) = match rest.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (rest, None),
    };
    let numbers: Vec<&str> = core.split('.').collect();
    if numbers.len() != 3 {
        return Err("it needs exactly three numbers, MAJOR.MINOR.PATCH");
    }
    for number in numbers {
        if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
            return Err("MAJOR, MINOR and PATCH are decimal numbers");
        }
        if number.len() > 1 && number.starts_with('0') {
            return Err("a number has a leading zero");
        }
        if number.len() > 19 {
            return Err("a number has more than 19 digits");
        }
    }
    let identifier_chars = |id: &str| id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if let Some(pre) = pre {
        for id in pre.split('.') {
            if id.is_empty() || !identifier_chars(id) {
                return Err("a pre-release identifier is empty or not of [0-9A-Za-z-]");
            }
            if id.len() > 1 && id.starts_with('0') && id.bytes().all(|b| b.is_ascii_digit()) {
                return Err("a numeric pre-release identifier has a leading zero");
            }
        }
    }
    if let Some(build) = build {
        if build.split('.').any(|id| id.is_empty() || !identifier_chars(id)) {
            return Err("a build identifier is empty or not of [0-9A-Za-z-]");
        }
    }
    Ok(())
}

/// The agent's MCP endpoint: `https://HOST[:PORT][/PATH]` with HOST a DNS name or IPv4 address
/// (letters, digits, '.', '-', '_') or a bracketed IPv6 address, PORT at most 65535, and PATH of
/// unreserved and sub-delimiter characters (no query, fragment, user info or percent escapes).
fn endpoint(path: &str, value: &str) -> Result<(), String> {
    text(path, value, MAX_ENDPOINT_CHARS, false)?;
    let refuse = |why: &str| Err(format!("{path} '{value}' {why}; write it like https://10.0.0.5:9000/mcp"));
    let Some(rest) = value.strip_prefix("https://") else {
        return refuse("must start with https://: agents serve MCP over mutual TLS only");
    };
    let (authority, route) = match rest.find('/') {
        Some(slash) => rest.split_at(slash),
        None => (rest, ""),
    };
    let (host, port) = if let Some(inner) = authority.strip_prefix('[') {
        let Some((v6, after)) = inner.split_once(']') else { return refuse("has an unclosed '[' in its host") };
        if v6.is_empty() || !v6.chars().all(|c| c.is_ascii_hexdigit() || matches!(c, ':' | '.')) {
            return refuse("has a bracketed host that is not an IPv6 address");
        }
        match after {
            "" => (v6, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (v6, Some(port)),
                None => return refuse("has characters between its IPv6 address and its port"),
            },
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return refuse("has no host");
    }
    if !authority.starts_with('[') && !host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')) {
        return refuse("has a host that is not a DNS name or an IP address (letters, digits, '.', '-', '_', or [IPv6])");
    }
    if let Some(port) = port {
        let decimal = !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit());
        let canonical = port == "0" || !port.starts_with('0');
        if !decimal || !canonical || port.parse::<u32>().map_or(true, |p| p > 65535) {
            return refuse("has a port that is not a number from 0 to 65535 (without leading zeros)");
        }
    }
    if !route.chars().all(|c| c.is_ascii_alphanumeric() || "._~!$&()*+,;=:@/-".contains(c)) {
        return refuse("has a path with characters other than letters, digits and ._~!$&()*+,;=:@/- (no query, fragment or % escapes)");
    }
    value.parse::<http::Uri>().map_err(|e| format!("{path} '{value}' is not a URL: {e}"))?;
    Ok(())
}

fn kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use toolmesh_core::registry_api::ToolInfo;

    fn tool(name: &str, capability: &str, dependencies: &[&str]) -> ToolInfo {
        let mut tool: ToolInfo = serde_json::from_value(serde_json::json!({"name": name, "capability": capability})).expect("minimal tool");
        tool.dependencies = dependencies.iter().map(|d| serde_json::from_str(d).expect("test spec")).collect();
        tool
    }

    fn request(endpoint: &str, tools: Vec<ToolInfo>) -> RegisterRequest {
        RegisterRequest { agent_id: "a-1".into(), name: "a".into(), endpoint: endpoint.into(), tools }
    }

    #[test]
    fn dependencies_are_distinct_across_tools_and_ordered_by_key() {
        let deps = registration(&request(
            "https://127.0.0.1:9000/mcp",
            vec![tool("x", "c", &[r#""sub""#, r#""add""#]), tool("y", "c", &[r#""add""#])],
        ))
        .expect("valid");
        let keys: Vec<_> = deps.iter().map(|d| d.spec.capability.as_str()).collect();
        assert_eq!(keys, ["add", "sub"]);
    }

    #[test]
    fn each_problem_is_named_by_its_path() {
        let with = |edit: &dyn Fn(&mut ToolInfo)| {
            let mut t = tool("x", "c", &[]);
            edit(&mut t);
            request("https://h/mcp", vec![tool("ok", "c", &[]), t])
        };
        let cases = [
            (request("http://127.0.0.1:9000/mcp", vec![]), "endpoint 'http://127.0.0.1:9000/mcp' must start with https://"),
            (request("https:///mcp", vec![]), "has no host"),
            (request("https://h:65536/mcp", vec![]), "has a port that is not a number"),
            (request("https://h/mcp?x=1", vec![]), "no query"),
            (request("https://h/mcp", vec![tool("x", "c", &[]), tool("x", "d", &[])]), "tools[1].name: tool name 'x' is declared twice"),
            (with(&|t| t.capability = " ".into()), "tools[1].capability must not be empty or blank"),
            (with(&|t| t.version = "1.0".into()), "tools[1].version '1.0' is not a semantic version"),
            (with(&|t| t.version = "v1.2.3".into()), "tools[1].version 'v1.2.3' is not a semantic version"),
            (with(&|t| t.name = "evil\u{1b}[2J\nINFO forged".into()), "tools[1].name has the control character U+001B at character 4"),
            (with(&|t| t.tags = vec!["ok".into(), "a\u{85}".into()]), "tools[1].tags[1] has the control character U+0085"),
            (with(&|t| t.description = "two\nlines\u{7f}".into()), "tools[1].description has the control character U+007F"),
            (with(&|t| t.input_schema = serde_json::json!(true)), "tools[1].input_schema must be a JSON object"),
            (
                with(&|t| t.input_schema = serde_json::json!({"properties": {"r": {"type": "string", "x-mcp-header": "a b"}}})),
                "tools[1]: inputSchema.properties.r.x-mcp-header 'a b' is not an HTTP header name",
            ),
            (
                with(&|t| {
                    t.input_schema = serde_json::json!({"properties": {
                        "a": {"type": "string", "x-mcp-header": "Region"}, "b": {"type": "string", "x-mcp-header": "region"}}})
                }),
                "is declared by two parameters",
            ),
            (
                with(&|t| t.input_schema = serde_json::json!({"properties": {"r": {"type": "object", "x-mcp-header": "R"}}})),
                "parameter 'r' must have type string, integer, number or boolean",
            ),
            (with(&|t| t.capability = "c".repeat(257)), "tools[1].capability is 257 characters long; the limit is 256"),
            (
                request("https://h/mcp", vec![tool("x", "c", &[r#"{"capability":"d","version":">>1"}"#])]),
                "tools[0].dependencies[0]: dependency 'd': version constraint '>>1'",
            ),
            (
                request("https://h/mcp", vec![tool("x", "c", &[r#"{"capability":"d","tags":[[]]}"#])]),
                "tools[0].dependencies[0].tags[0] is an empty list",
            ),
            (
                request("https://h/mcp", vec![tool("x", "c", &[r#"{"capability":"d","tags":[""]}"#])]),
                "tools[0].dependencies[0].tags[0] must not be empty",
            ),
        ];
        for (req, want) in cases {
            let err = registration(&req).expect_err(want);
            assert!(err.contains(want), "{err:?} should contain {want:?}");
        }
        let mut nameless = request("https://h/mcp", vec![]);
        nameless.name = String::new();
        assert_eq!(registration(&nameless).expect_err("no name"), "name must not be empty or blank");
        let mut long_id = request("https://h/mcp", vec![]);
        long_id.agent_id = "é".repeat(256);
        assert!(registration(&long_id).is_ok(), "limits count characters, as JSON Schema's maxLength does");
        let prose = with(&|t| t.description = "Adds.\n\tArgs:\r\n a, b".into());
        assert!(registration(&prose).is_ok(), "descriptions keep tabs and line breaks");
    }

    #[test]
    fn endpoints_take_hosts_ipv6_and_ports() {
        for good in
            ["https://h", "https://127.0.0.1:9000/mcp", "https://[::1]:443/mcp", "https://agent_1.svc.local:0/a/b;c=d", "https://h:65535/"]
        {
            assert_eq!(endpoint("endpoint", good), Ok(()), "{good}");
        }
        for bad in
            ["https://h:", "https://h:08/", "https://[::1", "https://[zz]/", "https://u@h/", "https://h/%41", "https://h#f", "https:// h/"]
        {
            assert!(endpoint("endpoint", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn semver_is_semver_2_and_what_the_resolver_parses() {
        for good in [
            "0.0.0",
            "1.2.3",
            "10.20.30",
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-0a.x-y",
            "1.0.0+build.007",
            "1.0.0-rc.1+sha.5114f85",
            "9999999999999999999.0.0",
        ] {
            assert_eq!(check_semver(good), Ok(()), "{good}");
            assert!(semver::Version::parse(good).is_ok(), "the resolver parses {good}");
        }
        for bad in [
            "1",
            "1.2",
            "1.2.3.4",
            "01.2.3",
            "1.02.3",
            "v1.2.3",
            "1.2.3-",
            "1.2.3-01",
            "1.2.3-a..b",
            "1.2.3+",
            "1.2.3+a_b",
            " 1.2.3",
            "1.2.3 ",
            "10000000000000000000.0.0",
            "",
        ] {
            assert!(check_semver(bad).is_err(), "{bad}");
        }
    }
}
