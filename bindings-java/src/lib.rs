//! JNI library for the Java binding (in progress).
