package dev.toolmesh.testkit;

/** A running {@code toolmesh registry} process. */
public record Registry(ManagedProcess process, String url) {}
