package dev.toolmesh;

/**
 * The native library's testing hooks (bindings-java/src/testing.rs). Declared only here, in the
 * test sources: they are exported by the library the jar ships, but no class of the jar calls them.
 */
final class NativeTesting {
    static {
        Native.ensureLoaded();
    }

    private NativeTesting() {}

    /** Panics inside a native method. */
    static native void panicInEntry();

    /** Panics in a core task whose outcome is delivered to {@code Native.onCallDone(callId, ...)}. */
    static native void panicInTask(long callId);

    /** Runs {@code task} on one of core's runtime threads (an exception it throws is only printed). */
    static native void runOnCoreThread(Runnable task);

    /** The threads the library has attached to the JVM and not detached. */
    static native long threadsAttached();
}
