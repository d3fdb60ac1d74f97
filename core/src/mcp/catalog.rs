//! An agent's resources, resource templates and prompts (MCP's `resources/*` and `prompts/*`):
//! the declarations a binding hands over as one JSON document, the checks core makes of them and
//! of what a handler answers for them, and the matching of URIs against RFC 6570 level-1
//! templates (`test://template/{id}/data`).
//!
//! Member names are MCP's own (`uri`, `mimeType`, `uriTemplate`, `arguments[].required`), so a
//! binding passes its author's declarations through unchanged and `resources/list` etc. write
//! them back as declared (minus a static resource's `text`/`blob`, which only `resources/read`
//! answers).

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashSet};

/// Everything an agent serves besides its tools.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Catalog {
    #[serde(default)]
    pub resources: Vec<ResourceInfo>,
    #[serde(default)]
    pub resource_templates: Vec<ResourceTemplateInfo>,
    #[serde(default)]
    pub prompts: Vec<PromptInfo>,
}

/// A resource with a fixed URI. Declared with `text` or `blob`, core answers `resources/read`
/// itself (static content); declared without, every read goes to the host handler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceInfo {
    pub uri: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icons: Option<Value>,
    /// Listed as declared.
    #[serde(rename = "_meta", default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Value>,
    /// Static text content, served by core.
    #[serde(default, skip_serializing)]
    pub text: Option<String>,
    /// Static binary content (standard base64), served by core.
    #[serde(default, skip_serializing)]
    pub blob: Option<String>,
}

/// A family of resources named by a URI template; every read goes to the host handler with the
/// template's variables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceTemplateInfo {
    pub uri_template: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icons: Option<Value>,
    /// Listed as declared.
    #[serde(rename = "_meta", default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Value>,
    /// The values each variable may take, offered by `completion/complete` (not listed).
    #[serde(default, skip_serializing)]
    pub completions: BTreeMap<String, Vec<String>>,
}

/// A prompt; `prompts/get` goes to the host handler once core has checked its arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PromptInfo {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arguments: Vec<PromptArgument>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icons: Option<Value>,
    /// Listed as declared.
    #[serde(rename = "_meta", default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PromptArgument {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub required: bool,
    /// The values the argument may take, offered by `completion/complete` (not listed).
    #[serde(default, skip_serializing)]
    pub completions: Vec<String>,
}

impl Catalog {
    /// Reads and checks the JSON document a binding hands over (`{"resources": [...],
    /// "resourceTemplates": [...], "prompts": [...]}`, each member optional).
    pub fn parse(json: &str) -> Result<Catalog, String> {
        let catalog: Catalog = serde_json::from_str(json).map_err(|e| e.to_string())?;
        catalog.check()?;
        Ok(catalog)
    }

    /// Whether the agent answers `resources/*` (and declares the `resources` capability).
    pub fn serves_resources(&self) -> bool {
        !self.resources.is_empty() || !self.resource_templates.is_empty()
    }

    /// Whether the agent answers `prompts/*` (and declares the `prompts` capability).
    pub fn serves_prompts(&self) -> bool {
        !self.prompts.is_empty()
    }

