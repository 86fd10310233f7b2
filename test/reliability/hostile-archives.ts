// Hand-made generation archives for the bad-input corpus: a valid generation (root folder, manifest.json,
// source/, artifacts/) plus exactly one hostile entry or one hostile property, built from raw ustar headers so
// nothing in our own packer can tidy them up. Every hostile name carries MARKER, so a test can look for it on disk.
import { randomUUID } from 'node:crypto';
import { paxEntry, rawEntry, rawTar, rawTarGz, ustarHeader, zeroBomb, type RawEntry } from '../helpers/raw-tar.ts';

export const MARKER = `evil-${randomUUID().slice(0, 8)}`;

const utf8 = (s: string) => new TextEncoder().encode(s);
const concat = (parts: readonly Uint8Array[]) => new Uint8Array(Buffer.concat(parts));

/** The good generation's entries: what CodebeGen's layout holds. */
function goodEntries(root: string, manifest: Uint8Array): Uint8Array[] {
  return [
    ...rawEntry({ name: `${root}/`, type: '5' }),
    ...rawEntry({ name: `${root}/artifacts/`, type: '5' }),
    ...rawEntry({ name: `${root}/manifest.json`, body: manifest }),
    ...rawEntry({ name: `${root}/source/`, type: '5' }),
    ...rawEntry({ name: `${root}/source/app.py`, body: utf8('print("fine")\n') }),
  ];
}

export interface HostileArchive {
  name: string;
  /** The archive for the generation whose root folder is `root` and whose real manifest is `manifest`. */
  build(root: string, manifest: Uint8Array): Uint8Array;
  /** A sound tar whose only fault is the generation's layout: a plain tar reader takes it, a generation reader must not. */
  layout?: true;
}

/** The control: the same hand-made layout with nothing wrong. Must be accepted, or the corpus proves nothing. */
export const goodArchive = (root: string, manifest: Uint8Array) => rawTarGz(goodEntries(root, manifest));

const withEntry = (name: string, bad: (root: string) => Uint8Array[]): HostileArchive => ({
  name,
  build: (root, manifest) => rawTarGz([...goodEntries(root, manifest), ...bad(root)]),
});
const file = (name: string, extra: Partial<RawEntry> = {}) => rawEntry({ name, body: utf8('pwned\n'), ...extra });

