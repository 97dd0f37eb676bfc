/**
 * The configuration file as text: parse YAML into a desired catalog with the
 * position of every entry, locate problems at line and column, and write the
 * current catalog back as YAML that parses to the same thing. No IO.
 */
import { Document, LineCounter, isAlias, isMap, isNode, isScalar, isSeq, parseDocument, visit, type Node } from "yaml";
import type { z } from "zod";
import { policySpec, type PolicySpec } from "../../contract/catalog.js";
import {
  CONFIG_SECTIONS,
  DEFAULT_IDENTITY,
  configFileTop,
  type ConfigProblem,
  type ConfigSection,
} from "../../contract/catalog-api.js";
import { deepEqual, formatPath } from "./catalog.plan.rules.js";
import { configTimeToIso, isoToConfigTime, sortedSet } from "./catalog.rules.js";
import type {
  CatalogState,
  CurrentEligibility,
  DesiredCatalog,
  EligibilityState,
  Kind,
  Located,
  Path,
  PathProblem,
  ReviewState,
} from "./catalog.types.js";

export const API_VERSION = "stint/v1";

const KIND_OF_SECTION: Record<ConfigSection, Kind> = {
  groups: "group",
  policies: "policy",
  targets: "target",
  roles: "role",
  eligibility: "eligibility",
  reviews: "review",
};

export interface ParsedConfig {
  /** What the valid entries ask for (entries with problems are left out). */
  desired: DesiredCatalog;
  /** Problems found by parsing and by the schema. */
  problems: ConfigProblem[];
  /** The text is not a YAML mapping at all: there is nothing further to check. */
  fatal: boolean;
  /** Names of entries the schema refused, so that references to them are not reported as unknown. */
  invalidNames: Partial<Record<Kind, Set<string>>>;
  /** Places a problem found later (checkConfig) at its line and column. */
  locate(problem: PathProblem): ConfigProblem;
}

/** Parses a configuration file. Never throws: everything wrong is in `problems`. */
export function parseConfig(text: string): ParsedConfig {
  const lineCounter = new LineCounter();
  // logLevel "error": the library's warnings go to process.emitWarning (stderr, past the problem
  // list); what they warn about is reported as a problem below instead.
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true, logLevel: "error" });
  const locate = (problem: PathProblem): ConfigProblem => {
    const { line, col } = lineCounter.linePos(offsetOf(doc, problem.path, problem.atKey ?? false));
    return { line, column: col, path: formatPath(problem.path), message: problem.message };
  };
  const result: ParsedConfig = { desired: { prune: false }, problems: [], fatal: true, invalidNames: {}, locate };

  if (doc.errors.length > 0) {
    result.problems = doc.errors.map((error) => {
      const { line, col } = lineCounter.linePos(error.pos[0]);
      const message =
        error.code === "MULTIPLE_DOCS"
          ? "a configuration file is a single YAML document (no second ---)"
          : lowerFirst(error.message);
      return { line, column: col, path: "", message };
    });
    return result;
  }
  // A key that is a mapping or a list (`? [a, b]`) means nothing in this file; JavaScript objects
  // would turn it into the string "[ a, b ]" (found by fuzzing, fuzz/README.md).
  const keyProblems: ConfigProblem[] = [];
  visit(doc, {
    Pair(_, pair) {
      const key = isAlias(pair.key) ? pair.key.resolve(doc) : pair.key;
      if (!isMap(key) && !isSeq(key)) return;
      const { line, col } = lineCounter.linePos(isNode(pair.key) ? (pair.key.range?.[0] ?? 0) : 0);
      keyProblems.push({
        line,
        column: col,
        path: "",
        message: "a key must be a plain value, not a mapping or a list",
      });
    },
  });
  if (keyProblems.length > 0) {
    result.problems = keyProblems;
    return result;
  }
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 100 });
  } catch (error) {
    result.problems.push({ line: 1, column: 1, path: "", message: lowerFirst((error as Error).message) });
    return result;
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    result.problems.push({
      line: 1,
      column: 1,
      path: "",
      message: `the file must be a mapping that starts with apiVersion: ${API_VERSION}`,
    });
    return result;
  }

  result.fatal = false;
  const pathProblems: PathProblem[] = [];
  const top = configFileTop.safeParse(raw);
  if (!top.success) pathProblems.push(...zodProblems(top.error, [], raw));
  const record = raw as Record<string, unknown>;
  result.desired.prune = record.prune === true;

  for (const section of Object.keys(CONFIG_SECTIONS) as ConfigSection[]) {
    const items = record[section];
    if (!Array.isArray(items)) continue; // absent, or reported by the top-level schema
    const kind = KIND_OF_SECTION[section];
    const entries: unknown[] = [];
    items.forEach((item, index) => {
      const at: Path = [section, index];
      const parsed = CONFIG_SECTIONS[section].safeParse(item);
      if (parsed.success) {
        entries.push(...toDesired(section, parsed.data, at));
        return;
      }
      pathProblems.push(...zodProblems(parsed.error, at, item));
      const name = (item as { name?: unknown } | null)?.name;
      if (typeof name === "string") (result.invalidNames[kind] ??= new Set()).add(name);
    });
    (result.desired as unknown as Record<string, unknown[]>)[section] = entries;
  }
  result.problems = pathProblems.map(locate);
  return result;
}

