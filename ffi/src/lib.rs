//! C ABI over toolmesh-core (in progress).
