/**
 * The SHA-256 of one file's bytes in one direction, from pieces that may come out of order (SFTP
 * clients keep many READ and WRITE requests in flight). See sftp-filter.ts.
 */
import { createHash, type Hash } from "node:crypto";

/** Data copied while waiting for a gap before it to be filled, per file and direction. */
export const REORDER_LIMIT = 8 * 1024 * 1024;
/** The same, for all the files of one channel together (a peer with many files open cannot pin more). */
export const CHANNEL_REORDER_LIMIT = 16 * 1024 * 1024;

/** What the files of one channel may hold out of order together (bytes left). */
export interface ReorderBudget {
  left: number;
}

/** In-order SHA-256 of one file's bytes in one direction. */
export class FileStream {
  constructor(private readonly budget: ReorderBudget = { left: CHANNEL_REORDER_LIMIT }) {}

  private hash: Hash | null = createHash("sha256");
  private next = 0;
  private ahead = new Map<number, Buffer[]>();
  private aheadBytes = 0;
  bytes = 0;
  denied: { rule: "download" | "upload" | "maxBytes"; reason: string } | undefined;
  failed: string | undefined;

  /** Starts a piece of data at `offset`; returns a sink for its bytes as they stream. */
  begin(offset: number): (data: Buffer) => void {
    if (this.hash === null) return (data) => void (this.bytes += data.length);
    if (offset === this.next) {
      return (data) => {
        this.bytes += data.length;
        this.next += data.length;
        this.hash?.update(data);
      };
    }
    if (offset < this.next) {
      this.hash = null;
      return (data) => void (this.bytes += data.length);
    }
    const pieces: Buffer[] = [];
    this.ahead.set(offset, pieces);
    return (data) => {
      this.bytes += data.length;
      if (this.hash === null) return;
      if (this.aheadBytes + data.length > REORDER_LIMIT || this.budget.left < data.length) return this.notSequential();
      this.aheadBytes += data.length;
      this.budget.left -= data.length;
      pieces.push(Buffer.from(data));
    };
  }

  /** A piece ended: data waiting for it goes into the hash. */
  settle(): void {
    for (let pieces = this.ahead.get(this.next); pieces && this.hash; pieces = this.ahead.get(this.next)) {
      this.ahead.delete(this.next);
      for (const piece of pieces) {
        this.hash.update(piece);
        this.next += piece.length;
        this.aheadBytes -= piece.length;
        this.budget.left += piece.length;
      }
      if (pieces.length === 0) break;
    }
  }

  private notSequential(): void {
    this.hash = null;
    this.ahead.clear();
    this.budget.left += this.aheadBytes;
    this.aheadBytes = 0;
  }

  /** The hash when every byte came in order from offset 0 with no gap left, else null. */
  digest(): string | null {
    this.settle();
    if (this.hash === null || this.ahead.size > 0) {
      this.notSequential();
      return null;
    }
    const hex = this.hash.digest("hex");
    this.hash = null;
    return hex;
  }
}
