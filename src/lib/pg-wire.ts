/**
 * A socket-free PostgreSQL v3 wire-protocol codec: buffers in, typed messages out,
 * and the encoders a proxy needs, for both directions. Plus a SCRAM-SHA-256 client.
 */
export * from "./pg-wire/errors.js";
export * from "./pg-wire/frontend.js";
export * from "./pg-wire/backend.js";
export * from "./pg-wire/reader.js";
export * from "./pg-wire/scram.js";