    /// The checks a declaration must pass before the agent starts; the error names the entry.
    pub fn check(&self) -> Result<(), String> {
        let non_empty = |what: String, value: &str| if value.trim().is_empty() { Err(format!("{what} must not be empty")) } else { Ok(()) };
        let mut uris = HashSet::new();
        for (i, r) in self.resources.iter().enumerate() {
            let at = format!("resources[{i}]");
            non_empty(format!("{at}.uri"), &r.uri)?;
            non_empty(format!("{at} ('{}').name", r.uri), &r.name)?;
            if !uris.insert(r.uri.as_str()) {
                return Err(format!("{at}: two resources have the URI '{}'; URIs must be unique", r.uri));
            }
            if let Some(mime) = &r.mime_type {
                non_empty(format!("{at} ('{}').mimeType", r.uri), mime)?;
            }
            match (&r.text, &r.blob) {
                (Some(_), Some(_)) => return Err(format!("{at} ('{}'): give 'text' or 'blob', not both", r.uri)),
                (None, Some(blob)) => super::content::check_base64(&format!("{at} ('{}')", r.uri), "blob", blob)?,
                _ => {}
            }
        }
        let mut templates = HashSet::new();
        for (i, t) in self.resource_templates.iter().enumerate() {
            let at = format!("resourceTemplates[{i}]");
            non_empty(format!("{at} ('{}').name", t.uri_template), &t.name)?;
            UriTemplate::parse(&t.uri_template).map_err(|e| format!("{at}.uriTemplate '{}': {e}", t.uri_template))?;
            if !templates.insert(t.uri_template.as_str()) {
                return Err(format!("{at}: two resource templates are '{}'; templates must be unique", t.uri_template));
            }
            let template = UriTemplate::parse(&t.uri_template).map_err(|e| format!("{at}.uriTemplate '{}': {e}", t.uri_template))?;
            if let Some(unknown) = t.completions.keys().find(|name| !template.variables().any(|v| v == name.as_str())) {
                return Err(format!("{at} ('{}').completions: '{unknown}' is not a variable of the template", t.uri_template));
            }
        }
        let mut names = HashSet::new();
        for (i, p) in self.prompts.iter().enumerate() {
            let at = format!("prompts[{i}]");
            non_empty(format!("{at}.name"), &p.name)?;
            if !names.insert(p.name.as_str()) {
                return Err(format!("{at}: two prompts are named '{}'; prompt names must be unique", p.name));
            }
            let mut arguments = HashSet::new();
            for (j, a) in p.arguments.iter().enumerate() {
                non_empty(format!("{at} ('{}').arguments[{j}].name", p.name), &a.name)?;
                if !arguments.insert(a.name.as_str()) {
                    return Err(format!("{at} ('{}'): two arguments are named '{}'", p.name, a.name));
                }
            }
        }
        Ok(())
    }

    pub fn prompt(&self, name: &str) -> Option<&PromptInfo> {
        self.prompts.iter().find(|p| p.name == name)
    }

    /// `completion/complete`: the declared values of argument `argument` of the prompt or
    /// resource template `reference` names (`{"type": "ref/prompt", "name"}` or `{"type":
    /// "ref/resource", "uri": <the template>}`) that start with `typed`, ignoring case: at most
    /// [`COMPLETIONS_MAX`] of them, with how many there are. `Err` names a reference this agent
    /// does not serve.
    pub fn complete(&self, reference: &Value, argument: &str, typed: &str) -> Result<Completions, String> {
        let text = |key: &str| reference.get(key).and_then(Value::as_str).unwrap_or_default();
        let declared: &[String] = match text("type") {
            "ref/prompt" => {
                let prompt = self.prompt(text("name")).ok_or_else(|| format!("unknown prompt '{}'", text("name")))?;
                prompt.arguments.iter().find(|a| a.name == argument).map_or(&[], |a| a.completions.as_slice())
            }
            _ => {
                let uri = text("uri");
                let template = self.resource_templates.iter().find(|t| t.uri_template == uri);
                let template = template.ok_or_else(|| format!("unknown resource template '{uri}'"))?;
                template.completions.get(argument).map_or(&[], Vec::as_slice)
            }
        };
        let typed = typed.to_lowercase();
        let matching: Vec<&String> = declared.iter().filter(|value| value.to_lowercase().starts_with(&typed)).collect();
        let values = matching.iter().take(COMPLETIONS_MAX).map(|v| (*v).clone()).collect();
        Ok(Completions { values, total: matching.len() })
    }
}

/// The most values one completion answer carries (MCP's limit).
pub const COMPLETIONS_MAX: usize = 100;

