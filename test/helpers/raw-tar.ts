// Hand-made tar archives from raw 512-byte ustar headers, for hostile-archive tests: nothing in our own packer (or
// any tar library) can tidy them up, so each case carries exactly the fault it names.
import { constants as zlibConstants, crc32, deflateRawSync, gzipSync } from 'node:zlib';

const utf8 = (s: string) => new TextEncoder().encode(s);
const concat = (parts: readonly Uint8Array[]) => new Uint8Array(Buffer.concat(parts));

export interface RawEntry {
  name: string;
  /** The typeflag: '0' file, '1' hard link, '2' symlink, '3' char device, '4' block device, '5' folder, '6' FIFO, 'x' PAX, 'L' GNU long name. */
  type?: string;
  /** The header's size field; defaults to the body's length. Larger than the body simulates truncation. */
  size?: number;
  /** Raw bytes for the 12-byte size field (base-256 sizes). */
  sizeField?: Uint8Array;
  body?: Uint8Array;
  linkname?: string;
  prefix?: string;
  mode?: number;
}

/** Every raw entry's mtime (seconds). */
const MTIME = 1_700_000_000;

function field(block: Uint8Array, offset: number, length: number, value: string | Uint8Array) {
  const bytes = typeof value === 'string' ? utf8(value) : value;
  if (bytes.length > length) throw new Error(`test bug: ${JSON.stringify(value)} does not fit ${length} bytes`);
  block.set(bytes, offset);
}
const octal = (n: number, width: number) => `${n.toString(8).padStart(width - 1, '0')}\0`;

/** One ustar header block with a correct checksum. */
export function ustarHeader(e: RawEntry): Uint8Array {
  const b = new Uint8Array(512);
  const type = e.type ?? '0';
  field(b, 0, 100, e.name);
  field(b, 100, 8, octal(e.mode ?? (type === '5' ? 0o755 : 0o644), 8));
  field(b, 108, 8, octal(0, 8));
  field(b, 116, 8, octal(0, 8));
  field(b, 124, 12, e.sizeField ?? octal(e.size ?? e.body?.byteLength ?? 0, 12));
  field(b, 136, 12, octal(MTIME, 12));
  field(b, 156, 1, type);
  field(b, 157, 100, e.linkname ?? '');
  field(b, 257, 8, 'ustar\u000000');
  field(b, 345, 155, e.prefix ?? '');
  b.fill(0x20, 148, 156);
  const sum = b.reduce((a, x) => a + x, 0);
  field(b, 148, 8, `${sum.toString(8).padStart(6, '0')}\0 `);
  return b;
}

/** Header, body, zero padding to the next block. */
export function rawEntry(e: RawEntry): Uint8Array[] {
  const body = e.body ?? new Uint8Array(0);
  return [ustarHeader(e), body, new Uint8Array(-body.byteLength & 511)];
}

/** A PAX extended header ('x') carrying `records`, applying to `e`. */
export function paxEntry(records: Record<string, string>, e: RawEntry): Uint8Array[] {
  const text = Object.entries(records)
    .map(([k, v]) => {
      const rest = ` ${k}=${v}\n`;
      let len = utf8(rest).length + 1;
      while (`${len}`.length + utf8(rest).length !== len) len = `${len}`.length + utf8(rest).length;
      return `${len}${rest}`;
    })
    .join('');
  return [...rawEntry({ name: 'PaxHeader', type: 'x', body: utf8(text) }), ...rawEntry(e)];
}

/** A whole tar: the entries' blocks, then (unless `eof: false`) the two zero blocks. */
export function rawTar(parts: readonly Uint8Array[], { eof = true } = {}): Uint8Array {
  return concat(eof ? [...parts, new Uint8Array(1024)] : parts);
}
export const rawTarGz = (parts: readonly Uint8Array[], opts?: { eof?: boolean }) => new Uint8Array(gzipSync(rawTar(parts, opts)));

/**
 * gzip(`head` + `mib` MiB of zeros) built from one deflated MiB repeated, so the bomb is made in milliseconds and
 * never exists inflated. Each segment ends on a full flush, so copies chain. With one tar header announcing a
 * `mib` MiB file as `head` (the default), the zeros are its body; with a whole small tar, they are padding after its end marker.
 */
export function zeroBomb(mib: number, head: Uint8Array = ustarHeader({ name: 'r/zeros.bin', size: mib * 2 ** 20 })): Uint8Array {
  const zeros = new Uint8Array(2 ** 20);
  const flush = { finishFlush: zlibConstants.Z_FULL_FLUSH };
  const segment = deflateRawSync(zeros, flush);
  let crc = crc32(head);
  for (let i = 0; i < mib; i++) crc = crc32(zeros, crc);
  const trailer = Buffer.alloc(8);
  trailer.writeUInt32LE(crc >>> 0, 0);
  trailer.writeUInt32LE((head.byteLength + mib * 2 ** 20) % 2 ** 32, 4);
  const gzipHeader = Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
  const finalEmptyBlock = Buffer.from([0x03, 0x00]);
  return concat([gzipHeader, deflateRawSync(head, flush), ...Array<Buffer>(mib).fill(segment), finalEmptyBlock, trailer]);
}
