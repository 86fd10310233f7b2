import type { StreamedFile } from './tar-gz.ts';

/** How many streamed files are read ahead of the one being compressed (each holds one chunk until its turn). */
const READ_AHEAD = 8;

/** The chunks of `files[i]` (undefined: nothing to read), each started `READ_AHEAD` files before its turn. */
export function readAhead(files: (StreamedFile | undefined)[]) {
  const started = new Map<number, { it: AsyncIterator<Uint8Array>; first: Promise<IteratorResult<Uint8Array>> }>();
  let next = 0;
  const startUpTo = (last: number) => {
    for (; next <= Math.min(last, files.length - 1); next++) {
      const it = files[next]?.chunks()[Symbol.asyncIterator]();
      if (!it) continue;
      const first = it.next();
      first.catch(() => {}); // its failure is met when its turn comes (or never, if packing stops before)
      started.set(next, { it, first });
    }
  };
  return {
    async *chunks(i: number): AsyncGenerator<Uint8Array> {
      startUpTo(i + READ_AHEAD);
      const { it, first } = started.get(i)!;
      started.delete(i);
      try {
        for (let r = await first; !r.done; r = await it.next()) yield r.value;
      } finally {
        await it.return?.();
      }
    },
    /** Stops the reads started for files never reached (closing what they opened). */
    async close() {
      await Promise.allSettled([...started.values()].map(({ it, first }) => first.then(() => it.return?.())));
      started.clear();
    },
  };
}
