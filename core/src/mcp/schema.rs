//! Argument checks against a tool's input schema: required properties, JSON types and the
//! values an `enum` or `const` allows, at every depth — the mistakes callers actually make.
//! Other JSON Schema keywords are left to the tool.

use serde_json::{Map, Value};

/// `Err(message)` names the first problem found, with its path (`parcel.size`, `items[2]`).
/// Nested objects and array items are checked too, following local `$ref`s (`#/$defs/...`),
/// so a caller gets INVALID_ARGUMENTS from every language for the same mistake.
pub fn check_arguments(schema: &Value, arguments: &Map<String, Value>) -> Result<(), String> {
    check_object(schema, schema, arguments, Path::Root, "argument")
}

/// A tool's `structuredContent` against the `outputSchema` it declares, with the same checks
/// (an output schema describes an object, as MCP requires). `Err(message)` names the first
/// problem, as "member 'path' …".
pub fn check_structured(schema: &Value, structured: &Value) -> Result<(), String> {
    match structured {
        Value::Object(object) => check_object(schema, schema, object, Path::Root, "member"),
        other => Err(format!("it must be an object, got {}", json_type(other))),
    }
}

/// Where a value sits in the arguments, as a chain of borrowed steps: it is written out
/// (`parcel.tags[1]`) only when a check fails, so a passing check allocates nothing.
#[derive(Clone, Copy)]
enum Path<'a> {
    Root,
    Property(&'a Path<'a>, &'a str),
    Item(&'a Path<'a>, usize),
}

impl std::fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Path::Root => Ok(()),
            Path::Property(Path::Root, name) => f.write_str(name),
            Path::Property(parent, name) => write!(f, "{parent}.{name}"),
            Path::Item(parent, index) => write!(f, "{parent}[{index}]"),
        }
    }
}

/// `noun` names what is checked in messages: "argument", or "member" of a structured result.
fn check_object(root: &Value, schema: &Value, object: &Map<String, Value>, path: Path<'_>, noun: &str) -> Result<(), String> {
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        let mut missing = required.iter().filter_map(Value::as_str).filter(|name| !object.contains_key(*name)).peekable();
        if missing.peek().is_some() {
            let missing: Vec<String> = missing.map(|name| Path::Property(&path, name).to_string()).collect();
            return Err(format!("missing required {noun}(s): {}", missing.join(", ")));
        }
    }
    let properties = schema.get("properties").and_then(Value::as_object);
    for (name, value) in object {
        match properties.and_then(|p| p.get(name)) {
            Some(property) => check_value(root, property, value, Path::Property(&path, name), noun)?,
            None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                return Err(format!("unexpected {noun} '{}'", Path::Property(&path, name)));
            }
            None => {}
        }
    }
    Ok(())
}

fn check_value(root: &Value, schema: &Value, value: &Value, path: Path<'_>, noun: &str) -> Result<(), String> {
    let schema = resolve(root, schema);
    if !type_matches(root, schema, value) {
        if let Some(number) = value.as_f64().filter(|_| beyond_exact_integers(value)) {
            // Parsed as a float (JSON numbers past 64 bits are): a handler would get a float in
            // scientific notation instead of the integer sent, so it is refused, not rounded.
            return Err(format!(
                "{noun} '{path}' must be {}, got {number:e}, an integer too large to carry exactly: integers must be written \
                 without a fraction or exponent and lie within {}..={}",
                describe_type(schema),
                i64::MIN,
                u64::MAX
            ));
        }
        return Err(format!("{noun} '{path}' must be {}, got {}", describe_type(schema), json_type(value)));
    }
    // An enum's values are part of its type in every language (Python's Enum, Java's enum, a zod
    // enum), so the check lives here: the caller gets the same answer whatever the callee's language.
    let allowed = match (schema.get("enum"), schema.get("const")) {
        (Some(Value::Array(values)), _) => Some(values.as_slice()),
        (_, Some(constant)) => Some(std::slice::from_ref(constant)),
        _ => None,
    };
    if let Some(allowed) = allowed.filter(|allowed| !allowed.iter().any(|a| same_json_value(a, value))) {
        let listed: Vec<String> = allowed.iter().map(Value::to_string).collect();
        return Err(format!("{noun} '{path}' must be one of {}, got {value}", listed.join(", ")));
    }
    match value {
        Value::Object(object) if schema.get("properties").is_some() || schema.get("required").is_some() => {
            check_object(root, schema, object, path, noun)
        }
        Value::Array(items) => match schema.get("items") {
            Some(item_schema) if item_schema.is_object() => {
                items.iter().enumerate().try_for_each(|(i, item)| check_value(root, item_schema, item, Path::Item(&path, i), noun))
            }
            _ => Ok(()),
        },
        _ => Ok(()),
    }
}

