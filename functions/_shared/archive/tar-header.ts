/** One tar block; headers and bodies are padded to whole blocks. */
export const TAR_BLOCK = 512;
/** The end-of-archive marker: two zero blocks. */
export const TAR_END = new Uint8Array(2 * TAR_BLOCK);

export interface EntryHeader {
  /** The entry's path; a folder's ends with "/". */
  name: string;
  type: 'file' | 'directory';
  size: number;
  mode: number;
  /** Seconds since the epoch. */
  mtime: number;
}

const utf8 = new TextEncoder();
const NAME = 100;
const PREFIX = 155;
const MAGIC = utf8.encode('ustar\u000000');

/**
 * The header block(s) of one entry, as ustar with owner 0/0 and no owner names: the name in the name field, else
 * split over the prefix and name fields at a "/", else in a PAX `path` record before the header (what GNU tar and
 * Python's tarfile read). Written by hand rather than through a tar library's web streams: on the packing path,
 * where every microsecond of a save counts, it is a few array writes.
 */
export function tarHeader(h: EntryHeader): Uint8Array {
  const name = utf8.encode(h.name);
  if (name.length <= NAME) return ustar(h, name);
  const split = ustarSplit(name);
  if (split !== undefined) return ustar(h, name.subarray(split + 1), name.subarray(0, split));
  // Too long for ustar: a PAX record carries the path; the name field keeps what fits (whole characters).
  const record = paxRecord('path', name);
  const pax = ustar({ ...h, type: 'pax', size: record.length, mode: 0o644 }, utf8.encode('././@PaxHeader'));
  const field = new Uint8Array(NAME);
  const { written } = utf8.encodeInto(h.name, field);
  const out = new Uint8Array(2 * TAR_BLOCK + padded(record.length));
  out.set(pax);
  out.set(record, TAR_BLOCK);
  out.set(ustar(h, field.subarray(0, written)), out.length - TAR_BLOCK);
  return out;
}

/** Bytes of zero padding after a body of `size` bytes. */
export const padding = (size: number) => -size & (TAR_BLOCK - 1);
const padded = (size: number) => size + padding(size);

function ustar(h: Omit<EntryHeader, 'name' | 'type'> & { type: EntryHeader['type'] | 'pax' }, name: Uint8Array, prefix?: Uint8Array): Uint8Array {
  const b = new Uint8Array(TAR_BLOCK);
  b.set(name, 0);
  octal(b, 100, 8, h.mode);
  octal(b, 108, 8, 0); // uid
  octal(b, 116, 8, 0); // gid
  octal(b, 124, 12, h.size);
  octal(b, 136, 12, h.mtime);
  b[156] = h.type === 'file' ? 0x30 : h.type === 'directory' ? 0x35 : 0x78; // '0', '5', 'x'
  b.set(MAGIC, 257);
  if (prefix) b.set(prefix, 345);
  b.fill(0x20, 148, 156); // the checksum counts its own field as spaces
  let sum = 0;
  for (let i = 0; i < TAR_BLOCK; i++) sum += b[i]!;
  octal(b, 148, 7, sum);
  b[155] = 0x20;
  return b;
}

/** `width - 1` octal digits and a NUL. */
function octal(b: Uint8Array, offset: number, width: number, value: number) {
  if (!Number.isSafeInteger(value) || value < 0 || value >= 8 ** (width - 1)) throw new Error(`[archive] ${value} does not fit a tar header field`);
  const digits = value.toString(8).padStart(width - 1, '0');
  for (let i = 0; i < digits.length; i++) b[offset + i] = digits.charCodeAt(i);
  b[offset + width - 1] = 0;
}

/** Where to split a long name into prefix "/" name (the longest prefix that fits), if anywhere. "/" never occurs inside a UTF-8 sequence. */
function ustarSplit(name: Uint8Array): number | undefined {
  for (let i = Math.min(PREFIX, name.length - 2); i > 0; i--) {
    if (name[i] === 0x2f) return name.length - i - 1 <= NAME ? i : undefined;
  }
  return undefined;
}

/** One PAX record, "<length> <key>=<value>\n", its length counting its own digits. */
function paxRecord(key: string, value: Uint8Array): Uint8Array {
  const rest = utf8.encode(` ${key}=`).length + value.length + 1;
  let length = rest + 1;
  while (String(length).length + rest !== length) length = String(length).length + rest;
  const record = new Uint8Array(length);
  const head = utf8.encode(`${length} ${key}=`);
  record.set(head);
  record.set(value, head.length);
  record[length - 1] = 0x0a;
  return record;
}
