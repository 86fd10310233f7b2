import { Gzip } from 'fflate';

/**
 * Deflate sees the input in pieces of exactly this size (fflate ends a deflate block wherever a push ends), so the
 * output depends on the bytes alone — not on how they were read — and packing from memory or from disk agree.
 */
const PIECE = 256 * 1024;

/**
 * gzip whose bytes depend only on its input, on Node and on Deno alike: fflate (pure JS, not the platform's
 * zlib) at level 6, the level `gzip` and `tar czf` use; a fixed hash size (fflate's default varies with the
 * input's length); no time or name in the header. The packer's deflate before issue 15; now only
 * `packTreeLegacy` uses it, to check archives recorded with it (new archives are deflated by zlib).
 */
export class DeterministicGzip {
  private readonly piece = new Uint8Array(PIECE);
  private filled = 0;
  private out: Uint8Array[] = [];
  private readonly gzip = new Gzip({ level: 6, mem: 4, mtime: 0 }, (chunk) => this.out.push(chunk));

  /** Takes `bytes` (copied or compressed at once: the caller may reuse them). */
  write(bytes: Uint8Array): void {
    let at = 0;
    if (this.filled > 0) {
      at = Math.min(bytes.length, PIECE - this.filled);
      this.piece.set(bytes.subarray(0, at), this.filled);
      this.filled += at;
      if (this.filled < PIECE) return;
      this.gzip.push(this.piece);
      this.filled = 0;
    }
    for (; bytes.length - at >= PIECE; at += PIECE) this.gzip.push(bytes.subarray(at, at + PIECE));
    this.piece.set(bytes.subarray(at));
    this.filled = bytes.length - at;
  }

  /** Compresses what is left and writes the trailer. */
  end(): void {
    this.gzip.push(this.piece.subarray(0, this.filled), true);
  }

  /** The compressed bytes produced since the last call. */
  take(): Uint8Array[] {
    const out = this.out;
    this.out = [];
    return out;
  }
}