/// What `completion/complete` answers: up to [`COMPLETIONS_MAX`] values, and how many matched.
#[derive(Debug, Clone, PartialEq)]
pub struct Completions {
    pub values: Vec<String>,
    pub total: usize,
}

impl PromptInfo {
    /// The arguments of a `prompts/get` (`params.arguments`, absent or `null` for none): strings
    /// only, as MCP defines them, and every required one present.
    pub fn check_arguments(&self, arguments: Option<&Value>) -> Result<Map<String, Value>, String> {
        let arguments = match arguments {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(map)) => map.clone(),
            Some(_) => return Err(format!("prompt '{}': arguments must be an object of strings", self.name)),
        };
        if let Some((name, _)) = arguments.iter().find(|(_, v)| !v.is_string()) {
            return Err(format!("prompt '{}': argument '{name}' must be a string", self.name));
        }
        let missing: Vec<&str> =
            self.arguments.iter().filter(|a| a.required && !arguments.contains_key(&a.name)).map(|a| a.name.as_str()).collect();
        if !missing.is_empty() {
            return Err(format!("prompt '{}': missing required argument(s) {}", self.name, missing.join(", ")));
        }
        Ok(arguments)
    }
}

/// A static resource's `resources/read` contents: its declared text or blob.
pub fn static_contents(resource: &ResourceInfo) -> Option<Vec<Value>> {
    let mut item = json!({"uri": resource.uri});
    if let Some(mime) = &resource.mime_type {
        item["mimeType"] = json!(mime);
    }
    match (&resource.text, &resource.blob) {
        (Some(text), _) => item["text"] = json!(text),
        (None, Some(blob)) => item["blob"] = json!(blob),
        (None, None) => return None,
    }
    Some(vec![item])
}

/// Checks what a handler answered for a `resources/read`: MCP's `ReadResourceResult`
/// (`{"contents": [{uri, mimeType?, text | blob}, ...]}`, at least one item); the error names the
/// item at fault. Returns the contents.
pub fn check_read_result(answer: Value) -> Result<Vec<Value>, String> {
    let Value::Object(mut answer) = answer else {
        return Err(
            "the answer must be a ReadResourceResult object: {\"contents\": [{\"uri\", \"mimeType\"?, \"text\" | \"blob\"}]}".into()
        );
    };
    let Some(Value::Array(contents)) = answer.remove("contents") else {
        return Err("the answer needs a 'contents' array".into());
    };
    if contents.is_empty() {
        // SEP-2164: an empty `contents` is never a valid read (a missing resource is an error).
        return Err("'contents' is empty; a resource that does not exist is an error, not empty contents".into());
    }
    for (i, item) in contents.iter().enumerate() {
        if !item.is_object() {
            return Err(format!("contents[{i}]: must be an object"));
        }
        if item.get("mimeType").is_some_and(|m| !m.is_string()) {
            return Err(format!("contents[{i}]: 'mimeType' must be a string"));
        }
        if item.get("uri").and_then(Value::as_str).is_none_or(str::is_empty) {
            return Err(format!("contents[{i}]: needs a non-empty string 'uri'"));
        }
        match (item.get("text"), item.get("blob")) {
            (Some(Value::String(_)), None) => {}
            (None, Some(Value::String(blob))) => super::content::check_base64(&format!("contents[{i}]"), "blob", blob)?,
            _ => return Err(format!("contents[{i}]: needs exactly one of 'text' and 'blob', a string")),
        }
    }
    Ok(contents)
}

