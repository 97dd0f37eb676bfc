import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { policySpec, type PolicySpec } from "../../contract/catalog.js";
import {
  checkExtension,
  checkJustification,
  checkMfaFreshness,
  describeWindow,
  evaluateWindow,
  windowProblemAtActivation,
  isWithinWindows,
  MIN_DURATION_MS,
  resolveDuration,
  type ActivationWindow,
} from "./policy.rules.js";

const MIN = 60_000;
const HOUR = 3_600_000;
const spec = (input: Record<string, unknown> = {}): PolicySpec => policySpec.parse(input);
const utc = (iso: string) => new Date(iso);

describe("resolveDuration", () => {
  const policy = spec({ defaultDuration: "1h", maxDuration: "8h" });

  it.each([
    [undefined, { ok: true, durationMs: HOUR }],
    ["1m", { ok: true, durationMs: MIN }],
    ["90m", { ok: true, durationMs: 90 * MIN }],
    ["8h", { ok: true, durationMs: 8 * HOUR }],
    [" 2h ", { ok: true, durationMs: 2 * HOUR }],
    ["8h1m", { ok: false, code: "DURATION_INVALID" }],
    ["481m", { ok: false, code: "DURATION_TOO_LONG" }],
    ["1d", { ok: false, code: "DURATION_TOO_LONG" }],
    ["5s", { ok: true, durationMs: 5_000 }],
    ["4s", { ok: false, code: "DURATION_INVALID" }],
    ["4999ms", { ok: false, code: "DURATION_INVALID" }],
    ["0m", { ok: false, code: "DURATION_INVALID" }],
    ["soon", { ok: false, code: "DURATION_INVALID" }],
    ["", { ok: false, code: "DURATION_INVALID" }],
    ["-1h", { ok: false, code: "DURATION_INVALID" }],
    ["1.5h", { ok: false, code: "DURATION_INVALID" }],
  ])("%j → %j", (requested, expected) => {
    expect(resolveDuration(policy, requested)).toMatchObject(expected);
  });

  it("explains a refusal in a sentence", () => {
    const result = resolveDuration(policy, "1d");
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.message).toMatch(/at most 8h/);
  });

  it("cuts a default longer than the maximum to the maximum", () => {
    expect(resolveDuration(spec({ defaultDuration: "12h", maxDuration: "4h" }))).toEqual({
      ok: true,
      durationMs: 4 * HOUR,
    });
  });

  it("refuses when the policy allows nothing of at least 5s", () => {
    expect(resolveDuration(spec({ defaultDuration: "4s", maxDuration: "8h" }))).toMatchObject({
      ok: false,
      code: "DURATION_INVALID",
    });
  });

  it("never returns more than the maximum, nor less than 5s", () => {
    const durationText = fc
      .tuple(fc.integer({ min: 0, max: 10_000 }), fc.constantFrom("ms", "s", "m", "h", "d"))
      .map(([amount, unit]) => `${amount}${unit}`);
    fc.assert(
      fc.property(
        durationText,
        durationText,
        fc.option(fc.oneof(durationText, fc.string()), { nil: undefined }),
        (defaultDuration, maxDuration, requested) => {
          const result = resolveDuration({ defaultDuration, maxDuration }, requested);
          if (result.ok) {
            expect(result.durationMs).toBeLessThanOrEqual(resolveMs(maxDuration));
            expect(result.durationMs).toBeGreaterThanOrEqual(MIN_DURATION_MS);
          }
        },
      ),
    );
  });
});

function resolveMs(text: string): number {
  const match = /^(\d+)(ms|s|m|h|d)$/.exec(text)!;
  const unit = { ms: 1, s: 1000, m: MIN, h: HOUR, d: 24 * HOUR }[match[2] as "ms" | "s" | "m" | "h" | "d"];
  return Number(match[1]) * unit;
}