/** Every hostile archive the corpus tries. `maxEntries` is the unpacker's entry limit (functions/_shared/limits.ts). */
export function hostileArchives(maxEntries: number): HostileArchive[] {
  return [
    // paths
    withEntry('"../" path', () => file(`../${MARKER}`)),
    withEntry('"../" climbing out of the root', (r) => file(`${r}/source/../../../../${MARKER}`)),
    withEntry('absolute path', () => file(`/tmp/${MARKER}`)),
    withEntry('".." in the ustar prefix field', (r) => file(`${MARKER}`, { prefix: `${r}/../..` })),
    withEntry('absolute ustar prefix', () => file(MARKER, { prefix: '/tmp' })),
    withEntry('PAX path record with ".."', (r) => paxEntry({ path: `${r}/source/../../../${MARKER}` }, { name: `${r}/source/innocent.py`, body: utf8('x') })),
    withEntry('GNU long name that is absolute', (r) => [...rawEntry({ name: '././@LongLink', type: 'L', body: utf8(`/tmp/${MARKER}\0`) }), ...file(`${r}/source/short.py`)]),
    withEntry('backslash traversal', (r) => file(`${r}\\..\\..\\${MARKER}`)),
    withEntry('drive letter', () => file(`C:/${MARKER}`)),
    withEntry('control character in a name', (r) => file(`${r}/source/a\u001b[2J${MARKER}`)),
    { ...withEntry('entry outside the generation root', () => file(`other-root/${MARKER}`)), layout: true },
    { ...withEntry('file at the top level', () => file(`${MARKER}.sh`)), layout: true },
    // links and special files
    withEntry('symlink to /etc/passwd', (r) => rawEntry({ name: `${r}/source/${MARKER}`, type: '2', linkname: '/etc/passwd' })),
    withEntry('symlink to a folder, then a file through it', (r) => [...rawEntry({ name: `${r}/source/lnk`, type: '2', linkname: '/tmp' }), ...file(`${r}/source/lnk/${MARKER}`)]),
    withEntry('hard link to /etc/passwd', (r) => rawEntry({ name: `${r}/source/${MARKER}`, type: '1', linkname: '/etc/passwd' })),
    withEntry('hard link inside the archive', (r) => rawEntry({ name: `${r}/source/${MARKER}`, type: '1', linkname: `${r}/source/app.py` })),
    withEntry('character device', (r) => rawEntry({ name: `${r}/source/${MARKER}`, type: '3' })),
    withEntry('block device', (r) => rawEntry({ name: `${r}/source/${MARKER}`, type: '4' })),
    withEntry('FIFO', (r) => rawEntry({ name: `${r}/source/${MARKER}`, type: '6' })),
    // duplicates and collisions
    withEntry('duplicate file', (r) => file(`${r}/source/app.py`)),
    withEntry('duplicate after normalisation', (r) => file(`./${r}//source/./app.py`)),
    withEntry('duplicate manifest.json', (r) => file(`${r}/manifest.json`)),
    withEntry('file and folder with one name', (r) => [...file(`${r}/source/x`), ...file(`${r}/source/x/${MARKER}`)]),
    // sizes that lie
    { name: 'header size larger than the data (truncated entry)', build: (r, m) => rawTarGz([...goodEntries(r, m), ...rawEntry({ name: `${r}/source/${MARKER}`, size: 100_000, body: utf8('short') })], { eof: false }) },
    withEntry('header size smaller than the data', (r) => rawEntry({ name: `${r}/source/${MARKER}`, size: 3, body: new Uint8Array(2048).fill(0x41) })),
    withEntry('base-256 size of 1 TiB', (r) => rawEntry({ name: `${r}/source/${MARKER}`, sizeField: new Uint8Array([0x80, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]) })),
    withEntry('PAX size record larger than the data', (r) => paxEntry({ size: '99999999' }, { name: `${r}/source/${MARKER}`, body: utf8('short') })),
    { name: 'gzip length trailer that lies', build: (r, m) => { const gz = goodArchive(r, m); gz[gz.byteLength - 4]! ^= 0x10; return gz; } },
    { name: 'gzip CRC that lies', build: (r, m) => { const gz = goodArchive(r, m); gz[gz.byteLength - 8]! ^= 0xff; return gz; } },
    // broken or not an archive
    { name: 'truncated gzip', build: (r, m) => goodArchive(r, m).subarray(0, 200) },
    { name: 'tar cut at an entry boundary (no end marker)', build: (r, m) => rawTarGz(goodEntries(r, m), { eof: false }) },
    { name: 'uncompressed tar', build: (r, m) => rawTar(goodEntries(r, m)) },
    { name: 'random bytes behind a gzip magic', build: () => concat([new Uint8Array([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]), new Uint8Array(300).fill(0xa7)]) },
    { name: 'gzip of an empty tar', build: () => rawTarGz([]) },
    // generation-level lies
    { name: 'no manifest.json', layout: true, build: (r) => rawTarGz([...rawEntry({ name: `${r}/`, type: '5' }), ...file(`${r}/source/app.py`)]) },
    { name: 'manifest.json that is not JSON', layout: true, build: (r) => rawTarGz([...rawEntry({ name: `${r}/`, type: '5' }), ...rawEntry({ name: `${r}/manifest.json`, body: utf8('{"generation_id": ') }), ...file(`${r}/source/app.py`)]) },
    {
      name: 'manifest.json naming another generation',
      layout: true,
      build: (r, m) => {
        const other = { ...JSON.parse(new TextDecoder().decode(m)), generation_id: randomUUID() };
        return rawTarGz([...rawEntry({ name: `${r}/`, type: '5' }), ...rawEntry({ name: `${r}/manifest.json`, body: utf8(JSON.stringify(other)) }), ...file(`${r}/source/app.py`)]);
      },
    },
    // bombs and limits
    { name: 'gzip bomb (1 GiB of zeros)', build: (r) => zeroBomb(1024, ustarHeader({ name: `${r}/source/${MARKER}.bin`, size: 1024 * 2 ** 20 })) },
    { name: `more entries than the limit (${maxEntries + 1})`, build: (r, m) => rawTarGz([...goodEntries(r, m), ...Array.from({ length: maxEntries + 1 }, (_, i) => file(`${r}/source/f${i}.py`)).flat()]) },
  ];
}
