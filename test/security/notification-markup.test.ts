/**
 * A requester's own text in an approver's chat: Microsoft Teams renders Markdown in an Adaptive Card's TextBlock
 * and in a FactSet's titles and values (links `[text](url)`, bold, lists), but never in a RichTextBlock's
 * TextRun. A reason of `[Approve](https://evil.example/…)` put in a TextBlock became a link labelled "Approve"
 * inside Stint's own approval card, leading wherever the requester chose (a look-alike sign-in page harvesting
 * the approver's password and one-time code). Every piece of text in a Teams card is now a TextRun: the approver
 * sees the reason as it was typed, and the only links in the card are Stint's.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { testServer, type TestServer } from "../../src/testing/server.js";
import { actAs, seedRole, seedUser } from "../../src/testing/pim.js";

const PUBLIC_URL = "https://stint.example.com";
const PHISH = "https://stint-example.com.evil.example/sso/login";

let server: TestServer;
let receiver: Server;
let work: string;
const cards: Record<string, unknown>[] = [];

beforeAll(async () => {
  receiver = createServer((req, res) => {
    let body = "";
    req.on("data", (c: Buffer) => (body += c.toString()));
    req.on("end", () => {
      const message = JSON.parse(body) as { attachments: { content: Record<string, unknown> }[] };
      cards.push(message.attachments[0]!.content);
      res.end("1");
    });
  });
  await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
  const port = (receiver.address() as { port: number }).port;
  work = mkdtempSync(path.join(tmpdir(), "stint-markup-"));
  const file = path.join(work, "stint.yaml");
  writeFileSync(
    file,
    `publicUrl: ${PUBLIC_URL}\nnotifications:\n  channels:\n    - { name: approvers-chat, kind: teams, url: "http://127.0.0.1:${port}/webhookb2/x" }\n`,
  );
  server = await testServer("pglite", { env: { STINT_CONFIG_FILE: file } });
  await seedUser(server, "carol");
  await seedUser(server, "mallory", { manager: "carol" });
  await seedRole(server, {
    name: "payroll-db",
    policy: {
      mfa: { required: false, maxAge: "10m" },
      justification: { minLength: 5 },
      approval: { stages: [{ approvers: { manager: true }, count: 1 }] },
    },
    eligibleUsers: ["mallory"],
  });
}, 120_000);

afterAll(async () => {
  await server?.cleanup();
  await new Promise((r) => receiver?.close(r));
  if (work) rmSync(work, { recursive: true, force: true });
});

interface Element {
  type: string;
  text?: string;
  facts?: { title: string; value: string }[];
  inlines?: (Element | string)[];
  items?: Element[];
  columns?: Element[];
}

/**
 * What Teams shows of a card, as the Adaptive Card schema says it renders: the text a person reads, and every
 * link they can click (Markdown links in TextBlocks and facts, the actions' URLs). A TextRun is plain text.
 */
function rendered(card: { body: Element[]; actions?: { url: string }[] }) {
  const links: { label: string; url: string }[] = (card.actions ?? []).map((a) => ({ label: "action", url: a.url }));
  const texts: string[] = [];
  const markdown = (text: string) => {
    for (const m of text.matchAll(/\[([^\]]*)\]\(([^)\s]+)\)/g)) links.push({ label: m[1]!, url: m[2]! });
    texts.push(text.replace(/\[([^\]]*)\]\(([^)\s]+)\)/g, "$1"));
  };
  const walk = (element: Element | string): void => {
    if (typeof element === "string") return void texts.push(element);
    if (element.type === "TextBlock") return markdown(element.text ?? "");
    if (element.type === "FactSet") return element.facts!.forEach((f) => (markdown(f.title), markdown(f.value)));
    if (element.type === "TextRun") return void texts.push(element.text ?? "");
    if (element.type === "RichTextBlock") return element.inlines!.forEach(walk);
    if (element.type === "Container" || element.type === "Column") return element.items!.forEach(walk);
    if (element.type === "ColumnSet") return element.columns!.forEach(walk);
    throw new Error(`an element this test cannot read: ${element.type}`);
  };
  card.body.forEach(walk);
  return { links, text: texts.join("\n") };
}

describe("a requester's text in a Teams approval card", () => {
  it("is shown as typed, and the card's only links are Stint's", async () => {
    const reason = `Urgent payroll fix, pre-approved by security: [Approve](${PHISH}) **(SSO)**`;
    const submitted = await actAs(server, "mallory")("POST", "/v1/activation-requests", { role: "payroll-db", reason });
    expect(submitted.status, JSON.stringify(submitted.body)).toBe(201);
    for (let i = 0; i < 100 && cards.length === 0; i++) {
      await server.outbox.runOnce();
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(cards).toHaveLength(1);
    const { links, text } = rendered(cards[0] as never);
    // Every link carol can click in the card leads to Stint (Approve, Deny), none to the requester's page...
    expect(links.length).toBeGreaterThan(0);
    for (const link of links) expect(new URL(link.url).origin, JSON.stringify(link)).toBe(PUBLIC_URL);
    // ...and she reads the reason exactly as mallory wrote it, brackets and all.
    expect(text).toContain(`Reason: ${reason}`);
  });
});