/** Sorts problems by position, for people reading them top to bottom. */
export function sortProblems(problems: ConfigProblem[]): ConfigProblem[] {
  return [...problems].sort((a, b) => a.line - b.line || a.column - b.column || a.path.localeCompare(b.path));
}

function toDesired(section: ConfigSection, data: unknown, at: Path): Located[] {
  switch (section) {
    case "groups": {
      const g = data as z.output<(typeof CONFIG_SECTIONS)["groups"]>;
      return [
        {
          name: g.name,
          description: g.description ?? null,
          members: sortedSet(g.members),
          at,
          refsAt: refsAt(g.members, [...at, "members"]),
        } as Located,
      ];
    }
    case "policies": {
      const { name, description, ...spec } = data as z.output<(typeof CONFIG_SECTIONS)["policies"]>;
      return [{ name, description: description ?? null, spec: policySpec.parse(spec), at } as Located];
    }
    case "targets": {
      const t = data as z.output<(typeof CONFIG_SECTIONS)["targets"]>;
      return [
        {
          name: t.name,
          kind: t.kind,
          address: t.address ?? null,
          labels: t.labels,
          credential: t.credential?.secret ?? null,
          identity: t.identity ?? DEFAULT_IDENTITY,
          options: t.options,
          at,
        } as Located,
      ];
    }
    case "roles": {
      const r = data as z.output<(typeof CONFIG_SECTIONS)["roles"]>;
      return [
        {
          name: r.name,
          description: r.description ?? null,
          target: r.target,
          policy: r.policy,
          risk: r.risk,
          owners: sortedSet(r.owners),
          entitlement: r.entitlement,
          at,
          refsAt: refsAt(r.owners, [...at, "owners"]),
        } as Located,
      ];
    }
    case "eligibility": {
      const e = data as z.output<(typeof CONFIG_SECTIONS)["eligibility"]>;
      const common = {
        role: e.role,
        from: e.from === undefined ? undefined : configTimeToIso(e.from, "from"),
        until: e.until === undefined ? null : configTimeToIso(e.until, "until"),
        reason: e.reason ?? null,
        at,
      };
      const subjects = (kind: "user" | "group", names: string[], list: string) =>
        names.map((subject, i): EligibilityState & Located => ({
          ...common,
          subjectKind: kind,
          subject,
          refsAt: { [subject]: [...at, list, i] },
        }));
      return [...subjects("user", e.users, "users"), ...subjects("group", e.groups, "groups")];
    }
    case "reviews": {
      const r = data as z.output<(typeof CONFIG_SECTIONS)["reviews"]>;
      return [{ ...reviewState(r), at } as Located];
    }
  }
}

/** A `reviews:` entry as the plan compares it: lists sorted, absent optional fields null. */
export function reviewState(r: z.output<(typeof CONFIG_SECTIONS)["reviews"]>): ReviewState {
  const scope: Record<string, unknown> = {};
  for (const key of ["roles", "targets", "groups", "risk"] as const)
    if (r.scope[key]?.length) scope[key] = sortedSet(r.scope[key]);
  const reviewers: Record<string, unknown> = {};
  if (r.reviewers.owners) reviewers.owners = true;
  if (r.reviewers.manager) reviewers.manager = true;
  if (r.reviewers.groups?.length) reviewers.groups = sortedSet(r.reviewers.groups);
  if (r.reviewers.fallback) reviewers.fallback = r.reviewers.fallback;
  return {
    name: r.name,
    every: r.every,
    duration: r.duration,
    scope,
    reviewers,
    remindEvery: r.remindEvery ?? null,
    escalateTo: r.escalateTo ?? null,
    onMissed: r.onMissed ?? null,
  };
}

function refsAt(names: string[], path: Path): Record<string, Path> {
  const out: Record<string, Path> = {};
  names.forEach((name, i) => (out[name] ??= [...path, i]));
  return out;
}