describe("checkJustification", () => {
  const policy = spec({ justification: { minLength: 10 } });
  const withTicket = spec({ justification: { minLength: 10, ticketRequired: true, ticketPattern: "[A-Z]+-\\d+" } });

  it.each([
    ["restart the stuck replication on db-7 (INC-4411)", true],
    ["  fix replication lag  ", true],
    ["fix", false],
    ["work", false],
    ["Fix!!", false],
    ["work work", false],
    ["needed access", false],
    ["Needed ACCESS!!! work, fix; debug... admin?", false],
    ["test test test test test", false],
    ["!!!!!!!!!!!!", false],
    ["short", false],
    ["          x", false],
    ["réparer la réplication", true],
  ])("reason %j → ok %s", (reason, ok) => {
    expect(checkJustification(policy, reason).ok).toBe(ok);
  });

  it("reports every problem, in sentences", () => {
    const result = checkJustification(withTicket, "fix");
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.problems).toHaveLength(3);
    for (const problem of result.problems) expect(problem).toMatch(/^[A-Z"].*[.]$/);
  });

  it("says which ticket pattern the role accepts, up front and when a ticket does not match", () => {
    const missing = checkJustification(withTicket, "restart the stuck replication");
    expect(missing).toEqual({
      ok: false,
      problems: ["This role needs a ticket reference with every request (--ticket, matching [A-Z]+-\\d+)."],
      fields: { ticket: "This role needs a ticket reference with every request (--ticket, matching [A-Z]+-\\d+)." },
    });
    const wrong = checkJustification(withTicket, "restart the stuck replication", "inc-42");
    expect(wrong).toEqual({
      ok: false,
      problems: [
        'The ticket "inc-42" does not look like a ticket reference this role accepts (the whole ticket must match [A-Z]+-\\d+).',
      ],
      fields: {
        ticket:
          'The ticket "inc-42" does not look like a ticket reference this role accepts (the whole ticket must match [A-Z]+-\\d+).',
      },
    });
  });

  it("puts each problem under its own field: reason problems under reason, ticket problems under ticket", () => {
    const result = checkJustification(withTicket, "fix", "inc-42");
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.fields.reason).toMatch(/at least 10 characters/);
    expect(result.fields.reason).toMatch(/too vague/);
    expect(result.fields.reason).not.toMatch(/ticket/);
    expect(result.fields.ticket).toMatch(/^The ticket "inc-42" does not look like/);
  });

  it("counts length after trimming", () => {
    const policy12 = spec({ justification: { minLength: 12 } });
    expect(checkJustification(policy12, "   rotate keys   ").ok).toBe(false);
    expect(checkJustification(policy12, "   rotate keys!   ").ok).toBe(true);
  });

  it.each([
    [undefined, false],
    ["", false],
    ["   ", false],
    ["INC-42", true],
    [" INC-42 ", true],
    ["inc-42", false],
    ["xINC-42", false],
    ["INC-42 and more", false],
  ])("ticket %j when required with pattern [A-Z]+-\\d+ → ok %s", (ticket, ok) => {
    expect(checkJustification(withTicket, "restart the stuck replication", ticket).ok).toBe(ok);
  });

  it.each([
    ["^INC-\\d+$", "INC-42", true],
    ["^INC-\\d+$", "INC-42x", false],
    ["^INC-", "INC-anything", true],
    ["^INC-", "xINC-", false],
    ["\\d+$", "abc123", true],
    ["\\d+\\$", "12$", true],
    ["\\d+\\$", "x12$", false],
    ["INC|CHG", "CHG", true],
    ["INC|CHG", "INCX", false],
  ])("pattern %j with ticket %j → ok %s (anchors as written, else a full match)", (ticketPattern, ticket, ok) => {
    const policyWithPattern = spec({ justification: { minLength: 0, ticketPattern } });
    expect(checkJustification(policyWithPattern, "restart replication", ticket).ok).toBe(ok);
  });

  it("accepts any ticket when there is no pattern, and none when none is required", () => {
    expect(checkJustification(policy, "restart replication", "whatever 123").ok).toBe(true);
    expect(checkJustification(policy, "restart replication").ok).toBe(true);
  });

  it("a reason made only of reject words and punctuation is always refused", () => {
    const rejectWords = ["work", "fix", "access", "needed", "test", "debug", "admin"];
    const anyCase = fc
      .tuple(fc.constantFrom(...rejectWords), fc.array(fc.boolean(), { minLength: 10, maxLength: 10 }))
      .map(([word, upper]) => [...word].map((ch, i) => (upper[i] ? ch.toUpperCase() : ch)).join(""));
    const separator = fc
      .array(fc.constantFrom(" ", "\t", ".", ",", "!", "?", ";", ":", "-", "'", '"', "(", ")", "…", "/"), {
        minLength: 1,
        maxLength: 4,
      })
      .map((chars) => chars.join(""));
    fc.assert(
      fc.property(
        fc.array(fc.tuple(anyCase, separator), { minLength: 0, maxLength: 12 }),
        fc.string({ unit: fc.constantFrom("!", ".", " ", "?"), maxLength: 3 }),
        fc.integer({ min: 0, max: 40 }),
        (parts, prefix, minLength) => {
          const reason = prefix + parts.map(([word, sep]) => word + sep).join("");
          const result = checkJustification(spec({ justification: { minLength } }), reason);
          expect(result.ok).toBe(false);
        },
      ),
    );
  });

  it("a reason with one real word among reject words passes the reject-word rule", () => {
    fc.assert(
      fc.property(fc.array(fc.constantFrom("fix", "work", "access"), { maxLength: 5 }), (noise) => {
        const reason = [...noise, "replication", ...noise].join(" ");
        expect(checkJustification(spec({ justification: { minLength: 0 } }), reason).ok).toBe(true);
      }),
    );
  });
});

