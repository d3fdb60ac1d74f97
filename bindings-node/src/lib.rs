//! Node.js addon (napi-rs) (in progress).
