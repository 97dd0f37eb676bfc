import { describe, expect, it } from "vitest";
import { LIVE_CLOSE } from "../../contract/live.js";
import { asciicastEvent, asciicastHeader } from "../../contract/recording.js";
import { createLiveHub, type LiveSessionInfo, type LiveSocket, type Watcher } from "./live-hub.js";
import { approversOf, mayModerate, mayWatch, shownToWatchers, type LiveViewer } from "./live.rules.js";
import type { SessionEnd } from "./sessions.types.js";
import { policySpec } from "../../contract/catalog.js";

/** A socket that keeps what it is sent; `stalled` makes it hold everything unsent (a watcher that reads nothing). */
function fakeSocket(stalled = false) {
  const frames: Buffer[] = [];
  let buffered = 0;
  const socket = {
    frames,
    closed: null as { code?: number; reason?: string } | null,
    get bufferedAmount() {
      return buffered;
    },
    send(data: Buffer | string) {
      if (socket.closed) throw new Error("send after close");
      const buffer = typeof data === "string" ? Buffer.from(data) : data;
      frames.push(buffer);
      if (stalled) buffered += buffer.length;
    },
    close(code?: number, reason?: string) {
      socket.closed = { code, reason };
    },
    text: () => frames.map((f) => f.toString()).join(""),
  } satisfies LiveSocket & Record<string, unknown>;
  return socket;
}

const viewer = (name: string, groups: string[] = [], readsSessions = false): LiveViewer => ({
  id: `id-${name}`,
  name,
  groups,
  readsSessions,
});

function session(overrides: Partial<LiveSessionInfo> = {}) {
  const ends: SessionEnd[] = [];
  const info: LiveSessionInfo = {
    id: "s1",
    kind: "ssh",
    user: "ann",
    role: "web-shell",
    target: "web",
    startedAt: new Date(0),
    facts: {
      userId: "id-ann",
      userManagerId: null,
      approvers: { users: [], groups: [], manager: false },
      moderator: null,
    },
    abort: (end) => ends.push(end),
    ...overrides,
  };
  return { info, ends };
}

const meta = { session: "s1", user: "ann", role: "web-shell", target: "web", login: "root", startedAt: new Date(0) };

describe("live hub", () => {
  it("fans each line out to every watcher as one shared buffer, without typed input", () => {
    const hub = createLiveHub();
    const feed = hub.open(session().info);
    feed.push(asciicastHeader(meta, { cols: 80, rows: 24 }));
    feed.push(asciicastEvent(0.1, "o", "before\r\n"));
    const a = fakeSocket();
    const b = fakeSocket();
    hub.attach("s1", { viewer: viewer("aud", [], true), mode: "watch", socket: a });
    hub.attach("s1", { viewer: viewer("aud2", [], true), mode: "watch", socket: b });
    // The joining watcher got hello, then the header and the recent lines.
    expect(JSON.parse(a.frames[0]!.toString())).toMatchObject({ type: "hello", mode: "watch", moderation: null });
    expect(a.frames[1]!.toString()).toContain('"version":2');
    expect(a.frames[1]!.toString()).toContain("before");

    feed.push(asciicastEvent(0.2, "i", "s3cret\r"));
    feed.push(asciicastEvent(0.3, "o", "after\r\n"));
    feed.push(asciicastEvent(0.4, "m", JSON.stringify({ event: "forward_data", data: "AAAA" })));
    expect(a.text()).toContain("after");
    expect(a.text()).not.toContain("s3cret");
    expect(a.text()).not.toContain("forward_data");
    // The same Buffer object went to both: nothing copied per watcher.
    expect(a.frames.at(-1)).toBe(b.frames.at(-1));

    feed.close("ann closed the connection");
    expect(a.text()).toContain('"type":"ended"');
    expect(a.closed?.code).toBe(LIVE_CLOSE.ended);
    expect(hub.session("s1")).toBeUndefined();
  });

  it("closes a watcher that falls behind, and the session and other watchers go on", () => {
    const hub = createLiveHub({ maxBuffered: 64 * 1024 });
    const left: { name: string; tooSlow: boolean }[] = [];
    hub.setLeaveListener((_info, watcher, how) => left.push({ name: watcher.viewer.name, tooSlow: how.tooSlow }));
    const feed = hub.open(session().info);
    const slow = fakeSocket(true);
    const fast = fakeSocket();
    hub.attach("s1", { viewer: viewer("slow", [], true), mode: "watch", socket: slow });
    hub.attach("s1", { viewer: viewer("fast", [], true), mode: "watch", socket: fast });
    const chunk = "x".repeat(4096);
    for (let i = 0; i < 100; i++) feed.push(asciicastEvent(i, "o", chunk));
    expect(slow.closed?.code).toBe(LIVE_CLOSE.tooSlow);
    // What the slow one was handed stayed under its cap.
    expect(slow.bufferedAmount).toBeLessThanOrEqual(64 * 1024);
    expect(left).toEqual([{ name: "slow", tooSlow: true }]);
    expect(hub.watchers("s1")).toBe(1);
    expect(fast.frames.filter((f) => f.toString().includes(chunk))).toHaveLength(100);
  });

  it("holds a moderated session until a moderator joins; the last moderator's leaving is flagged", async () => {
    const hub = createLiveHub();
    const left: { name: string; lastModerator: boolean }[] = [];
    hub.setLeaveListener((_info, watcher, how) =>
      left.push({ name: watcher.viewer.name, lastModerator: how.lastModerator }),
    );
    const { info } = session({
      facts: {
        userId: "id-ann",
        userManagerId: null,
        approvers: { users: [], groups: [], manager: false },
        moderator: { groups: ["sec"] },
      },
    });
    const feed = hub.open(info);
    expect(feed.moderation?.required).toBe(true);
    expect(feed.moderation?.admitted()).toBe(false);
    let admittedBy: string | null = null;
    void feed.moderation!.whenAdmitted().then((name) => (admittedBy = name));
    await Promise.resolve();
    expect(admittedBy).toBeNull();

    const watcher = fakeSocket();
    hub.attach("s1", { viewer: viewer("aud", [], true), mode: "watch", socket: watcher });
    await Promise.resolve();
    expect(admittedBy).toBeNull(); // a watcher is no moderator

    const bob: Watcher = { viewer: viewer("bob", ["sec"]), mode: "moderate", socket: fakeSocket() };
    const carol: Watcher = { viewer: viewer("carol", ["sec"]), mode: "moderate", socket: fakeSocket() };
    const joined = hub.attach("s1", bob)!;
    expect(joined.firstModerator).toBe(true);
    await Promise.resolve();
    expect(admittedBy).toBe("bob");
    const second = hub.attach("s1", carol)!;
    expect(second.firstModerator).toBe(false);
    expect(hub.moderation("s1")).toEqual({ required: true, admitted: true, moderators: ["bob", "carol"] });
    expect(watcher.text()).toContain('"moderators":["bob","carol"]');

    joined.leave();
    second.leave();
    expect(left).toEqual([
      { name: "bob", lastModerator: false },
      { name: "carol", lastModerator: true },
    ]);
  });
});

