/**
 * Reading the server's public `/metrics` (Prometheus text exposition format 0.0.4) in the browser:
 * parse the samples, sum a metric across its label sets, and estimate quantiles from a histogram's
 * cumulative buckets the way PromQL's `histogram_quantile` does. Pure: text in, numbers out.
 */

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

function parseValue(text: string): number {
  if (text === "+Inf" || text === "Inf") return Infinity;
  if (text === "-Inf") return -Infinity;
  if (text === "NaN") return NaN;
  const value = Number(text);
  return Number.isNaN(value) ? NaN : value;
}

/** `{a="x",b="y \"q\""}` from `start` (the `{`): the labels and the index after `}`. */
function parseLabels(line: string, start: number): { labels: Record<string, string>; end: number } | null {
  const labels: Record<string, string> = {};
  let i = start + 1;
  for (;;) {
    while (line[i] === " " || line[i] === ",") i++;
    if (line[i] === "}") return { labels, end: i + 1 };
    const eq = line.indexOf("=", i);
    if (eq < 0 || line[eq + 1] !== '"') return null;
    const key = line.slice(i, eq).trim();
    let value = "";
    let j = eq + 2;
    for (; j < line.length && line[j] !== '"'; j++) {
      if (line[j] === "\\" && j + 1 < line.length) {
        const next = line[++j];
        value += next === "n" ? "\n" : next;
      } else value += line[j];
    }
    if (j >= line.length) return null;
    labels[key] = value;
    i = j + 1;
  }
}

/** Every sample of the text; comment lines and malformed lines are skipped. */
export function parsePrometheus(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const brace = line.indexOf("{");
    const space = line.indexOf(" ");
    let name: string;
    let labels: Record<string, string> = {};
    let rest: string;
    if (brace >= 0 && (space < 0 || brace < space)) {
      name = line.slice(0, brace);
      const parsed = parseLabels(line, brace);
      if (!parsed) continue;
      labels = parsed.labels;
      rest = line.slice(parsed.end).trim();
    } else {
      if (space < 0) continue;
      name = line.slice(0, space);
      rest = line.slice(space + 1).trim();
    }
    const valueText = rest.split(/\s+/)[0] ?? "";
    if (!name || !valueText) continue;
    samples.push({ name, labels, value: parseValue(valueText) });
  }
  return samples;
}

/** The sum of a metric's samples whose labels include `match`; 0 when there are none. */
export function sumMetric(samples: Sample[], name: string, match: Record<string, string> = {}): number {
  let total = 0;
  for (const s of samples) {
    if (s.name !== name) continue;
    if (Object.entries(match).some(([k, v]) => s.labels[k] !== v)) continue;
    if (Number.isFinite(s.value)) total += s.value;
  }
  return total;
}

/** A metric's values summed per value of one label (`target` → count), largest first. */
export function sumByLabel(
  samples: Sample[],
  name: string,
  label: string,
  match: Record<string, string> = {},
): { key: string; value: number }[] {
  const out = new Map<string, number>();
  for (const s of samples) {
    if (s.name !== name) continue;
    if (Object.entries(match).some(([k, v]) => s.labels[k] !== v)) continue;
    if (!Number.isFinite(s.value)) continue;
    const key = s.labels[label] ?? "";
    out.set(key, (out.get(key) ?? 0) + s.value);
  }
  return [...out]
    .map(([key, value]) => ({ key, value }))
    .sort((a, b) => b.value - a.value || a.key.localeCompare(b.key));
}

export interface Histogram {
  /** Cumulative counts by upper bound, ascending, the last one `Infinity`. */
  buckets: { le: number; count: number }[];
  count: number;
  sum: number;
}

/** A histogram summed over all its label sets (causes, kinds…); null when the family has no samples. */
export function readHistogram(samples: Sample[], name: string): Histogram | null {
  const byLe = new Map<number, number>();
  let seen = false;
  for (const s of samples) {
    if (s.name !== `${name}_bucket`) continue;
    const le = parseValue(s.labels.le ?? "");
    if (Number.isNaN(le) || !Number.isFinite(s.value)) continue;
    seen = true;
    byLe.set(le, (byLe.get(le) ?? 0) + s.value);
  }
  if (!seen) return null;
  const buckets = [...byLe].map(([le, count]) => ({ le, count })).sort((a, b) => a.le - b.le);
  const count = hasSample(samples, `${name}_count`)
    ? sumMetric(samples, `${name}_count`)
    : (buckets[buckets.length - 1]?.count ?? 0);
  return { buckets, count, sum: sumMetric(samples, `${name}_sum`) };
}

