import { generationDirName, type GenerationRef } from './generation-archive.ts';
import { unpackStream, type ByteChunks, type TreeFile, type UnpackLimits } from './tar-gz.ts';

/** Thrown inside the unpack to stop it once every wanted file is read (never escapes this module). */
const DONE = Symbol('done');

/**
 * The source files (`v{n}__{id}/source/...`, paths relative to `source/`) of a generation archive, read with every
 * check of `unpackStream`; with `wanted`, only those paths, and the unpack stops once all are read.
 * @example await readSourceFiles([gz], ref, limits, new Set(['app/main.py'])) // [{ path: 'app/main.py', data }]
 */
export async function readSourceFiles(gz: ByteChunks, ref: GenerationRef, limits: UnpackLimits, wanted?: ReadonlySet<string>): Promise<TreeFile[]> {
  const prefix = `${generationDirName(ref)}/source/`;
  const out: TreeFile[] = [];
  try {
    await unpackStream(gz, limits, {
      folder: () => {},
      async file(path, size, chunks) {
        const rel = path.startsWith(prefix) ? path.slice(prefix.length) : undefined;
        if (rel === undefined || (wanted && !wanted.has(rel))) {
          for await (const _ of chunks);
          return;
        }
        const data = new Uint8Array(size);
        let at = 0;
        for await (const c of chunks) {
          data.set(c, at);
          at += c.byteLength;
        }
        out.push({ path: rel, data });
        if (wanted && out.length === wanted.size) throw DONE;
      },
    });
  } catch (err) {
    if (err !== DONE) throw err;
  }
  return out;
}
