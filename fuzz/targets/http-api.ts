/**
 * The HTTP API, schema-driven from its own OpenAPI document: every operation gets bodies and query
 * strings generated from its JSON schemas (valid, missing a required field, with an unknown field,
 * or raw mutated bytes), with the administrator's token, none, or a forged one.
 * Input layout: operation index (2 bytes), flags (bits 0-1: 0 admin, 1 no token, 2 forged token),
 * path-parameter length (1 byte) and bytes, query length (2 bytes) and bytes, then the body.
 * Property: every answer is a success or the error envelope with a registered code; never a 500,
 * never a stack trace. Runs against a real server (testServer, PGlite).
 */
import fc from "fast-check";
import { ERROR_CODES } from "../../src/lib/errors.js";
import { testServer, type TestServer } from "../../src/testing/server.js";
import { expect, feature, type AsyncFuzzTarget, type ValidInput } from "../harness.js";

interface Operation {
  method: string;
  path: string;
  body: JsonSchema | undefined;
  query: JsonSchema | undefined;
}

interface JsonSchema {
  type?: string | string[];
  properties?: Record<string, JsonSchema>;
  required?: string[];
  items?: JsonSchema;
  enum?: unknown[];
  const?: unknown;
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
  allOf?: JsonSchema[];
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  minItems?: number;
  maxItems?: number;
  pattern?: string;
  format?: string;
}

/**
 * Left out: they end the fuzzing session itself (sign out, seal the vault, change the admin's
 * password) or call out to the network (a target test, discovery, rotation, reconcile), which is
 * the connectors' and SSRF tests' business and would make executions wait on timeouts.
 */
const SKIPPED = [
  "POST /v1/auth/logout",
  "POST /v1/operator/seal",
  "POST /v1/operator/rotate-key",
  "POST /v1/me/password",
  "POST /v1/targets/{ref}/test",
  "GET /v1/targets/{ref}/discovery",
  "POST /v1/secrets/{path}/rotate",
  "POST /v1/reconcile",
];

interface Context {
  server: TestServer;
  operations: Operation[];
}

async function setup(): Promise<Context> {
  const server = await testServer("pglite");
  const response = await server.app.inject({ method: "GET", url: "/openapi.json" });
  const doc = response.json<{
    paths: Record<
      string,
      Record<
        string,
        {
          requestBody?: { content?: Record<string, { schema?: JsonSchema }> };
          parameters?: { in: string; name: string; required?: boolean; schema?: JsonSchema }[];
        }
      >
    >;
  }>();
  const operations: Operation[] = [];
  for (const [path, methods] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      if (SKIPPED.includes(`${method.toUpperCase()} ${path}`)) continue;
      const queryParams = (op.parameters ?? []).filter((p) => p.in === "query");
      const query: JsonSchema | undefined =
        queryParams.length === 0
          ? undefined
          : {
              type: "object",
              properties: Object.fromEntries(queryParams.map((p) => [p.name, p.schema ?? {}])),
              required: queryParams.filter((p) => p.required).map((p) => p.name),
            };
      operations.push({
        method: method.toUpperCase(),
        path,
        body: op.requestBody?.content?.["application/json"]?.schema,
        query,
      });
    }
  }
  return { server, operations };
}

function decode(context: Context, input: Buffer) {
  const operation = context.operations[(input.length >= 2 ? input.readUInt16BE(0) : 0) % context.operations.length];
  const flags = input[2] ?? 0;
  const paramLength = input[3] ?? 0;
  const param = input.subarray(4, 4 + paramLength);
  const queryAt = 4 + paramLength;
  const queryLength = input.length >= queryAt + 2 ? input.readUInt16BE(queryAt) : 0;
  const query = input.subarray(queryAt + 2, queryAt + 2 + queryLength);
  const body = input.subarray(queryAt + 2 + queryLength);
  return {
    operation: operation as Operation,
    flags,
    param: param.toString("utf8"),
    query: query.toString("utf8"),
    body,
  };
}

