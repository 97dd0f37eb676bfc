import { pino, destination as pinoDestination, type Logger, type DestinationStream } from "pino";
import { prettyFactory } from "pino-pretty";

/** Paths whose values never reach a log line. */
export const REDACT_PATHS = [
  "password",
  "*.password",
  "newPassword",
  "*.newPassword",
  "token",
  "*.token",
  "accessToken",
  "*.accessToken",
  "refreshToken",
  "*.refreshToken",
  "secret",
  "*.secret",
  "value",
  "*.value",
  "share",
  "*.share",
  "shares",
  "*.shares",
  "code",
  "*.code",
  "otp",
  "*.otp",
  "setupCode",
  "*.setupCode",
  "req.headers.authorization",
  "req.headers.cookie",
  'req.headers["x-csrf-token"]',
  'res.headers["set-cookie"]',
];

export type { Logger };

/**
 * Query parameters whose values never reach a log line, whatever the route: links and hand-made URLs
 * may carry tokens (decision links once did), and the request log writes every URL it is given.
 */
const SENSITIVE_QUERY_PARAMETER =
  /token|link|secret|passw|pwd|key|code|sig|otp|auth|session|jwt|credential|assertion|nonce/i;

/** The URL with every sensitive query parameter's value replaced, and any fragment dropped. */
export function redactUrl(url: string): string {
  const hash = url.indexOf("#");
  const withoutFragment = hash === -1 ? url : url.slice(0, hash);
  const question = withoutFragment.indexOf("?");
  if (question === -1) return withoutFragment;
  const query = withoutFragment
    .slice(question + 1)
    .split("&")
    .map((pair) => {
      const equals = pair.indexOf("=");
      const name = equals === -1 ? pair : pair.slice(0, equals);
      let decoded = name;
      try {
        decoded = decodeURIComponent(name.replace(/\+/g, " "));
      } catch {
        // a badly encoded name is judged as written
      }
      return equals !== -1 && SENSITIVE_QUERY_PARAMETER.test(decoded) ? `${name}=[redacted]` : pair;
    })
    .join("&");
  return `${withoutFragment.slice(0, question)}?${query}`;
}

/** What the request log says of a request: Fastify's fields, with the URL redacted. */
function serializeRequest(request: {
  method?: string;
  url?: string;
  host?: string;
  ip?: string;
  socket?: { remotePort?: number };
}) {
  return {
    method: request.method,
    url: typeof request.url === "string" ? redactUrl(request.url) : request.url,
    host: request.host,
    remoteAddress: request.ip,
    remotePort: request.socket?.remotePort,
  };
}

/** How log lines are written: `auto` is readable on a terminal and JSON lines otherwise. */
export type LogFormat = "auto" | "json" | "pretty";

/** Whether lines go out readable (pretty) rather than as JSON: `auto` follows whether stdout is a terminal. */
export function isPretty(format: LogFormat, stdoutIsTty = process.stdout.isTTY === true): boolean {
  return format === "pretty" || (format === "auto" && stdoutIsTty);
}

/**
 * The readable format: one line per entry (time, level, message, then the fields), written synchronously in
 * this process (no worker thread). Redaction happens before it, as for JSON.
 */
function prettyStream(destination?: DestinationStream): DestinationStream {
  const format = prettyFactory({
    singleLine: true,
    colorize: destination === undefined && process.stdout.isTTY === true,
    translateTime: "SYS:HH:MM:ss.l",
    ignore: "pid,hostname,service",
  });
  const out = destination ?? pinoDestination({ dest: 1, sync: true });
  return {
    write(line: string) {
      out.write(format(line));
    },
  };
}

export function createLogger(
  options: { level?: string; destination?: DestinationStream; format?: LogFormat } = {},
): Logger {
  const pretty = options.format !== undefined && isPretty(options.format);
  return pino(
    {
      level: options.level ?? "info",
      redact: { paths: REDACT_PATHS, censor: "[redacted]" },
      // Fastify adopts these for its request log (they take precedence over its own).
      serializers: { req: serializeRequest },
      base: { service: "stint" },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    pretty ? prettyStream(options.destination) : options.destination,
  );
}
