/**
 * The ES module entry point (`import ... from "toolmesh"`). The implementation is the CommonJS
 * build (`require("toolmesh")`); re-exporting it, rather than compiling a second copy, keeps one
 * instance of the module state (the request-context store, the error classes) in a process that
 * loads toolmesh both ways.
 */

export * from "./index.js";