async function check(context: Context, input: Buffer): Promise<void> {
  const { operation, flags, param, query, body } = decode(context, input);
  const path = operation.path.replace(/\{[^}]+\}/g, () => encodeURIComponent(param === "" ? "x" : param));
  const auth = flags % 3;
  const headers: Record<string, string> = {};
  if (auth === 0) headers.authorization = context.server.adminAuth;
  if (auth === 2) headers.authorization = `Bearer ${param}.eyJzdWIiOiJhZG1pbiJ9.AAAA`;
  const hasBody = !["GET", "HEAD", "DELETE"].includes(operation.method) || body.length > 0;
  if (hasBody) headers["content-type"] = "application/json";
  const url = `${path}${query === "" ? "" : `?${query}`}`;
  let response;
  try {
    response = await context.server.app.inject({
      method: operation.method as "GET",
      url,
      headers,
      ...(hasBody ? { payload: body } : {}),
    });
  } catch (error) {
    // light-my-request refuses some URLs itself (before any server code): not the API's finding.
    if (error instanceof TypeError && /URL|header/i.test(error.message)) return;
    throw error;
  }
  const what = `${operation.method} ${url} → ${response.statusCode}`;
  feature(`${operation.method} ${operation.path} ${response.statusCode}`);
  expect(response.statusCode !== 500 && response.statusCode < 600, `${what}: ${response.body.slice(0, 300)}`);
  expect(!/\n\s+at .+:\d+:\d+/.test(response.body), `${what}: a stack trace in the answer`);
  let scimShaped = false;
  if (response.statusCode >= 400 && operation.path.startsWith("/scim/")) {
    // SCIM answers in its own error shape (RFC 7644 §3.12), with the HTTP status as a string — except where the
    // request never reached SCIM (a URL the platform refuses before routing): that is the error envelope.
    let error: { schemas?: unknown; status?: unknown; detail?: unknown } | undefined;
    try {
      error = response.json();
    } catch {
      error = undefined;
    }
    scimShaped = Array.isArray(error?.schemas) && error.schemas[0] === "urn:ietf:params:scim:api:messages:2.0:Error";
    if (scimShaped)
      expect(
        error?.status === String(response.statusCode) && typeof error?.detail === "string",
        `${what}: a SCIM error without its status or detail: ${response.body.slice(0, 300)}`,
      );
  }
  if (response.statusCode >= 400 && !scimShaped) {
    let envelope: { error?: { code?: string; message?: string } } | undefined;
    try {
      envelope = response.json();
    } catch {
      envelope = undefined;
    }
    const code = envelope?.error?.code;
    expect(
      typeof code === "string" && Object.hasOwn(ERROR_CODES, code) && typeof envelope?.error?.message === "string",
      `${what}: not the error envelope: ${response.body.slice(0, 300)}`,
    );
  }
}

/** A JSON value for a schema (depth-limited); `anything` for what the schema does not pin down. */
function arbitraryFor(schema: JsonSchema | undefined, depth = 0): fc.Arbitrary<unknown> {
  const anything = fc.jsonValue({ maxDepth: 2 });
  if (schema === undefined || depth > 4) return anything;
  if (schema.const !== undefined) return fc.constant(schema.const);
  if (schema.enum) return fc.constantFrom(...schema.enum);
  const alternatives = schema.anyOf ?? schema.oneOf;
  if (alternatives && alternatives.length > 0) return fc.oneof(...alternatives.map((s) => arbitraryFor(s, depth + 1)));
  if (schema.allOf && schema.allOf.length > 0) return arbitraryFor(schema.allOf[0], depth + 1);
  const type = Array.isArray(schema.type) ? schema.type[0] : schema.type;
  switch (type) {
    case "object": {
      const properties = schema.properties ?? {};
      const keys = Object.keys(properties);
      if (keys.length === 0) return fc.dictionary(fc.string({ maxLength: 8 }), anything, { maxKeys: 3 });
      return fc.record(Object.fromEntries(keys.map((k) => [k, arbitraryFor(properties[k], depth + 1)])), {
        requiredKeys: (schema.required ?? []).filter((k) => keys.includes(k)),
      });
    }
    case "array":
      return fc.array(arbitraryFor(schema.items, depth + 1), {
        minLength: Math.min(schema.minItems ?? 0, 4),
        maxLength: Math.min(schema.maxItems ?? 4, 4),
      });
    case "string": {
      if (schema.pattern !== undefined) {
        try {
          return fc.stringMatching(new RegExp(schema.pattern)).filter((s) => s.length <= (schema.maxLength ?? 200));
        } catch {
          // a pattern fast-check cannot generate from: plain strings below
        }
      }
      if (schema.format === "date-time") return fc.date({ noInvalidDate: true }).map((d) => d.toISOString());
      const min = Math.min(schema.minLength ?? 0, 64);
      return fc.string({ minLength: min, maxLength: Math.max(min, Math.min(schema.maxLength ?? 32, 64)) });
    }
    case "integer":
      return fc.integer({ min: schema.minimum ?? -1e6, max: schema.maximum ?? 1e6 });
    case "number":
      return fc.double({ min: schema.minimum ?? -1e6, max: schema.maximum ?? 1e6, noNaN: true });
    case "boolean":
      return fc.boolean();
    case "null":
      return fc.constant(null);
    default:
      return anything;
  }
}