/// JSON equality, where numbers are equal by value (`1` is `1.0`).
fn same_json_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64().is_some_and(|x| Some(x) == y.as_f64()),
        _ => a == b,
    }
}

/// Follows local `$ref`s (`#/$defs/X`, `#/definitions/X`); anything else is left unchecked.
fn resolve<'a>(root: &'a Value, mut schema: &'a Value) -> &'a Value {
    for _ in 0..32 {
        let Some(reference) = schema.get("$ref").and_then(Value::as_str) else { return schema };
        match reference.strip_prefix('#').and_then(|pointer| root.pointer(pointer)) {
            Some(target) => schema = target,
            None => return &Value::Bool(true),
        }
    }
    schema
}

fn type_matches(root: &Value, property: &Value, value: &Value) -> bool {
    let property = resolve(root, property);
    match property.get("type") {
        Some(Value::String(t)) => single_type_matches(t, value),
        Some(Value::Array(types)) => types.iter().filter_map(Value::as_str).any(|t| single_type_matches(t, value)),
        _ => match property.get("anyOf").or_else(|| property.get("oneOf")).and_then(Value::as_array) {
            Some(options) => options.iter().any(|o| type_matches(root, o, value)),
            None => true,
        },
    }
}

fn single_type_matches(t: &str, value: &Value) -> bool {
    match t {
        // 1.0 is an integer (JSON Schema), and so is any float up to 2^53, which it holds exactly.
        "integer" => {
            value.as_i64().is_some()
                || value.as_u64().is_some()
                || value.as_f64().is_some_and(|f| f.fract() == 0.0 && f.abs() <= MAX_EXACT_FLOAT_INTEGER)
        }
        "number" => value.is_number(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        "null" => value.is_null(),
        _ => true,
    }
}

/// 2^53: past it, a float no longer holds every integer.
const MAX_EXACT_FLOAT_INTEGER: f64 = 9_007_199_254_740_992.0;

/// An integral number that arrived as a float past 2^53 (a literal beyond 64 bits, or one with
/// an exponent): not an integer any handler could be given exactly.
fn beyond_exact_integers(value: &Value) -> bool {
    matches!(value, Value::Number(n) if !n.is_i64() && !n.is_u64())
        && value.as_f64().is_some_and(|f| f.is_finite() && f.fract() == 0.0 && f.abs() > MAX_EXACT_FLOAT_INTEGER)
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
        assert_eq!(check_arguments(&schema, &args(json!({"a": "x"}))).unwrap_err(), "argument 'a' must be of type integer, got string");
        assert!(check_arguments(&schema, &args(json!({"a": 1, "s": 5}))).is_err());
        assert!(check_arguments(&schema, &args(json!({"a": 1, "extra": 5}))).is_ok());
        let nested = json!({"type":"object","required":["parcel"],"$defs":{"Parcel":{"type":"object",
            "properties":{"weight":{"type":"number"},"tags":{"type":"array","items":{"type":"string"}}},"required":["weight"]}},
            "properties":{"parcel":{"$ref":"#/$defs/Parcel"},"many":{"type":"array","items":{"$ref":"#/$defs/Parcel"}}}});
        assert!(check_arguments(&nested, &args(json!({"parcel": {"weight": 1.5, "tags": ["a"]}}))).is_ok());
        assert_eq!(
            check_arguments(&nested, &args(json!({"parcel": {"weight": "heavy"}}))).unwrap_err(),
            "argument 'parcel.weight' must be of type number, got string"
        );
        assert_eq!(check_arguments(&nested, &args(json!({"parcel": {}}))).unwrap_err(), "missing required argument(s): parcel.weight");
        assert_eq!(
            check_arguments(&nested, &args(json!({"parcel": {"weight": 1, "tags": ["a", 2]}}))).unwrap_err(),
            "argument 'parcel.tags[1]' must be of type string, got integer"
        );
        assert_eq!(
            check_arguments(&nested, &args(json!({"parcel": {"weight": 1}, "many": [{"weight": 1}, {}]}))).unwrap_err(),
            "missing required argument(s): many[1].weight"
        );
        let closed = json!({"properties":{},"additionalProperties":false});
        assert_eq!(check_arguments(&closed, &args(json!({"x": 1}))).unwrap_err(), "unexpected argument 'x'");
    }

    #[test]
    fn enum_and_const_values_are_checked() {
        let schema = json!({"type":"object","$defs":{"Colour":{"type":"string","enum":["red","green"]}},
            "properties":{"colour":{"$ref":"#/$defs/Colour"},"size":{"enum":[1,2,null]},"kind":{"const":"box"},
                          "many":{"type":"array","items":{"$ref":"#/$defs/Colour"}}}});
        assert!(check_arguments(&schema, &args(json!({"colour": "red", "size": 2.0, "kind": "box", "many": ["green"]}))).is_ok());
        assert!(check_arguments(&schema, &args(json!({"size": null}))).is_ok());
        assert_eq!(
            check_arguments(&schema, &args(json!({"colour": "mauve"}))).unwrap_err(),
            r#"argument 'colour' must be one of "red", "green", got "mauve""#
        );
        assert_eq!(check_arguments(&schema, &args(json!({"size": 3}))).unwrap_err(), "argument 'size' must be one of 1, 2, null, got 3");
        assert_eq!(
            check_arguments(&schema, &args(json!({"kind": "bag"}))).unwrap_err(),
            r#"argument 'kind' must be one of "box", got "bag""#
        );
        assert_eq!(
            check_arguments(&schema, &args(json!({"many": ["red", "blue"]}))).unwrap_err(),
            r#"argument 'many[1]' must be one of "red", "green", got "blue""#
        );
    }

    #[test]
    fn integers_beyond_64_bits_are_refused_not_rounded() {
        let schema = json!({"type":"object","properties":{"n":{"type":"integer"},"x":{"type":"number"},"m":{"type":["integer","null"]}}});
        let parsed = |text: &str| -> Map<String, Value> { serde_json::from_str(text).unwrap() };
        for fits in [r#"{"n": 18446744073709551615}"#, r#"{"n": -9223372036854775808}"#, r#"{"n": 3.0}"#, r#"{"n": 1e15}"#] {
            assert!(check_arguments(&schema, &parsed(fits)).is_ok(), "{fits}");
        }
        let limits = "integers must be written without a fraction or exponent and lie within -9223372036854775808..=18446744073709551615";
        for (text, shown) in [
            (r#"{"n": 123456789012345678901234567890}"#, "1.2345678901234568e29"),
            (r#"{"n": 18446744073709551616}"#, "1.8446744073709552e19"),
            (r#"{"n": -9223372036854775809}"#, "-9.223372036854776e18"),
            (r#"{"n": 1e30}"#, "1e30"),
            (r#"{"m": 1.2345678901234568e+29}"#, "1.2345678901234568e29"),
        ] {
            let name = if text.contains("\"m\"") { "m" } else { "n" };
            let refused = check_arguments(&schema, &parsed(text)).unwrap_err();
            let types = if name == "m" { "integer or null" } else { "integer" };
            assert_eq!(
                refused,
                format!("argument '{name}' must be of type {types}, got {shown}, an integer too large to carry exactly: {limits}"),
                "{text}"
            );
        }
        assert!(check_arguments(&schema, &parsed(r#"{"x": 123456789012345678901234567890}"#)).is_ok(), "a number may be a float");
        assert_eq!(check_arguments(&schema, &parsed(r#"{"n": 1.5}"#)).unwrap_err(), "argument 'n' must be of type integer, got number");
    }
}
