/** Small shared helpers for pages: formatting, the clock, form errors from zod. */
import { useEffect, useState } from "react";
import type { ZodError } from "zod";

export function useNow(everyMs: number): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), everyMs);
    return () => clearInterval(timer);
  }, [everyMs]);
  return now;
}

/** "1h 04m 09s", "3m 02s", "expired". */
export function formatCountdown(ms: number): string {
  if (ms <= 0) return "expired";
  const total = Math.floor(ms / 1000);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const pad = (n: number) => String(n).padStart(2, "0");
  return h > 0 ? `${h}h ${pad(m)}m ${pad(s)}s` : `${m}m ${pad(s)}s`;
}

/** "4m ago", "2h ago", for waiting times. */
export function formatAge(fromIso: string, now = Date.now()): string {
  const s = Math.max(0, Math.floor((now - Date.parse(fromIso)) / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d`;
}

/** A policy's time window in seconds as policies write it: 900 as "15m", 5400 as "1h 30m". */
export function formatWindow(seconds: number): string {
  const minutes = Math.floor(seconds / 60);
  if (minutes < 1) return `${seconds}s`;
  if (minutes < 60) return `${minutes}m`;
  return minutes % 60 === 0 ? `${minutes / 60}h` : `${Math.floor(minutes / 60)}h ${minutes % 60}m`;
}

export function riskColor(risk: string): string {
  // Dark shades: readable (WCAG AA) as outline badges on white.
  return { low: "gray.8", medium: "yellow.9", high: "orange.9", critical: "red.9" }[risk] ?? "gray.8";
}

export function policyInWords(policy: {
  defaultDuration: string;
  maxDuration: string;
  approvalRequired: boolean;
  approvalStages: number;
  mfaRequired: boolean;
  mfaMethods?: string[] | undefined;
  ticketRequired: boolean;
  breakGlass?: boolean;
}): string {
  const parts = [`up to ${policy.maxDuration} (default ${policy.defaultDuration})`];
  parts.push(
    policy.approvalRequired
      ? `${policy.approvalStages} approval stage${policy.approvalStages === 1 ? "" : "s"}`
      : "no approval needed",
  );
  if (policy.mfaRequired)
    parts.push(policy.mfaMethods && !policy.mfaMethods.includes("totp") ? "passkey (MFA)" : "MFA");
  if (policy.ticketRequired) parts.push("ticket required");
  if (policy.breakGlass) parts.push("break-glass");
  return parts.join(", ");
}

/** A zod error as field → first message ("reason" → "Too small: …"). */
export function zodFieldErrors(error: ZodError): Record<string, string> {
  const out: Record<string, string> = {};
  for (const issue of error.issues) {
    const key = issue.path.join(".");
    if (!out[key]) out[key] = issue.message;
  }
  return out;
}

export function shortTime(iso: string | null): string {
  return iso ? new Date(iso).toLocaleString() : "—";
}
