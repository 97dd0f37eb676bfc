import { pino, type Logger, type DestinationStream } from "pino";

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

export function createLogger(options: { level?: string; destination?: DestinationStream } = {}): Logger {
  return pino(
    {
      level: options.level ?? "info",
      redact: { paths: REDACT_PATHS, censor: "[redacted]" },
      base: { service: "stint" },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    options.destination,
  );
}
