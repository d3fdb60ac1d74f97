//! Checks a registration before it touches the state, so a bad request changes nothing and its
//! answer names the field to fix.

use std::collections::{BTreeMap, HashSet};
use toolmesh_core::registry_api::{DependencySpec, RegisterRequest};
use toolmesh_core::resolve::Selector;

/// Agent ids travel in URL paths and logs; keep them bounded.
const MAX_AGENT_ID_LEN: usize = 256;

/// A dependency an agent declared, parsed once at registration.
#[derive(Debug, Clone)]
pub struct Dependency {
    pub spec: DependencySpec,
    pub selector: Selector,
}

/// Validates `request` and returns its distinct dependencies (across all its tools), ordered by
/// [`DependencySpec::key`] so that equal registrations always yield equal topologies.
pub fn registration(request: &RegisterRequest) -> Result<Vec<Dependency>, String> {
    if request.agent_id.trim().is_empty() {
        return Err("agent_id must not be empty".to_owned());
    }
    if request.agent_id.len() > MAX_AGENT_ID_LEN {
        return Err(format!("agent_id is longer than {MAX_AGENT_ID_LEN} bytes"));
    }
    if request.name.trim().is_empty() {
        return Err("name must not be empty".to_owned());
    }
    check_endpoint(&request.endpoint)?;
    let mut tool_names = HashSet::new();
    let mut dependencies = BTreeMap::new();
    for tool in &request.tools {
        if tool.name.trim().is_empty() {
            return Err("every tool needs a non-empty name".to_owned());
        }
        if !tool_names.insert(tool.name.as_str()) {
            return Err(format!("tool name '{}' is declared twice; tool names must be unique within an agent", tool.name));
        }
        if tool.capability.trim().is_empty() {
            return Err(format!("tool '{}' needs a non-empty capability", tool.name));
        }
        for spec in &tool.dependencies {
            let selector = Selector::new(spec).map_err(|e| format!("tool '{}': {}", tool.name, e.message()))?;
            dependencies.entry(spec.key()).or_insert_with(|| Dependency { spec: spec.clone(), selector });
        }
    }
    Ok(dependencies.into_values().collect())
}

fn check_endpoint(endpoint: &str) -> Result<(), String> {
    if !endpoint.starts_with("https://") {
        return Err(format!(
            "endpoint '{endpoint}' must start with https://; agents serve MCP over mutual TLS only"
        ));
    }
    let uri: http::Uri = endpoint.parse().map_err(|e| format!("endpoint '{endpoint}' is not a URL: {e}"))?;
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("endpoint '{endpoint}' has no host"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use toolmesh_core::registry_api::ToolInfo;

    fn tool(name: &str, capability: &str, dependencies: &[&str]) -> ToolInfo {
        let mut tool: ToolInfo =
            serde_json::from_value(serde_json::json!({"name": name, "capability": capability})).expect("minimal tool");
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
    fn each_problem_is_named() {
        let cases = [
            (request("http://127.0.0.1:9000/mcp", vec![]), "must start with https://"),
            (request("https:///mcp", vec![]), "is not a URL"),
            (request("https://h/mcp", vec![tool("x", "c", &[]), tool("x", "d", &[])]), "'x' is declared twice"),
            (request("https://h/mcp", vec![tool("x", " ", &[])]), "tool 'x' needs a non-empty capability"),
            (
                request("https://h/mcp", vec![tool("x", "c", &[r#"{"capability":"d","version":">>1"}"#])]),
                "tool 'x': dependency 'd': version constraint '>>1'",
            ),
        ];
        for (req, want) in cases {
            let err = registration(&req).expect_err(want);
            assert!(err.contains(want), "{err:?} should contain {want:?}");
        }
        let mut nameless = request("https://h/mcp", vec![]);
        nameless.name = String::new();
        assert_eq!(registration(&nameless).expect_err("no name"), "name must not be empty");
    }
}