function lowerFirst(text: string): string {
  return text.charAt(0).toLowerCase() + text.slice(1);
}

function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let value = root;
  for (const segment of path) {
    if (typeof value !== "object" || value === null) return undefined;
    value = (value as Record<PropertyKey, unknown>)[segment];
  }
  return value;
}

/** zod issues as path problems: unknown fields one by one, missing fields as "is required". */
function zodProblems(error: z.ZodError, prefix: Path, input: unknown): PathProblem[] {
  const problems: PathProblem[] = [];
  for (const issue of error.issues) {
    const path = issue.path.filter((p): p is string | number => typeof p !== "symbol");
    if (issue.code === "unrecognized_keys") {
      for (const key of issue.keys)
        problems.push({ path: [...prefix, ...path, key], message: "unknown field", atKey: true });
      continue;
    }
    // A refinement may point at an absent field on purpose ("onTimeout: escalate needs escalateTo"): keep its words.
    const missing = issue.code !== "custom" && path.length > 0 && valueAt(input, path) === undefined;
    problems.push({ path: [...prefix, ...path], message: missing ? "is required" : lowerFirst(issue.message) });
  }
  return problems;
}

/** The source offset of a path: the deepest node that exists along it. */
function offsetOf(doc: Document, path: Path, atKey: boolean): number {
  let node: unknown = doc.contents;
  let offset = (node as Node | null)?.range?.[0] ?? 0;
  for (const [index, segment] of path.entries()) {
    if (isAlias(node)) node = node.resolve(doc);
    if (isMap(node)) {
      const pair = node.items.find((item) => (isScalar(item.key) ? item.key.value : item.key) === segment);
      if (!pair) break;
      const key = pair.key as Node | null;
      const value = pair.value as Node | null;
      const emptyValue = !isNode(value) || (isScalar(value) && value.value === null && !value.source);
      if ((atKey && index === path.length - 1) || emptyValue) {
        offset = key?.range?.[0] ?? offset;
        break;
      }
      node = value;
      offset = value?.range?.[0] ?? offset;
    } else if (isSeq(node) && typeof segment === "number") {
      const item = node.items[segment] as Node | undefined;
      if (!item) break;
      node = item;
      offset = item.range?.[0] ?? offset;
    } else {
      break;
    }
  }
  return offset;
}

// ---------------------------------------------------------------------------
// Export

const DEFAULT_SPEC: PolicySpec = policySpec.parse({});

type Approvers = { groups: string[]; users: string[]; manager: boolean };

function minimizeApprovers(set: Approvers): Record<string, unknown> {
  return {
    ...(set.groups.length > 0 ? { groups: set.groups } : {}),
    ...(set.users.length > 0 ? { users: set.users } : {}),
    ...(set.manager ? { manager: true } : {}),
  };
}

function withoutDefaults(value: Record<string, unknown>, defaults: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(value).filter(([key, v]) => v !== undefined && !deepEqual(v, defaults[key])),
  );
}

/** A policy spec without the values that are defaults anyway: what a person would write. */
export function minimizeSpec(spec: PolicySpec): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(spec)) {
    if (value === undefined) continue;
    switch (key) {
      case "mfa":
      case "justification": {
        const kept = withoutDefaults(value as Record<string, unknown>, DEFAULT_SPEC[key] as Record<string, unknown>);
        if (Object.keys(kept).length > 0) out[key] = kept;
        break;
      }
      case "approval": {
        // The approver MFA rule is kept whole: `{}` would mean required at every tier, absent only at critical.
        const mfa = spec.approval.mfa;
        if (spec.approval.stages.length === 0 && mfa === undefined) break;
        out.approval = {
          stages: spec.approval.stages.map((stage) => ({
            ...(stage.name !== undefined ? { name: stage.name } : {}),
            approvers: minimizeApprovers(stage.approvers),
            ...(stage.count !== 1 ? { count: stage.count } : {}),
            ...(stage.timeout !== undefined ? { timeout: stage.timeout } : {}),
            ...(stage.onTimeout !== "deny" ? { onTimeout: stage.onTimeout } : {}),
            ...(stage.escalateTo !== undefined ? { escalateTo: minimizeApprovers(stage.escalateTo) } : {}),
          })),
          ...(spec.approval.sameApproverAcrossStages ? { sameApproverAcrossStages: true } : {}),
          ...(mfa !== undefined ? { mfa } : {}),
        };
        break;
      }
      case "outsideWindowApprovers":
        out[key] = minimizeApprovers(value as Approvers);
        break;
      default:
        if (!deepEqual(value, (DEFAULT_SPEC as Record<string, unknown>)[key])) out[key] = value;
    }
  }
  return out;
}