// ---------------------------------------------------------------------------
// Windows

const businessHours = (timeZone: string, days: ActivationWindow["days"] = ["mon", "tue", "wed", "thu", "fri"]) => ({
  days,
  from: "08:00",
  to: "18:00",
  timeZone,
});
const everyDay: ActivationWindow["days"] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

describe("isWithinWindows", () => {
  it("is always true with no windows", () => {
    expect(isWithinWindows([], utc("2026-01-04T03:00:00Z"))).toBe(true);
  });

  it.each([
    // 2026-01-05 is a Monday; London is on GMT.
    ["2026-01-05T07:59:59Z", false],
    ["2026-01-05T08:00:00Z", true],
    ["2026-01-05T17:59:59Z", true],
    ["2026-01-05T18:00:00Z", false],
    ["2026-01-10T12:00:00Z", false], // Saturday
    ["2026-01-09T12:00:00Z", true], // Friday
  ])("London business hours at %s → %s", (iso, expected) => {
    expect(isWithinWindows([businessHours("Europe/London")], utc(iso))).toBe(expected);
  });

  it.each([
    // Europe/London: BST starts 2026-03-29 01:00Z, ends 2026-10-25 01:00Z (both Sundays).
    ["Europe/London", "2026-03-28T07:30:00Z", false], // 07:30 GMT
    ["Europe/London", "2026-03-29T07:30:00Z", true], // 08:30 BST
    ["Europe/London", "2026-03-29T06:59:00Z", false], // 07:59 BST
    ["Europe/London", "2026-03-29T07:00:00Z", true], // 08:00 BST
    ["Europe/London", "2026-03-29T16:59:00Z", true], // 17:59 BST
    ["Europe/London", "2026-03-29T17:00:00Z", false], // 18:00 BST
    ["Europe/London", "2026-10-24T07:30:00Z", true], // 08:30 BST
    ["Europe/London", "2026-10-24T17:00:00Z", false], // 18:00 BST
    ["Europe/London", "2026-10-25T07:30:00Z", false], // 07:30 GMT
    ["Europe/London", "2026-10-25T08:00:00Z", true], // 08:00 GMT
    ["Europe/London", "2026-10-25T17:59:00Z", true], // 17:59 GMT
    ["Europe/London", "2026-10-25T18:00:00Z", false], // 18:00 GMT
    // America/New_York: EDT starts 2026-03-08 07:00Z, ends 2026-11-01 06:00Z (both Sundays).
    ["America/New_York", "2026-03-07T12:30:00Z", false], // 07:30 EST
    ["America/New_York", "2026-03-07T13:00:00Z", true], // 08:00 EST
    ["America/New_York", "2026-03-08T11:59:00Z", false], // 07:59 EDT
    ["America/New_York", "2026-03-08T12:00:00Z", true], // 08:00 EDT
    ["America/New_York", "2026-03-08T21:59:00Z", true], // 17:59 EDT
    ["America/New_York", "2026-03-08T22:00:00Z", false], // 18:00 EDT
    ["America/New_York", "2026-11-01T12:00:00Z", false], // 07:00 EST
    ["America/New_York", "2026-11-01T12:30:00Z", false], // 07:30 EST
    ["America/New_York", "2026-11-01T13:00:00Z", true], // 08:00 EST
    ["America/New_York", "2026-11-01T22:59:00Z", true], // 17:59 EST
    ["America/New_York", "2026-11-01T23:00:00Z", false], // 18:00 EST
    // Southern hemisphere: Sydney leaves summer time on 2026-04-05, Auckland on the same day.
    ["Australia/Sydney", "2026-04-04T21:59:00Z", false], // Sun 07:59 AEST (clocks went back at 03:00 AEDT)
    ["Australia/Sydney", "2026-04-04T22:00:00Z", true], // Sun 08:00 AEST
    ["Australia/Sydney", "2026-04-05T07:59:00Z", true], // Sun 17:59 AEST
    ["Australia/Sydney", "2026-04-05T08:00:00Z", false], // Sun 18:00 AEST
    ["Pacific/Auckland", "2026-09-26T19:00:00Z", true], // Sun 08:00 NZDT
    ["Pacific/Auckland", "2026-09-26T18:59:00Z", false], // Sun 07:59 NZDT
    ["Asia/Kolkata", "2026-06-07T02:30:00Z", true], // Sun 08:00 IST
    ["Asia/Kolkata", "2026-06-07T02:29:00Z", false], // Sun 07:59 IST
    ["UTC", "2026-06-07T08:00:00Z", true],
  ])("%s 08:00-18:00 every day at %s → %s", (timeZone, iso, expected) => {
    expect(isWithinWindows([businessHours(timeZone, everyDay)], utc(iso))).toBe(expected);
  });

  it.each([
    // fri 22:00-06:00 in London (GMT in January); 2026-01-09 is a Friday.
    ["2026-01-09T21:59:00Z", false],
    ["2026-01-09T22:00:00Z", true],
    ["2026-01-10T00:00:00Z", true], // Saturday 00:00, still Friday's window
    ["2026-01-10T05:59:00Z", true],
    ["2026-01-10T06:00:00Z", false],
    ["2026-01-10T23:00:00Z", false], // Saturday night: sat is not listed
    ["2026-01-09T03:00:00Z", false], // Friday early morning belongs to Thursday's window
  ])("overnight fri 22:00-06:00 at %s → %s", (iso, expected) => {
    expect(isWithinWindows([{ days: ["fri"], from: "22:00", to: "06:00", timeZone: "Europe/London" }], utc(iso))).toBe(
      expected,
    );
  });

  it("an overnight window on Sunday runs into Monday", () => {
    const sundayNight = [{ days: ["sun" as const], from: "22:00", to: "06:00", timeZone: "UTC" }];
    expect(isWithinWindows(sundayNight, utc("2026-01-05T03:00:00Z"))).toBe(true); // Monday 03:00
    expect(isWithinWindows(sundayNight, utc("2026-01-04T03:00:00Z"))).toBe(false); // Sunday 03:00
  });

  it("an overnight window across the start of summer time ends at 06:00 on the clock", () => {
    // Sat 2026-03-28 22:00 GMT → Sun 06:00 BST (05:00Z).
    const window = [{ days: ["sat" as const], from: "22:00", to: "06:00", timeZone: "Europe/London" }];
    expect(isWithinWindows(window, utc("2026-03-29T04:59:00Z"))).toBe(true);
    expect(isWithinWindows(window, utc("2026-03-29T05:00:00Z"))).toBe(false);
  });

  it("from == to is the whole of each listed day", () => {
    const window = [{ days: ["wed" as const], from: "09:00", to: "09:00", timeZone: "Asia/Kolkata" }];
    // Wednesday 2026-01-07 in Kolkata is 2026-01-06T18:30Z up to 2026-01-07T18:30Z.
    expect(isWithinWindows(window, utc("2026-01-06T18:29:59Z"))).toBe(false);
    expect(isWithinWindows(window, utc("2026-01-06T18:30:00Z"))).toBe(true);
    expect(isWithinWindows(window, utc("2026-01-07T18:29:59Z"))).toBe(true);
    expect(isWithinWindows(window, utc("2026-01-07T18:30:00Z"))).toBe(false);
  });

  it("a window starting in the skipped hour starts when the clock jumps past it", () => {
    // New York, Sunday 2026-03-08: 01:59:59 EST is followed by 03:00 EDT (07:00Z).
    const window = [{ days: ["sun" as const], from: "02:30", to: "04:00", timeZone: "America/New_York" }];
    expect(isWithinWindows(window, utc("2026-03-08T06:59:59Z"))).toBe(false);
    expect(isWithinWindows(window, utc("2026-03-08T07:00:00Z"))).toBe(true);
    expect(isWithinWindows(window, utc("2026-03-08T07:59:00Z"))).toBe(true); // 03:59 EDT
    expect(isWithinWindows(window, utc("2026-03-08T08:00:00Z"))).toBe(false); // 04:00 EDT
  });

  it("in the repeated hour each reading of the clock is judged on its own", () => {
    // New York, Sunday 2026-11-01: 01:00-01:59 happens twice, EDT (05:00Z) then EST (06:00Z).
    const window = [{ days: ["sun" as const], from: "01:30", to: "03:00", timeZone: "America/New_York" }];
    expect(isWithinWindows(window, utc("2026-11-01T05:29:00Z"))).toBe(false); // 01:29 EDT
    expect(isWithinWindows(window, utc("2026-11-01T05:30:00Z"))).toBe(true); // 01:30 EDT
    expect(isWithinWindows(window, utc("2026-11-01T06:10:00Z"))).toBe(false); // 01:10 EST
    expect(isWithinWindows(window, utc("2026-11-01T06:30:00Z"))).toBe(true); // 01:30 EST
    expect(isWithinWindows(window, utc("2026-11-01T07:59:00Z"))).toBe(true); // 02:59 EST
    expect(isWithinWindows(window, utc("2026-11-01T08:00:00Z"))).toBe(false); // 03:00 EST
  });

  it("any window inside is enough", () => {
    const windows = [businessHours("Asia/Kolkata"), businessHours("America/New_York")];
    // Monday 2026-01-05 14:00Z: 19:30 in Kolkata (outside), 09:00 in New York (inside).
    expect(isWithinWindows(windows, utc("2026-01-05T14:00:00Z"))).toBe(true);
    expect(isWithinWindows(windows.slice(0, 1), utc("2026-01-05T14:00:00Z"))).toBe(false);
  });

  // Reference: read the local weekday and clock time straight from Intl's formatted
  // parts and compare case by case, no offsets and no minute-of-week arithmetic.
  const referenceFormatters = new Map<string, Intl.DateTimeFormat>();
  const names = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
  function referenceWithin(windows: readonly ActivationWindow[], now: Date): boolean {
    if (windows.length === 0) return true;
    return windows.some((window) => {
      let formatter = referenceFormatters.get(window.timeZone);
      if (!formatter) {
        formatter = new Intl.DateTimeFormat("en-GB", {
          timeZone: window.timeZone,
          weekday: "short",
          hour: "2-digit",
          minute: "2-digit",
          hourCycle: "h23",
        });
        referenceFormatters.set(window.timeZone, formatter);
      }
      const parts = Object.fromEntries(formatter.formatToParts(now).map((p) => [p.type, p.value]));
      const dayIndex = names.indexOf(parts.weekday!);
      expect(dayIndex).toBeGreaterThanOrEqual(0);
      const today = window.days.includes(everyDay[dayIndex]!);
      const yesterday = window.days.includes(everyDay[(dayIndex + 6) % 7]!);
      const clock = `${parts.hour}:${parts.minute}`; // "HH:MM" strings compare in time order
      if (window.from === window.to) return today;
      if (window.from < window.to) return today && window.from <= clock && clock < window.to;
      return (today && clock >= window.from) || (yesterday && clock < window.to);
    });
  }

  const zones = [
    "Europe/London",
    "America/New_York",
    "Asia/Kolkata",
    "Australia/Sydney",
    "UTC",
    "Pacific/Auckland",
  ] as const;
  const transitions = [
    "2026-03-29T01:00:00Z",
    "2026-10-25T01:00:00Z",
    "2026-03-08T07:00:00Z",
    "2026-11-01T06:00:00Z",
    "2026-04-04T16:00:00Z",
    "2026-10-03T16:00:00Z",
    "2026-04-04T14:00:00Z",
    "2026-09-26T14:00:00Z",
  ].map((iso) => Date.parse(iso));
  const clockTime = fc
    .oneof(fc.integer({ min: 0, max: 1439 }), fc.integer({ min: 0, max: 240 }), fc.constantFrom(0, 480, 1080, 1320))
    .map((m) => `${String(Math.floor(m / 60)).padStart(2, "0")}:${String(m % 60).padStart(2, "0")}`);
  const window: fc.Arbitrary<ActivationWindow> = fc.record({
    days: fc.subarray([...everyDay], { minLength: 1 }),
    from: clockTime,
    to: clockTime,
    timeZone: fc.constantFrom(...zones),
  });
  const instant = fc.oneof(
    fc.date({ min: new Date("1995-01-01T00:00:00Z"), max: new Date("2045-12-31T23:59:59Z"), noInvalidDate: true }),
    // Near the 2026 DST changes of the zones above, where mistakes would hide.
    fc
      .tuple(fc.constantFrom(...transitions), fc.integer({ min: -30 * HOUR, max: 30 * HOUR }))
      .map(([t, delta]) => new Date(t + delta)),
  );

  it("agrees with a reference reading the local clock through Intl parts", () => {
    fc.assert(
      fc.property(fc.array(window, { maxLength: 3 }), instant, (windows, now) => {
        expect(isWithinWindows(windows, now)).toBe(referenceWithin(windows, now));
      }),
      { numRuns: 3000 },
    );
  });
});

