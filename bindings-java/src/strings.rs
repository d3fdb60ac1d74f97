//! Java strings (one, an optional one, or an array of them) read into Rust strings, the way every
//! native method that takes text reads it.

use jni::objects::{JObjectArray, JString};
use jni::JNIEnv;

/// The text of a Java string.
pub(crate) fn string(env: &mut JNIEnv, value: &JString) -> jni::errors::Result<String> {
    Ok(env.get_string(value)?.into())
}

/// The text of a Java string that may be null (None).
pub(crate) fn optional_string(env: &mut JNIEnv, value: &JString) -> jni::errors::Result<Option<String>> {
    if value.is_null() {
        return Ok(None);
    }
    string(env, value).map(Some)
}

/// The texts of a Java `String[]`, in order.
pub(crate) fn string_array(env: &mut JNIEnv, array: &JObjectArray) -> jni::errors::Result<Vec<String>> {
    let length = env.get_array_length(array)?;
    let mut strings = Vec::with_capacity(usize::try_from(length).unwrap_or_default());
    for index in 0..length {
        let element = JString::from(env.get_object_array_element(array, index)?);
        strings.push(string(env, &element)?);
        env.delete_local_ref(element)?;
    }
    Ok(strings)
}
