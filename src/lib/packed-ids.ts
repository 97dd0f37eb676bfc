/**
 * UUIDs packed into one short text for a notification payload (PostgreSQL's NOTIFY takes under 8,000
 * bytes): the 16 bytes of each, back to back, in base64url: 21⅓ characters an id where the JSON of a
 * message per id took ~50. A batch of ended activations travels as a few messages, not one per id.
 */

/** What `packIds` packs: lowercase UUIDs as PostgreSQL and `newId` write them (unpacking gives them back). */
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const BASE64URL = /^[A-Za-z0-9_-]*$/;

/** At most this many ids in one packed text: 6,400 characters, room left for the rest of a message. */
export const MAX_PACKED_IDS = 300;

/** The ids as one text, or null when one is not a lowercase UUID (the caller sends those as they are). */
export function packIds(ids: readonly string[]): string | null {
  let hex = "";
  for (const id of ids) {
    if (!UUID.test(id)) return null;
    hex += id.slice(0, 8) + id.slice(9, 13) + id.slice(14, 18) + id.slice(19, 23) + id.slice(24);
  }
  return Buffer.from(hex, "hex").toString("base64url");
}

/** The ids `packIds` packed, in order, or null when `text` is not such a text. */
export function unpackIds(text: unknown): string[] | null {
  if (typeof text !== "string" || !BASE64URL.test(text)) return null;
  const bytes = Buffer.from(text, "base64url");
  // Buffer.from stops at what it cannot read: the length must be exactly that of whole ids.
  if (bytes.length % 16 !== 0 || Math.ceil((bytes.length * 4) / 3) !== text.length) return null;
  const hex = bytes.toString("hex");
  const ids = new Array<string>(bytes.length / 16);
  for (let i = 0, at = 0; i < ids.length; i++, at += 32)
    ids[i] =
      `${hex.slice(at, at + 8)}-${hex.slice(at + 8, at + 12)}-${hex.slice(at + 12, at + 16)}-` +
      `${hex.slice(at + 16, at + 20)}-${hex.slice(at + 20, at + 32)}`;
  return ids;
}
