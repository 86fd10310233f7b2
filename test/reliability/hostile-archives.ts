// Hand-made generation archives for the bad-input corpus: a valid generation (root folder, manifest.json,
// source/, artifacts/) plus exactly one hostile entry or one hostile property, built from raw ustar headers so
// nothing in our own packer can tidy them up. Every hostile name carries MARKER, so a test can look for it on disk.
import { randomUUID } from 'node:crypto';
import { constants as zlibConstants, crc32, deflateRawSync, gzipSync } from 'node:zlib';

export const MARKER = `evil-${randomUUID().slice(0, 8)}`;

const utf8 = (s: string) => new TextEncoder().encode(s);
const concat = (parts: readonly Uint8Array[]) => new Uint8Array(Buffer.concat(parts));

interface RawEntry {
  name: string;
  /** '0' file, '1' hard link, '2' symlink, '3' char device, '4' block device, '5' folder, '6' FIFO, 'x' PAX, 'L' GNU long name. */
  type?: string;
  /** The header's size field; defaults to the body's length. */
  size?: number;
  body?: Uint8Array;
  linkname?: string;
  prefix?: string;
  /** Raw bytes for the 12-byte size field (base-256 sizes). */
  sizeField?: Uint8Array;
}

function put(block: Uint8Array, offset: number, length: number, value: string | Uint8Array) {
  const bytes = typeof value === 'string' ? utf8(value) : value;
  if (bytes.length > length) throw new Error(`test bug: ${JSON.stringify(value)} does not fit ${length} bytes`);
  block.set(bytes, offset);
}
const octal = (n: number, width: number) => `${n.toString(8).padStart(width - 1, '0')}\0`;

function header(e: RawEntry): Uint8Array {
  const b = new Uint8Array(512);
  const type = e.type ?? '0';
  put(b, 0, 100, e.name);
  put(b, 100, 8, octal(type === '5' ? 0o755 : 0o644, 8));
  put(b, 108, 8, octal(0, 8));
  put(b, 116, 8, octal(0, 8));
  put(b, 124, 12, e.sizeField ?? octal(e.size ?? e.body?.byteLength ?? 0, 12));
  put(b, 136, 12, octal(1_700_000_000, 12));
  put(b, 156, 1, type);
  put(b, 157, 100, e.linkname ?? '');
  put(b, 257, 8, 'ustar\u000000');
  put(b, 345, 155, e.prefix ?? '');
  b.fill(0x20, 148, 156);
  put(b, 148, 8, `${b.reduce((a, x) => a + x, 0).toString(8).padStart(6, '0')}\0 `);
  return b;
}

/** Header, body, padding to the next 512-byte block. */
function entry(e: RawEntry): Uint8Array[] {
  const body = e.body ?? new Uint8Array(0);
  return [header(e), body, new Uint8Array(-body.byteLength & 511)];
}

function pax(records: Record<string, string>, e: RawEntry): Uint8Array[] {
  const text = Object.entries(records)
    .map(([k, v]) => {
      const rest = ` ${k}=${v}\n`;
      let len = utf8(rest).length + 1;
      while (`${len}`.length + utf8(rest).length !== len) len = `${len}`.length + utf8(rest).length;
      return `${len}${rest}`;
    })
    .join('');
  return [...entry({ name: 'PaxHeader', type: 'x', body: utf8(text) }), ...entry(e)];
}

const EOF = new Uint8Array(1024);
const tarGz = (parts: readonly Uint8Array[], { eof = true } = {}) => new Uint8Array(gzipSync(concat(eof ? [...parts, EOF] : parts)));

/** The good generation's entries: what CodebeGen's layout holds. */
function goodEntries(root: string, manifest: Uint8Array): Uint8Array[] {
  return [
    ...entry({ name: `${root}/`, type: '5' }),
    ...entry({ name: `${root}/artifacts/`, type: '5' }),
    ...entry({ name: `${root}/manifest.json`, body: manifest }),
    ...entry({ name: `${root}/source/`, type: '5' }),
    ...entry({ name: `${root}/source/app.py`, body: utf8('print("fine")\n') }),
  ];
}

