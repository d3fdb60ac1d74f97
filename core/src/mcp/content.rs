//! A tool result in MCP's own shape (`CallToolResult`): what a handler answers when one JSON value
//! is not enough — images, audio, resource links, embedded resources, several items, or a
//! `structuredContent` beside its own content. Core reads and checks it here, once for every
//! language (a binding hands over the JSON; see docs/mcp-features.md §1), and the MCP server
//! writes it back out.

use serde_json::{Map, Value};

/// What a mesh call hands its caller of the callee's `CallToolResult`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ResultShape {
    /// One JSON value: the `structuredContent`, else the text of the first text item (parsed
    /// when it is JSON).
    #[default]
    Value,
    /// The result in MCP's shape, `{"content": [...], "structuredContent"?: ...}`: every content
    /// item as the callee sent it, so that a handler can answer with it unchanged.
    Whole,
}

/// A checked `CallToolResult`: `content` items are kept verbatim (MCP adds members, and
/// `annotations` and `_meta` ride along), after [`ToolOutput::from_json`] checked each one.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutput {
    content: Vec<Value>,
    structured: Option<Value>,
    is_error: bool,
}

impl ToolOutput {
    /// Reads a `CallToolResult` document: `{"content": [...], "structuredContent"?: any,
    /// "isError"?: bool}`. The error names the member or item at fault, e.g.
    /// `content[1]: image 'data' is not base64`.
    pub fn from_json(result: Value) -> Result<ToolOutput, String> {
        let Value::Object(mut result) = result else {
            return Err("a tool result must be a JSON object with a 'content' array".into());
        };
        let content = match result.remove("content") {
            Some(Value::Array(items)) => items,
            None => Vec::new(),
            Some(_) => return Err("'content' must be an array of content items".into()),
        };
        for (index, item) in content.iter().enumerate() {
            check_content(item).map_err(|problem| format!("content[{index}]: {problem}"))?;
        }
        let structured = result.remove("structuredContent").filter(|v| !v.is_null());
        let is_error = match result.remove("isError") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => b,
            Some(_) => return Err("'isError' must be a boolean".into()),
        };
        if content.is_empty() && structured.is_none() {
            return Err("a tool result needs 'content' items or 'structuredContent'".into());
        }
        Ok(ToolOutput { content, structured, is_error })
    }

    /// The content items, as MCP lists them.
    pub fn content(&self) -> &[Value] {
        &self.content
    }

    pub fn structured(&self) -> Option<&Value> {
        self.structured.as_ref()
    }

    pub fn is_error(&self) -> bool {
        self.is_error
    }

    /// The one JSON value a caller that takes values (`Agent::call`, the mesh client) sees: the
    /// `structuredContent`, else the text of a result made of one text item, else the whole
    /// result in MCP's shape.
    pub fn to_value(&self) -> Value {
        if let Some(structured) = &self.structured {
            return structured.clone();
        }
        if let [only] = self.content.as_slice() {
            if only["type"] == "text" {
                return only["text"].clone();
            }
        }
        Value::Object(Map::from_iter([("content".to_owned(), Value::Array(self.content.clone()))]))
    }

    /// The result in MCP's shape as the MCP server sends it (without `isError`: a failed result
    /// is an error to a caller): a `structuredContent` with no text beside it gets its text
    /// rendering too.
    pub fn to_whole(&self) -> Value {
        let mut content = self.content.clone();
        if let Some(value) = self.structured.as_ref().filter(|_| !content.iter().any(|item| item["type"] == "text")) {
            content.push(text_item(value));
        }
        whole_result(content, self.structured.clone())
    }

    /// The text of the result's text items, for an error message.
    pub fn text(&self) -> String {
        let texts: Vec<&str> = self.content.iter().filter(|i| i["type"] == "text").filter_map(|i| i["text"].as_str()).collect();
        texts.join("\n")
    }
}

/// `{"content": [...], "structuredContent"?: ...}`.
pub fn whole_result(content: Vec<Value>, structured: Option<Value>) -> Value {
    let mut result = Map::from_iter([("content".to_owned(), Value::Array(content))]);
    if let Some(structured) = structured {
        result.insert("structuredContent".to_owned(), structured);
    }
    Value::Object(result)
}

/// The whole result a handler's plain value stands for, as the MCP server answers with it: the
/// value as `structuredContent` and its text rendering.
pub fn whole_of_value(value: Value) -> Value {
    whole_result(vec![text_item(&value)], Some(value))
}

/// The text item that renders a structured value (the spec's back-compat SHOULD): a string as
/// it is, else its JSON.
pub(crate) fn text_item(value: &Value) -> Value {
    let text = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    serde_json::json!({"type": "text", "text": text})
}

