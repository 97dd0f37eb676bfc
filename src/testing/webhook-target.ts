/**
 * Test support: the webhook connector's test endpoint (`startWebhookEndpoint`) as the target `cloud-iam` of a
 * targets harness, with one self-service role on it. `cloudIamCatalog` is the catalog file alone;
 * `cloudIamHarness` starts the endpoint and the harness, makes the users and applies the file.
 */
import { expect } from "vitest";
import { selfServiceCatalog, targetsHarness, type TargetsHarness } from "./targets-harness.js";
import { startWebhookEndpoint, type WebhookEndpoint } from "./webhook-endpoint.js";

export interface CloudIamRole {
  /** `iam-<x>`, entitled to the cloud role `x`. */
  name: `iam-${string}`;
  risk: "low" | "medium" | "high" | "critical";
}

export interface CloudIamOptions {
  role: CloudIamRole;
  /** Eligible for the role. */
  users: string[];
  /** The target signs its calls with the secret stored at targets/cloud-iam/signing. */
  signed: boolean;
  /** More entries for the file's `targets:` list (YAML, indented as a list item). */
  moreTargets?: string;
}

/** A catalog file: `cloud-iam` (the webhook endpoint at `url`) and the role on it under a self-service policy. */
export function cloudIamCatalog(url: string, options: CloudIamOptions): string {
  const { role } = options;
  const credential = options.signed ? "    credential: { secret: targets/cloud-iam/signing }\n" : "";
  return selfServiceCatalog({
    policy: "iam-self",
    target: {
      name: "cloud-iam",
      lines: `    kind: webhook\n    address: ${url}\n${credential}    identity: { template: "{{name}}@example.com" }\n`,
    },
    moreTargets: options.moreTargets,
    role: {
      name: role.name,
      entitlement: `{ role: arn:aws:iam::123:role/${role.name.slice("iam-".length)} }`,
      risk: role.risk,
    },
    users: options.users,
  });
}

/**
 * The endpoint (checking signatures with `secret`), a fresh harness with `users` and the catalog applied; when
 * `signed`, the target's signing secret stored too.
 */
export async function cloudIamHarness(
  secret: string,
  options: Omit<CloudIamOptions, "moreTargets">,
): Promise<{ h: TargetsHarness; endpoint: WebhookEndpoint }> {
  const endpoint = await startWebhookEndpoint(secret);
  const h = await targetsHarness();
  for (const user of options.users) await h.createUser(user);
  await h.apply(cloudIamCatalog(endpoint.url, options));
  if (options.signed) expect((await h.admin("PUT", "/v1/targets/cloud-iam/credential", { secret })).status).toBe(200);
  return { h, endpoint };
}