/** gzip of one header announcing `mib` MiB of zeros and those zeros, built from one deflated MiB repeated. */
function zeroBomb(root: string, mib: number): Uint8Array {
  const zeros = new Uint8Array(2 ** 20);
  const flush = { finishFlush: zlibConstants.Z_FULL_FLUSH };
  const head = header({ name: `${root}/source/${MARKER}.bin`, size: mib * 2 ** 20 });
  const segment = deflateRawSync(zeros, flush);
  let crc = crc32(head);
  for (let i = 0; i < mib; i++) crc = crc32(zeros, crc);
  const trailer = Buffer.alloc(8);
  trailer.writeUInt32LE(crc >>> 0, 0);
  trailer.writeUInt32LE((512 + mib * 2 ** 20) % 2 ** 32, 4);
  return concat([Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]), deflateRawSync(head, flush), ...Array<Buffer>(mib).fill(segment), Buffer.from([0x03, 0x00]), trailer]);
}

export interface HostileArchive {
  name: string;
  /** The archive for the generation whose root folder is `root` and whose real manifest is `manifest`. */
  build(root: string, manifest: Uint8Array): Uint8Array;
  /** A sound tar whose only fault is the generation's layout: a plain tar reader takes it, a generation reader must not. */
  layout?: true;
}

/** The control: the same hand-made layout with nothing wrong. Must be accepted, or the corpus proves nothing. */
export const goodArchive = (root: string, manifest: Uint8Array) => tarGz(goodEntries(root, manifest));

const withEntry = (name: string, bad: (root: string) => Uint8Array[]): HostileArchive => ({
  name,
  build: (root, manifest) => tarGz([...goodEntries(root, manifest), ...bad(root)]),
});
const file = (name: string, extra: Partial<RawEntry> = {}) => entry({ name, body: utf8('pwned\n'), ...extra });

