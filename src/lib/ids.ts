import { v7 as uuidv7, validate, version } from "uuid";

/** Identifiers are UUIDv7: time-ordered in indexes, opaque to users. */
export function newId(): string {
  return uuidv7();
}

export function isUuid(value: string): boolean {
  return validate(value) && version(value) >= 1;
}
