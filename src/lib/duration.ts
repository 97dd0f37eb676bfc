/** Durations are written like `30s`, `15m`, `2h`, `1d` everywhere; this is the one parser. */
const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
const PATTERN = /^(\d{1,9})(ms|s|m|h|d)$/;

export function parseDuration(text: string): number {
  const match = PATTERN.exec(text.trim());
  if (!match) throw new RangeError(`"${text}" is not a duration; write it like 30s, 15m, 2h or 1d`);
  const [, amount, unit] = match as unknown as [string, string, keyof typeof UNIT_MS];
  return Number(amount) * UNIT_MS[unit];
}

export function formatDuration(ms: number): string {
  for (const unit of ["d", "h", "m", "s"] as const) {
    if (ms >= UNIT_MS[unit] && ms % UNIT_MS[unit] === 0) return `${ms / UNIT_MS[unit]}${unit}`;
  }
  return `${ms}ms`;
}