/// Checks what a handler answered for a `prompts/get`: MCP's `GetPromptResult`
/// (`{"description"?, "messages": [{"role": "user" | "assistant", "content": <content item>}]}`).
/// Returns `{description?, messages}`, the members core answers with.
pub fn check_prompt_result(answer: Value) -> Result<Value, String> {
    let Value::Object(answer) = answer else {
        return Err("the answer must be a GetPromptResult object: {\"description\"?, \"messages\": [{\"role\", \"content\"}]}".into());
    };
    let Some(Value::Array(messages)) = answer.get("messages") else {
        return Err("the answer needs a 'messages' array".into());
    };
    for (i, message) in messages.iter().enumerate() {
        match message.get("role").and_then(Value::as_str) {
            Some("user" | "assistant") => {}
            _ => return Err(format!("messages[{i}]: 'role' must be \"user\" or \"assistant\"")),
        }
        let content = message.get("content").ok_or_else(|| format!("messages[{i}]: needs a 'content' item"))?;
        super::content::check_content(content).map_err(|e| format!("messages[{i}].content: {e}"))?;
    }
    let mut result = json!({"messages": messages});
    match answer.get("description") {
        None | Some(Value::Null) => {}
        Some(Value::String(d)) => result["description"] = json!(d),
        Some(_) => return Err("'description' must be a string".into()),
    }
    Ok(result)
}

/// An RFC 6570 level-1 template: literal text and `{name}` variables. A variable matches a
/// non-empty run of characters without `/`, `?` or `#`; its value is taken as it appears in the
/// URI (not percent-decoded).
#[derive(Debug, Clone, PartialEq)]
pub struct UriTemplate {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Literal(String),
    Variable(String),
}

impl UriTemplate {
    /// The names of the template's variables, in order.
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|part| match part {
            Part::Variable(name) => Some(name.as_str()),
            Part::Literal(_) => None,
        })
    }

    pub fn parse(template: &str) -> Result<UriTemplate, String> {
        let mut parts = Vec::new();
        let mut rest = template;
        while !rest.is_empty() {
            match rest.find(['{', '}']) {
                None => {
                    parts.push(Part::Literal(rest.to_owned()));
                    break;
                }
                Some(i) if rest.as_bytes()[i] == b'}' => return Err("a '}' closes no '{'".into()),
                Some(i) => {
                    if i > 0 {
                        parts.push(Part::Literal(rest[..i].to_owned()));
                    }
                    let close = rest[i..].find('}').ok_or("a '{' is not closed")? + i;
                    let name = &rest[i + 1..close];
                    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                        return Err(format!(
                            "'{{{name}}}' is not a variable this server matches (level 1: {{name}}, letters, digits and '_')"
                        ));
                    }
                    if matches!(parts.last(), Some(Part::Variable(_))) {
                        return Err("two variables side by side cannot be told apart; put literal text between them".into());
                    }
                    parts.push(Part::Variable(name.to_owned()));
                    rest = &rest[close + 1..];
                }
            }
        }
        if !parts.iter().any(|p| matches!(p, Part::Variable(_))) {
            return Err("it has no {variable}; declare a fixed URI as a resource instead".into());
        }
        Ok(UriTemplate { parts })
    }

    /// The variables' values when `uri` is an expansion of this template.
    pub fn matches(&self, uri: &str) -> Option<Map<String, Value>> {
        let mut variables = Map::new();
        match_parts(&self.parts, uri, &mut variables).then_some(variables)
    }
}