describe("evaluateWindow", () => {
  const windows = [businessHours("Europe/London")];
  const monday9 = utc("2026-01-05T09:00:00Z");
  const saturday9 = utc("2026-01-10T09:00:00Z");

  it("allows inside the windows without an extra stage", () => {
    expect(evaluateWindow(spec({ windows }), monday9)).toEqual({ allowed: true, extraStage: false });
    expect(evaluateWindow(spec({ windows, outsideWindow: "require-approval" }), monday9)).toEqual({
      allowed: true,
      extraStage: false,
    });
    expect(evaluateWindow(spec(), saturday9)).toEqual({ allowed: true, extraStage: false });
  });

  it("outside, denies with a reason naming the windows", () => {
    const result = evaluateWindow(
      spec({ windows: [...windows, { days: ["sat", "sun"], from: "10:00", to: "12:00", timeZone: "UTC" }] }),
      utc("2026-01-10T09:00:00Z"),
    );
    expect(result).toEqual({
      allowed: false,
      reason:
        "This role can be activated only during mon-fri 08:00-18:00 Europe/London; sat,sun 10:00-12:00 UTC, and it is outside those hours now.",
    });
  });

  it("at activation: a deny policy outside its windows says why; inside, break-glass and require-approval pass", () => {
    expect(windowProblemAtActivation(spec({ windows }), saturday9)).toMatch(/only during mon-fri 08:00-18:00/);
    expect(windowProblemAtActivation(spec({ windows }), monday9)).toBeNull();
    expect(windowProblemAtActivation(spec({ windows, breakGlass: true }), saturday9)).toBeNull();
    expect(windowProblemAtActivation(spec({ windows, outsideWindow: "require-approval" }), saturday9)).toBeNull();
    expect(windowProblemAtActivation(spec(), saturday9)).toBeNull();
  });

  it("outside, with require-approval, allows with an extra stage", () => {
    expect(evaluateWindow(spec({ windows, outsideWindow: "require-approval" }), saturday9)).toEqual({
      allowed: true,
      extraStage: true,
    });
  });

  it.each([
    [
      { days: ["mon", "tue", "wed", "thu", "fri"], from: "08:00", to: "18:00", timeZone: "UTC" },
      "mon-fri 08:00-18:00 UTC",
    ],
    [{ days: ["fri", "mon", "wed"], from: "22:00", to: "06:00", timeZone: "UTC" }, "mon,wed,fri 22:00-06:00 UTC"],
    [{ days: ["sat", "sun", "mon"], from: "00:00", to: "00:00", timeZone: "UTC" }, "mon,sat,sun all day UTC"],
    [
      { days: ["mon", "tue", "thu", "fri", "sat"], from: "01:00", to: "02:00", timeZone: "UTC" },
      "mon,tue,thu-sat 01:00-02:00 UTC",
    ],
  ] as const)("describes %j as %s", (window, text) => {
    expect(describeWindow({ ...window, days: [...window.days] })).toBe(text);
  });
});

