//! Argument checks against a tool's input schema: required properties and JSON types, the
//! mistakes callers actually make. Deeper JSON Schema keywords are left to the tool.

use serde_json::{Map, Value};

/// `Err(message)` names the first problem found.
pub fn check_arguments(schema: &Value, arguments: &Map<String, Value>) -> Result<(), String> {
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        let missing: Vec<&str> =
            required.iter().filter_map(Value::as_str).filter(|name| !arguments.contains_key(*name)).collect();
        if !missing.is_empty() {
            return Err(format!("missing required argument(s): {}", missing.join(", ")));
        }
    }
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return Ok(());
    };
    for (name, value) in arguments {
        match properties.get(name) {
            Some(property) if !type_matches(property, value) => {
                return Err(format!("argument '{name}' must be {}, got {}", describe_type(property), json_type(value)));
            }
            Some(_) => {}
            None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                return Err(format!("unexpected argument '{name}'"));
            }
            None => {}
        }
    }
    Ok(())
}

fn type_matches(property: &Value, value: &Value) -> bool {
    match property.get("type") {
        Some(Value::String(t)) => single_type_matches(t, value),
        Some(Value::Array(types)) => types.iter().filter_map(Value::as_str).any(|t| single_type_matches(t, value)),
        _ => match property.get("anyOf").or_else(|| property.get("oneOf")).and_then(Value::as_array) {
            Some(options) => options.iter().any(|o| type_matches(o, value)),
            None => true,
        },
    }
}

fn single_type_matches(t: &str, value: &Value) -> bool {
    match t {
        "integer" => value.as_i64().is_some() || value.as_u64().is_some() || value.as_f64().is_some_and(|f| f.fract() == 0.0),
        "number" => value.is_number(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        "null" => value.is_null(),
        _ => true,
    }
}

fn describe_type(property: &Value) -> String {
    match property.get("type") {
        Some(Value::String(t)) => format!("of type {t}"),
        Some(Value::Array(ts)) => {
            format!("of type {}", ts.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" or "))
        }
        _ => "of one of the allowed types".to_owned(),
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn required_and_types_are_checked() {
        let schema = json!({"type":"object","properties":{"a":{"type":"integer"},"b":{"type":["number","null"]},
                            "s":{"anyOf":[{"type":"string"},{"type":"array"}]}},"required":["a"]});
        assert!(check_arguments(&schema, &args(json!({"a": 1}))).is_ok());
        assert!(check_arguments(&schema, &args(json!({"a": 1.0, "b": null, "s": []}))).is_ok());
        assert_eq!(check_arguments(&schema, &args(json!({}))).unwrap_err(), "missing required argument(s): a");
        assert_eq!(
            check_arguments(&schema, &args(json!({"a": "x"}))).unwrap_err(),
            "argument 'a' must be of type integer, got string"
        );
        assert!(check_arguments(&schema, &args(json!({"a": 1, "s": 5}))).is_err());
        assert!(check_arguments(&schema, &args(json!({"a": 1, "extra": 5}))).is_ok());
        let closed = json!({"properties":{},"additionalProperties":false});
        assert_eq!(check_arguments(&closed, &args(json!({"x": 1}))).unwrap_err(), "unexpected argument 'x'");
    }
}
