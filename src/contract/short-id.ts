/**
 * How people see an id (CLI tables, web pages): its last 8 hex digits. The first ones of a UUIDv7 are its
 * timestamp, shared by everything made in the same millisecond or so (two sessions both showed `01a23d24`);
 * the tail is random. Commands accept the full id.
 */
export function shortId(id: string): string {
  return id.replace(/-/g, "").slice(-8);
}