describe("checkMfaFreshness", () => {
  const now = utc("2026-01-05T09:00:00Z");
  const required = spec({ mfa: { required: true, maxAge: "15m" } });

  it.each([
    [null, false],
    [new Date(now.getTime() - 15 * MIN), true],
    [new Date(now.getTime() - 15 * MIN - 1), false],
    [new Date(now.getTime() - 1 * MIN), true],
    [now, true],
    [new Date(now.getTime() + 30_000), true], // clock skew between nodes
    [new Date(now.getTime() + 2 * HOUR), false], // not a believable time
    [new Date(now.getTime() - 24 * HOUR), false],
  ])("required, mfaAt %s → ok %s", (mfaAt, ok) => {
    const result = checkMfaFreshness(required, mfaAt, now);
    expect(result.ok).toBe(ok);
    if (!result.ok) {
      expect(result.code).toBe("MFA_STEP_UP_REQUIRED");
      expect(result.message).toMatch(/15m/);
    }
  });

  it("is always ok when the policy does not require MFA", () => {
    const notRequired = spec({ mfa: { required: false, maxAge: "15m" } });
    expect(checkMfaFreshness(notRequired, null, now)).toEqual({ ok: true });
    expect(checkMfaFreshness(notRequired, new Date(0), now)).toEqual({ ok: true });
  });
});