function eligibilityEntries(rows: CurrentEligibility[]): Record<string, unknown>[] {
  const entries = new Map<string, { head: Record<string, unknown>; users: string[]; groups: string[] }>();
  for (const row of rows) {
    const from = row.fromChosen ? isoToConfigTime(row.from, "from") : undefined;
    const until = row.until === null ? undefined : isoToConfigTime(row.until, "until");
    const key = JSON.stringify([row.role, from ?? "", until ?? "", row.reason ?? ""]);
    let entry = entries.get(key);
    if (!entry) {
      entry = { head: { role: row.role }, users: [], groups: [] };
      entries.set(key, entry);
      if (from !== undefined) entry.head.from = from;
      if (until !== undefined) entry.head.until = until;
      if (row.reason !== null) entry.head.reason = row.reason;
    }
    (row.subjectKind === "user" ? entry.users : entry.groups).push(row.subject);
  }
  return [...entries.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([, { head, users, groups }]) => {
      const { role, ...rest } = head;
      return {
        role,
        ...(users.length > 0 ? { users: sortedSet(users) } : {}),
        ...(groups.length > 0 ? { groups: sortedSet(groups) } : {}),
        ...rest,
      };
    });
}

const byName = <T extends { name: string }>(a: T, b: T) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

/** The catalog as a configuration file: sections and entries in a stable order, defaults left out. */
export function renderConfig(state: CatalogState): string {
  const file = {
    apiVersion: API_VERSION,
    groups: [...state.groups].sort(byName).map((g) => ({
      name: g.name,
      ...(g.description !== null ? { description: g.description } : {}),
      members: sortedSet(g.members),
    })),
    policies: [...state.policies].sort(byName).map((p) => ({
      name: p.name,
      ...(p.description !== null ? { description: p.description } : {}),
      ...minimizeSpec(p.spec),
    })),
    targets: [...state.targets].sort(byName).map((t) => ({
      name: t.name,
      kind: t.kind,
      ...(t.address !== null ? { address: t.address } : {}),
      ...(Object.keys(t.labels).length > 0 ? { labels: sortKeys(t.labels) } : {}),
      ...(t.credential !== null ? { credential: { secret: t.credential } } : {}),
      ...(t.identity.template !== DEFAULT_IDENTITY.template || Object.keys(t.identity.map).length > 0
        ? {
            identity: {
              template: t.identity.template,
              ...(Object.keys(t.identity.map).length > 0 ? { map: sortKeys(t.identity.map) } : {}),
            },
          }
        : {}),
      ...(Object.keys(t.options).length > 0 ? { options: sortKeys(t.options) } : {}),
    })),
    roles: [...state.roles].sort(byName).map((r) => ({
      name: r.name,
      ...(r.description !== null ? { description: r.description } : {}),
      target: r.target,
      policy: r.policy,
      risk: r.risk,
      ...(r.owners.length > 0 ? { owners: sortedSet(r.owners) } : {}),
      ...(Object.keys(r.entitlement).length > 0 ? { entitlement: sortKeys(r.entitlement) } : {}),
    })),
    eligibility: eligibilityEntries(state.eligibility),
    // Only when there is one: files of catalogs without access reviews stay as they were.
    ...(state.reviews?.length
      ? {
          reviews: [...state.reviews].sort(byName).map((r) => ({
            name: r.name,
            every: r.every,
            duration: r.duration,
            ...(Object.keys(r.scope).length > 0 ? { scope: sortKeys(r.scope) } : {}),
            reviewers: sortKeys(r.reviewers),
            ...(r.remindEvery !== null ? { remindEvery: r.remindEvery } : {}),
            ...(r.escalateTo !== null ? { escalateTo: r.escalateTo } : {}),
            ...(r.onMissed !== null ? { onMissed: r.onMissed } : {}),
          })),
        }
      : {}),
  };
  const doc = new Document(file);
  // Short lists of names read best on one line: members: [alice, bob].
  visit(doc, {
    Seq(_key, node) {
      if (node.items.length > 0 && node.items.length <= 8 && node.items.every((item) => isScalar(item))) {
        node.flow = true;
      }
    },
  });
  return doc.toString({ lineWidth: 0, flowCollectionPadding: false });
}

/** The same value with object keys sorted at every depth (jsonb keeps its own key order). */
function sortKeys<T>(value: T): T {
  if (Array.isArray(value)) return value.map(sortKeys) as T;
  if (typeof value !== "object" || value === null) return value;
  return Object.fromEntries(
    Object.entries(value)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([k, v]) => [k, sortKeys(v)]),
  ) as T;
}