describe("live rules", () => {
  const facts = {
    userId: "id-ann",
    userManagerId: "id-mgr",
    approvers: approversOf(
      policySpec.parse({
        maxDuration: "1h",
        approval: { stages: [{ approvers: { groups: ["leads"], users: ["dana"], manager: true } }] },
      }),
    ),
    moderator: { groups: ["sec"] },
  };
  it("lets auditors, the role's approvers and moderators watch; nobody else", () => {
    expect(mayWatch(viewer("aud", [], true), facts)).toBe(true);
    expect(mayWatch(viewer("lee", ["leads"]), facts)).toBe(true);
    expect(mayWatch(viewer("dana"), facts)).toBe(true);
    expect(mayWatch({ ...viewer("mgr"), id: "id-mgr" }, facts)).toBe(true);
    expect(mayWatch(viewer("bob", ["sec"]), facts)).toBe(true);
    expect(mayWatch(viewer("eve", ["devs"]), facts)).toBe(false);
  });
  it("lets only moderator-group members moderate, never the session's own user", () => {
    expect(mayModerate(viewer("bob", ["sec"]), facts)).toBe(true);
    expect(mayModerate(viewer("aud", [], true), facts)).toBe(false);
    expect(mayModerate(viewer("lee", ["leads"]), facts)).toBe(false);
    expect(mayModerate({ ...viewer("ann", ["sec"]), id: "id-ann" }, facts)).toBe(false);
    expect(mayWatch({ ...viewer("ann", ["sec", "leads"]), id: "id-ann" }, facts)).toBe(false);
  });
  it("keeps typed input and forwarded bytes from watchers", () => {
    expect(shownToWatchers(asciicastEvent(1, "o", "hi"))).toBe(true);
    expect(shownToWatchers(asciicastEvent(1, "r", "80x24"))).toBe(true);
    expect(shownToWatchers(asciicastEvent(1, "i", "pw"))).toBe(false);
    expect(shownToWatchers(asciicastEvent(1, "m", JSON.stringify({ event: "exec", command: "id" })))).toBe(true);
    expect(shownToWatchers(asciicastEvent(1, "m", JSON.stringify({ event: "forward_data", data: "x" })))).toBe(false);
    expect(shownToWatchers('{"t":0.5,"statement":"select 1"}\n')).toBe(true);
  });
});
