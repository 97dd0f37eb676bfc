/**
 * The one-time decision token of a notification link (`/requests/<id>#decide=approve&token=…`). It
 * travels in the fragment, which browsers never send to a server; it is read once when the UI loads,
 * kept in memory only, and taken out of the address bar and history entry at once, so it is neither
 * bookmarked nor shown over someone's shoulder. The request page posts it in the decision's body.
 */
export interface DecisionLink {
  requestId: string;
  decide: "approve" | "deny" | null;
  token: string | null;
}

const REQUEST_PATH = /^\/requests\/([0-9a-fA-F-]{36})\/?$/;

function read(): DecisionLink | null {
  const match = REQUEST_PATH.exec(window.location.pathname);
  const hash = window.location.hash.slice(1);
  if (!match || !hash) return null;
  const params = new URLSearchParams(hash);
  const decide = params.get("decide");
  const token = params.get("token");
  window.history.replaceState(window.history.state, "", window.location.pathname + window.location.search);
  return {
    requestId: match[1]!.toLowerCase(),
    decide: decide === "approve" || decide === "deny" ? decide : null,
    token: token && /^[\w.-]{20,2048}$/.test(token) ? token : null,
  };
}

let link: DecisionLink | null = read();

/** The link this page was opened with, for this request, if any. */
export function decisionLinkFor(requestId: string): DecisionLink | null {
  return link && link.requestId === requestId.toLowerCase() ? link : null;
}

/** Forgets the token (used, refused, or the decision went the other way). */
export function forgetDecisionToken(): void {
  if (link) link = { ...link, token: null };
}

/** The request id in a `/requests/<id>` path, or null. */
export function requestIdOfPath(path: string): string | null {
  return REQUEST_PATH.exec(path)?.[1] ?? null;
}