/** Schema-shaped, then sometimes broken: a required field dropped, an unknown one added, a wrong type. */
function bodyFor(schema: JsonSchema | undefined): fc.Arbitrary<unknown> {
  return fc.oneof(
    { weight: 3, arbitrary: arbitraryFor(schema) },
    {
      weight: 1,
      arbitrary: fc.tuple(arbitraryFor(schema), fc.nat(), fc.jsonValue({ maxDepth: 1 })).map(([value, n, junk]) => {
        if (typeof value !== "object" || value === null || Array.isArray(value)) return junk;
        const copy: Record<string, unknown> = { ...(value as Record<string, unknown>) };
        const keys = Object.keys(copy);
        const key = keys[n % Math.max(keys.length, 1)];
        if (key !== undefined && n % 3 === 0) delete copy[key];
        else if (key !== undefined && n % 3 === 1) copy[key] = junk;
        else copy[`unknown${n % 10}`] = junk;
        return copy;
      }),
    },
  );
}

function encodeInput(index: number, flags: number, param: string, query: string, body: Buffer): Buffer {
  const p = Buffer.from(param, "utf8").subarray(0, 255);
  const q = Buffer.from(query, "utf8").subarray(0, 0xffff);
  const head = Buffer.alloc(4);
  head.writeUInt16BE(index, 0);
  head[2] = flags;
  head[3] = p.length;
  const ql = Buffer.alloc(2);
  ql.writeUInt16BE(q.length);
  return Buffer.concat([head, p, ql, q, body]);
}

function valid(context: Context): fc.Arbitrary<ValidInput> {
  const perOperation = context.operations.map((operation, index) =>
    fc
      .tuple(
        fc.constantFrom(0, 0, 0, 1, 2),
        fc.oneof(fc.constantFrom("admin", "x", "../etc", "%00", "stint"), fc.string({ maxLength: 12 })),
        bodyFor(operation.query),
        operation.body
          ? bodyFor(operation.body).map((v) => Buffer.from(JSON.stringify(v) ?? "null", "utf8"))
          : fc.constant(Buffer.alloc(0)),
      )
      .map(([flags, param, query, body]) => {
        const search =
          typeof query === "object" && query !== null && !Array.isArray(query)
            ? new URLSearchParams(
                Object.entries(query as Record<string, unknown>).map(([k, v]): [string, string] => [
                  k,
                  typeof v === "string" ? v : (JSON.stringify(v) ?? ""),
                ]),
              ).toString()
            : "";
        return { bytes: encodeInput(index, flags, param, search, body), verify: () => undefined };
      }),
  );
  return fc.oneof(...perOperation);
}

export const httpApi: AsyncFuzzTarget<Context> = {
  name: "http-api",
  setup,
  check,
  valid,
  teardown: (context) => context.server.cleanup(),
};
