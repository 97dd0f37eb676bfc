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

const COUNT = 0;
const IN_ORDER = 1;
const AHEAD = 2;
type PieceMode = typeof COUNT | typeof IN_ORDER | typeof AHEAD;

/**
 * One piece of file data: the first `left` bytes given to `body` are the file's (what the packet's data
 * length names; bytes a packet carries past it are padding), `done` when its packet ended. Counted only
 * (COUNT), hashed as it streams (IN_ORDER), or copied to wait for a gap before it (AHEAD).
 */
export class FilePiece {
  constructor(
    private readonly stream: FileStream,
    private readonly mode: PieceMode,
    private left: number,
    private readonly pieces: Buffer[] | undefined,
  ) {}

  body(data: Buffer): void {
    if (this.left <= 0) return;
    const piece = data.length <= this.left ? data : data.subarray(0, this.left);
    this.left -= piece.length;
    this.stream.take(this.mode, piece, this.pieces);
  }

  done(): void {
    this.stream.settle();
  }
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

  /**
   * Starts a piece of data at `offset` (a DATA reply's or a WRITE's), of which `limit` bytes are file data;
   * its bytes go to the piece's `body` as they stream. One object per piece, no closure (a transfer has
   * thousands a second).
   */
  begin(offset: number, limit: number): FilePiece {
    if (this.hash === null) return new FilePiece(this, COUNT, limit, undefined);
    if (offset === this.next) return new FilePiece(this, IN_ORDER, limit, undefined);
    if (offset < this.next) {
      this.hash = null;
      return new FilePiece(this, COUNT, limit, undefined);
    }
    const pieces: Buffer[] = [];
    this.ahead.set(offset, pieces);
    return new FilePiece(this, AHEAD, limit, pieces);
  }

  /** A piece's bytes (see FilePiece). */
  take(mode: PieceMode, data: Buffer, pieces: Buffer[] | undefined): void {
    this.bytes += data.length;
    if (mode === IN_ORDER) {
      this.next += data.length;
      this.hash?.update(data);
    } else if (mode === AHEAD && this.hash !== null) {
      if (this.aheadBytes + data.length > REORDER_LIMIT || this.budget.left < data.length) return this.notSequential();
      this.aheadBytes += data.length;
      this.budget.left -= data.length;
      pieces!.push(Buffer.from(data));
    }
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