describe("checkExtension", () => {
  const activatedAt = utc("2026-01-05T09:00:00Z");
  const expiresAt = new Date(activatedAt.getTime() + 2 * HOUR);
  const policy = spec({ maxDuration: "4h", maxExtensions: 2 });

  it("moves the expiry by the extension", () => {
    expect(checkExtension(policy, 0, HOUR, expiresAt, activatedAt)).toEqual({
      ok: true,
      expiresAt: new Date(expiresAt.getTime() + HOUR),
    });
    expect(checkExtension(policy, 1, 4 * HOUR, expiresAt, activatedAt)).toMatchObject({ ok: true });
  });

  it.each([
    [spec({ maxDuration: "4h", maxExtensions: 0 }), 0, HOUR, "EXTENSION_LIMIT_REACHED", /does not allow/],
    [policy, 2, HOUR, "EXTENSION_LIMIT_REACHED", /already extended 2 times/],
    [spec({ maxDuration: "4h", maxExtensions: 1 }), 1, HOUR, "EXTENSION_LIMIT_REACHED", /already extended once/],
    [policy, 0, 4 * HOUR + 1, "DURATION_TOO_LONG", /at most 4h/],
    [policy, 0, 4_999, "DURATION_INVALID", /at least 5s/],
    [policy, 0, Number.NaN, "DURATION_INVALID", /at least 5s/],
  ] as const)("refuses: %#", (p, soFar, by, code, reason) => {
    const result = checkExtension(p, soFar, by, expiresAt, activatedAt);
    expect(result).toMatchObject({ ok: false, code });
    if (!result.ok) expect(result.reason).toMatch(reason);
  });

  it("caps the whole activation at maxDuration × (1 + maxExtensions), e.g. after the policy was tightened", () => {
    // Activated for 8h under an older policy; now maxDuration is 4h with 2 extensions: 12h in total.
    const longExpiry = new Date(activatedAt.getTime() + 9 * HOUR);
    expect(checkExtension(policy, 0, 3 * HOUR, longExpiry, activatedAt)).toMatchObject({ ok: true });
    expect(checkExtension(policy, 0, 3 * HOUR + MIN, longExpiry, activatedAt)).toMatchObject({
      ok: false,
      code: "DURATION_TOO_LONG",
    });
  });

  it("a run of allowed extensions never exceeds the total cap", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 24 * 60 }),
        fc.integer({ min: 0, max: 5 }),
        fc.array(fc.integer({ min: 0, max: 30 * HOUR }), { maxLength: 8 }),
        (maxMinutes, maxExtensions, asks) => {
          const p = { maxDuration: `${maxMinutes}m`, maxExtensions };
          let expiry = new Date(activatedAt.getTime() + maxMinutes * MIN);
          let count = 0;
          for (const by of asks) {
            const result = checkExtension(p, count, by, expiry, activatedAt);
            if (!result.ok) continue;
            expect(by).toBeLessThanOrEqual(maxMinutes * MIN);
            expiry = result.expiresAt;
            count++;
          }
          expect(count).toBeLessThanOrEqual(maxExtensions);
          expect(expiry.getTime() - activatedAt.getTime()).toBeLessThanOrEqual(maxMinutes * MIN * (1 + maxExtensions));
        },
      ),
    );
  });
});