function hasSample(samples: Sample[], name: string): boolean {
  return samples.some((s) => s.name === name);
}

/**
 * The q-quantile (0 < q < 1) estimated from cumulative buckets by linear interpolation inside the
 * bucket that holds the rank, as PromQL's histogram_quantile: the first bucket starts at 0; a rank in
 * the +Inf bucket answers the highest finite bound. Null when the histogram holds no observations.
 */
export function histogramQuantile(histogram: Histogram | null, q: number): number | null {
  if (!histogram) return null;
  const buckets = histogram.buckets;
  const total = buckets[buckets.length - 1]?.count ?? 0;
  if (total <= 0 || q < 0 || q > 1) return null;
  const rank = q * total;
  let lowerBound = 0;
  let lowerCount = 0;
  for (const bucket of buckets) {
    if (bucket.count >= rank) {
      if (bucket.le === Infinity) return lowerBound;
      const inBucket = bucket.count - lowerCount;
      if (inBucket <= 0) return bucket.le;
      return lowerBound + (bucket.le - lowerBound) * ((rank - lowerCount) / inBucket);
    }
    lowerBound = bucket.le;
    lowerCount = bucket.count;
  }
  return lowerBound;
}

/** The figures the dashboards show, read from one scrape. */
export interface MetricFigures {
  /** Open "unexpected" drift findings: privilege at a target without an activation (standing access). */
  standing: number;
  standingByTarget: { key: string; value: number }[];
  /** Open "missing" drift findings: an activation whose privilege is absent at the target. */
  missing: number;
  grantsUnsettled: number;
  grantsStuck: number;
  revocation: Histogram | null;
  sessionKill: Histogram | null;
  sessionsLive: number;
  outboxDepth: number;
  outboxOldestAgeSeconds: number;
  outboxDeadLetters: number;
}

export function metricFigures(samples: Sample[]): MetricFigures {
  return {
    standing: sumMetric(samples, "stint_privilege_drift", { kind: "unexpected" }),
    standingByTarget: sumByLabel(samples, "stint_privilege_drift", "target", { kind: "unexpected" }),
    missing: sumMetric(samples, "stint_privilege_drift", { kind: "missing" }),
    grantsUnsettled: sumMetric(samples, "stint_grants_unsettled"),
    grantsStuck: sumMetric(samples, "stint_grants_stuck"),
    revocation: readHistogram(samples, "stint_revocation_latency_seconds"),
    sessionKill: readHistogram(samples, "stint_session_kill_latency_seconds"),
    sessionsLive: sumMetric(samples, "stint_sessions_live"),
    outboxDepth: sumMetric(samples, "stint_outbox_depth"),
    outboxOldestAgeSeconds: sumMetric(samples, "stint_outbox_oldest_age_seconds"),
    outboxDeadLetters: sumMetric(samples, "stint_outbox_dead_letters_total"),
  };
}

/**
 * Observations per bucket (not cumulative), for a bar chart: `upTo` is the bucket's upper bound in
 * seconds (Infinity for the last), `count` the observations above the previous bound and up to it.
 */
export function bucketCounts(histogram: Histogram | null): { upTo: number; count: number }[] {
  if (!histogram) return [];
  let previous = 0;
  return histogram.buckets.map((b) => {
    const count = Math.max(0, b.count - previous);
    previous = b.count;
    return { upTo: b.le, count };
  });
}

/** Whether the q-quantile lies beyond the highest finite bucket bound (the estimate is then a lower bound). */
export function quantileBeyondLastBound(histogram: Histogram | null, q: number): boolean {
  if (!histogram) return false;
  const finite = histogram.buckets.filter((b) => b.le !== Infinity);
  const total = histogram.buckets[histogram.buckets.length - 1]?.count ?? 0;
  const lastFinite = finite[finite.length - 1]?.count ?? 0;
  return total > 0 && q * total > lastFinite;
}