/** Every hostile archive the corpus tries. `maxFiles` is the server's MAX_FILES (its unpack limit is twice that). */
export function hostileArchives(maxFiles: number): HostileArchive[] {
  return [
    // paths
    withEntry('"../" path', () => file(`../${MARKER}`)),
    withEntry('"../" climbing out of the root', (r) => file(`${r}/source/../../../../${MARKER}`)),
    withEntry('absolute path', () => file(`/tmp/${MARKER}`)),
    withEntry('".." in the ustar prefix field', (r) => file(`${MARKER}`, { prefix: `${r}/../..` })),
    withEntry('absolute ustar prefix', () => file(MARKER, { prefix: '/tmp' })),
    withEntry('PAX path record with ".."', (r) => pax({ path: `${r}/source/../../../${MARKER}` }, { name: `${r}/source/innocent.py`, body: utf8('x') })),
    withEntry('GNU long name that is absolute', (r) => [...entry({ name: '././@LongLink', type: 'L', body: utf8(`/tmp/${MARKER}\0`) }), ...file(`${r}/source/short.py`)]),
    withEntry('backslash traversal', (r) => file(`${r}\\..\\..\\${MARKER}`)),
    withEntry('drive letter', () => file(`C:/${MARKER}`)),
    withEntry('control character in a name', (r) => file(`${r}/source/a\u001b[2J${MARKER}`)),
    { ...withEntry('entry outside the generation root', () => file(`other-root/${MARKER}`)), layout: true },
    { ...withEntry('file at the top level', () => file(`${MARKER}.sh`)), layout: true },
    // links and special files
    withEntry('symlink to /etc/passwd', (r) => entry({ name: `${r}/source/${MARKER}`, type: '2', linkname: '/etc/passwd' })),
    withEntry('symlink to a folder, then a file through it', (r) => [...entry({ name: `${r}/source/lnk`, type: '2', linkname: '/tmp' }), ...file(`${r}/source/lnk/${MARKER}`)]),
    withEntry('hard link to /etc/passwd', (r) => entry({ name: `${r}/source/${MARKER}`, type: '1', linkname: '/etc/passwd' })),
    withEntry('hard link inside the archive', (r) => entry({ name: `${r}/source/${MARKER}`, type: '1', linkname: `${r}/source/app.py` })),
    withEntry('character device', (r) => entry({ name: `${r}/source/${MARKER}`, type: '3' })),
    withEntry('block device', (r) => entry({ name: `${r}/source/${MARKER}`, type: '4' })),
    withEntry('FIFO', (r) => entry({ name: `${r}/source/${MARKER}`, type: '6' })),
    // duplicates and collisions
    withEntry('duplicate file', (r) => file(`${r}/source/app.py`)),
    withEntry('duplicate after normalisation', (r) => file(`./${r}//source/./app.py`)),
    withEntry('duplicate manifest.json', (r) => file(`${r}/manifest.json`)),
    withEntry('file and folder with one name', (r) => [...file(`${r}/source/x`), ...file(`${r}/source/x/${MARKER}`)]),
    // sizes that lie
    { name: 'header size larger than the data (truncated entry)', build: (r, m) => tarGz([...goodEntries(r, m), ...entry({ name: `${r}/source/${MARKER}`, size: 100_000, body: utf8('short') })], { eof: false }) },
    withEntry('header size smaller than the data', (r) => entry({ name: `${r}/source/${MARKER}`, size: 3, body: new Uint8Array(2048).fill(0x41) })),
    withEntry('base-256 size of 1 TiB', (r) => entry({ name: `${r}/source/${MARKER}`, sizeField: new Uint8Array([0x80, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]) })),
    withEntry('PAX size record larger than the data', (r) => pax({ size: '99999999' }, { name: `${r}/source/${MARKER}`, body: utf8('short') })),
    { name: 'gzip length trailer that lies', build: (r, m) => { const gz = goodArchive(r, m); gz[gz.byteLength - 4]! ^= 0x10; return gz; } },
    { name: 'gzip CRC that lies', build: (r, m) => { const gz = goodArchive(r, m); gz[gz.byteLength - 8]! ^= 0xff; return gz; } },
    // broken or not an archive
    { name: 'truncated gzip', build: (r, m) => goodArchive(r, m).subarray(0, 200) },
    { name: 'tar cut at an entry boundary (no end marker)', build: (r, m) => tarGz(goodEntries(r, m), { eof: false }) },
    { name: 'uncompressed tar', build: (r, m) => concat([...goodEntries(r, m), EOF]) },
    { name: 'random bytes behind a gzip magic', build: () => concat([new Uint8Array([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]), new Uint8Array(300).fill(0xa7)]) },
    { name: 'gzip of an empty tar', build: () => tarGz([]) },
    // generation-level lies
    { name: 'no manifest.json', layout: true, build: (r) => tarGz([...entry({ name: `${r}/`, type: '5' }), ...file(`${r}/source/app.py`)]) },
    { name: 'manifest.json that is not JSON', layout: true, build: (r) => tarGz([...entry({ name: `${r}/`, type: '5' }), ...entry({ name: `${r}/manifest.json`, body: utf8('{"generation_id": ') }), ...file(`${r}/source/app.py`)]) },
    {
      name: 'manifest.json naming another generation',
      layout: true,
      build: (r, m) => {
        const other = { ...JSON.parse(new TextDecoder().decode(m)), generation_id: randomUUID() };
        return tarGz([...entry({ name: `${r}/`, type: '5' }), ...entry({ name: `${r}/manifest.json`, body: utf8(JSON.stringify(other)) }), ...file(`${r}/source/app.py`)]);
      },
    },
    // bombs and limits
    { name: 'gzip bomb (1 GiB of zeros)', build: (r) => zeroBomb(r, 1024) },
    { name: `more entries than the limit (${maxFiles * 2 + 17})`, build: (r, m) => tarGz([...goodEntries(r, m), ...Array.from({ length: maxFiles * 2 + 17 }, (_, i) => file(`${r}/source/f${i}.py`)).flat()]) },
  ];
}