fn match_parts(parts: &[Part], uri: &str, variables: &mut Map<String, Value>) -> bool {
    match parts.split_first() {
        None => uri.is_empty(),
        Some((Part::Literal(literal), rest)) => uri.strip_prefix(literal.as_str()).is_some_and(|tail| match_parts(rest, tail, variables)),
        Some((Part::Variable(name), rest)) => {
            let run = uri.find(['/', '?', '#']).unwrap_or(uri.len());
            // The shortest value that lets the rest match (a value never spans a '/').
            for end in (1..=run).filter(|&end| uri.is_char_boundary(end)) {
                if match_parts(rest, &uri[end..], variables) {
                    variables.insert(name.clone(), Value::String(uri[..end].to_owned()));
                    return true;
                }
            }
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_level_one_variables_and_nothing_else() {
        let t = UriTemplate::parse("test://template/{id}/data").unwrap();
        assert_eq!(t.matches("test://template/123/data"), Some(json!({"id": "123"}).as_object().unwrap().clone()));
        assert_eq!(t.matches("test://template//data"), None, "a variable is never empty");
        assert_eq!(t.matches("test://template/1/2/data"), None, "a variable never spans a '/'");
        assert_eq!(t.matches("test://template/123/data/more"), None);
        let t = UriTemplate::parse("file:///{dir}/{name}.txt").unwrap();
        assert_eq!(t.matches("file:///docs/a.b.txt"), Some(json!({"dir": "docs", "name": "a.b"}).as_object().unwrap().clone()));
        for bad in ["test://{a}{b}", "test://{", "test://}", "test://{a-b}", "test://fixed", "test://{}"] {
            assert!(UriTemplate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn declarations_are_checked_with_the_entry_named() {
        let err = |json: &str| Catalog::parse(json).unwrap_err();
        assert!(err(r#"{"resources": [{"uri": "a://x", "name": "x"}, {"uri": "a://x", "name": "y"}]}"#)
            .contains("two resources have the URI 'a://x'"));
        assert!(err(r#"{"resources": [{"uri": "a://x", "name": "x", "text": "t", "blob": "AA=="}]}"#).contains("not both"));
        assert!(err(r#"{"resources": [{"uri": "a://x", "name": "x", "blob": "not base64!"}]}"#).contains("not base64"));
        assert!(err(r#"{"resourceTemplates": [{"uriTemplate": "a://{x}{y}", "name": "t"}]}"#).contains("side by side"));
        assert!(err(r#"{"prompts": [{"name": "p", "arguments": [{"name": "a"}, {"name": "a"}]}]}"#).contains("two arguments are named 'a'"));
        assert!(err(r#"{"resource": []}"#).contains("unknown field"), "a misspelt member is refused, not ignored");
        let listed = Catalog::parse(r#"{"resources": [{"uri": "a://x", "name": "x", "text": "t", "_meta": {"k": 1}}]}"#).unwrap();
        assert_eq!(
            json!(listed.resources[0]),
            json!({"uri": "a://x", "name": "x", "_meta": {"k": 1}}),
            "listed as declared, content never"
        );
        let catalog = Catalog::parse(r#"{"prompts": [{"name": "p", "arguments": [{"name": "a", "required": true}]}]}"#).unwrap();
        let prompt = catalog.prompt("p").unwrap();
        assert!(prompt.check_arguments(None).unwrap_err().contains("missing required argument(s) a"));
        assert!(prompt.check_arguments(Some(&json!({"a": 1}))).unwrap_err().contains("must be a string"));
        assert_eq!(prompt.check_arguments(Some(&json!({"a": "x"}))).unwrap()["a"], "x");
    }

    #[test]
    fn handler_answers_are_checked() {
        assert!(check_read_result(json!({"contents": []})).unwrap_err().contains("empty"));
        assert!(check_read_result(json!({"contents": [{"uri": "a://x"}]})).unwrap_err().contains("contents[0]"));
        assert!(check_read_result(json!({"contents": [{"uri": "a://x", "blob": "%%"}]})).unwrap_err().contains("not base64"));
        assert_eq!(check_read_result(json!({"contents": [{"uri": "a://x", "text": "t"}]})).unwrap().len(), 1);
        assert!(check_prompt_result(json!({"messages": [{"role": "system", "content": {"type": "text", "text": "x"}}]}))
            .unwrap_err()
            .contains("role"));
        assert!(check_prompt_result(json!({"messages": [{"role": "user", "content": {"type": "image", "data": "AA=="}}]}))
            .unwrap_err()
            .contains("messages[0].content"));
        let ok = check_prompt_result(
            json!({"description": "d", "messages": [{"role": "user", "content": {"type": "text", "text": "x"}}], "extra": 1}),
        )
        .unwrap();
        assert_eq!(ok, json!({"description": "d", "messages": [{"role": "user", "content": {"type": "text", "text": "x"}}]}));
    }
}