/// One content item: a known `type` and the members MCP requires of it.
pub(crate) fn check_content(item: &Value) -> Result<(), String> {
    let Some(kind) = item.get("type").and_then(Value::as_str) else {
        return Err("a content item needs a string 'type' (text, image, audio, resource_link, resource)".into());
    };
    let string = |member: &str| item.get(member).and_then(Value::as_str);
    let required = |member: &str| match string(member) {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(format!("{kind} needs a non-empty string '{member}'")),
    };
    match kind {
        "text" => string("text").map(drop).ok_or_else(|| "text needs a string 'text'".to_owned()),
        "image" | "audio" => {
            required("mimeType")?;
            check_base64(kind, "data", required("data")?)
        }
        "resource_link" => {
            required("uri")?;
            required("name").map(drop)
        }
        "resource" => {
            let Some(resource) = item.get("resource").filter(|r| r.is_object()) else {
                return Err("resource needs a 'resource' object ({uri, mimeType?, text | blob})".into());
            };
            if resource.get("uri").and_then(Value::as_str).is_none_or(str::is_empty) {
                return Err("resource needs a non-empty string 'resource.uri'".into());
            }
            match (resource.get("text"), resource.get("blob")) {
                (Some(Value::String(_)), None) => Ok(()),
                (None, Some(Value::String(blob))) => check_base64(kind, "resource.blob", blob),
                _ => Err("resource needs exactly one of 'resource.text' and 'resource.blob', a string".into()),
            }
        }
        other => Err(format!("unknown content type '{other}' (text, image, audio, resource_link, resource)")),
    }
}

pub(crate) fn check_base64(kind: &str, member: &str, data: &str) -> Result<(), String> {
    match super::base64_decode(data) {
        Some(_) => Ok(()),
        None => Err(format!("{kind} '{member}' is not base64 (standard alphabet, padded)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";

    #[test]
    fn every_content_type_is_read_and_kept_verbatim() {
        let result = json!({"content": [
            {"type": "text", "text": "hi", "annotations": {"audience": ["user"]}},
            {"type": "image", "data": PNG, "mimeType": "image/png"},
            {"type": "audio", "data": "UklGRg==", "mimeType": "audio/wav"},
            {"type": "resource_link", "uri": "file:///a.txt", "name": "a.txt", "mimeType": "text/plain"},
            {"type": "resource", "resource": {"uri": "test://r", "mimeType": "text/plain", "text": "body"}},
            {"type": "resource", "resource": {"uri": "test://b", "blob": "AAE="}},
        ], "structuredContent": {"n": 1}});
        let output = ToolOutput::from_json(result.clone()).unwrap();
        assert_eq!(output.content(), result["content"].as_array().unwrap().as_slice());
        assert_eq!((output.structured(), output.is_error()), (Some(&json!({"n": 1})), false));
        assert_eq!(output.to_value(), json!({"n": 1}));
    }

    #[test]
    fn a_value_for_callers_that_take_values() {
        let text = ToolOutput::from_json(json!({"content": [{"type": "text", "text": "hi"}]})).unwrap();
        assert_eq!(text.to_value(), json!("hi"));
        let image = json!({"content": [{"type": "image", "data": PNG, "mimeType": "image/png"}]});
        assert_eq!(ToolOutput::from_json(image.clone()).unwrap().to_value(), image);
    }

    #[test]
    fn a_malformed_result_is_refused_naming_the_item() {
        let refused = |result: Value| ToolOutput::from_json(result).unwrap_err();
        assert_eq!(refused(json!([1])), "a tool result must be a JSON object with a 'content' array");
        assert_eq!(refused(json!({"content": []})), "a tool result needs 'content' items or 'structuredContent'");
        assert_eq!(refused(json!({"content": {}})), "'content' must be an array of content items");
        assert_eq!(
            refused(
                json!({"content": [{"type": "text", "text": "ok"}, {"type": "image", "data": "not base64!", "mimeType": "image/png"}]})
            ),
            "content[1]: image 'data' is not base64 (standard alphabet, padded)"
        );
        assert_eq!(refused(json!({"content": [{"type": "image", "data": PNG}]})), "content[0]: image needs a non-empty string 'mimeType'");
        assert_eq!(
            refused(json!({"content": [{"type": "video"}]})),
            "content[0]: unknown content type 'video' (text, image, audio, resource_link, resource)"
        );
        assert_eq!(
            refused(json!({"content": [{"type": "resource_link", "uri": "x"}]})),
            "content[0]: resource_link needs a non-empty string 'name'"
        );
        assert_eq!(
            refused(json!({"content": [{"type": "resource", "resource": {"uri": "x", "text": "a", "blob": "AA=="}}]})),
            "content[0]: resource needs exactly one of 'resource.text' and 'resource.blob', a string"
        );
        assert_eq!(refused(json!({"content": [{"type": "text", "text": "a"}], "isError": "yes"})), "'isError' must be a boolean");
    }
}
