import { constants } from 'node:buffer';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { createGunzip, gunzip, type ZlibOptions } from 'node:zlib';
import { AppError, archiveTooLarge, invalidArchive } from '../errors.ts';
import type { ByteChunks } from './tar-gz.ts';

/**
 * Inflates gzip data with the platform's zlib (it checks the CRC and length trailer), failing as soon as the
 * output passes `maxBytes`, so a bomb never fills memory or disk. A failure of the input itself (a read error)
 * passes through as it is and is kept in `failure()`.
 */
export function boundedGunzip(gz: ByteChunks, maxBytes: number) {
  let bytes = 0;
  let failure: unknown;
  async function* chunks(): AsyncGenerator<Uint8Array> {
    async function* input() {
      try {
        yield* gz;
      } catch (err) {
        failure = err;
        throw err;
      }
    }
    // The input buffer pinned to Node 20's 16 KiB (Node 22 raised the default to 64 KiB): a bomb is stopped after
    // as little compressed input on every Node.
    // (a stream option zlib passes on to its Transform; @types/node's ZlibOptions does not list it)
    const options: ZlibOptions & { writableHighWaterMark: number } = { chunkSize: 64 * 1024, writableHighWaterMark: 16 * 1024 };
    const gunzip = createGunzip(options);
    const feeding = pipeline(input, gunzip).catch(() => {}); // its errors surface below, through gunzip
    try {
      for await (const chunk of gunzip as AsyncIterable<Uint8Array>) {
        bytes += chunk.byteLength;
        if (bytes > maxBytes) throw archiveTooLarge(`inflates to more than ${maxBytes} bytes`);
        yield chunk;
      }
    } catch (err) {
      if (err instanceof AppError || err === failure) throw err;
      throw invalidArchive(`bad gzip data (${err instanceof Error ? err.message : String(err)})`);
    } finally {
      gunzip.destroy();
      await feeding;
    }
  }
  return { stream: readableOf(chunks()), bytes: () => bytes, failure: () => failure };
}

const gunzipAsync = promisify(gunzip);

/**
 * `gz` held in memory, inflated in one piece in zlib's thread pool, refused as `boundedGunzip` refuses it: zlib
 * stops as soon as the output passes `maxBytes` (its maxOutputLength), so a bomb costs no more than the bound.
 */
export async function gunzipWithin(gz: Uint8Array, maxBytes: number): Promise<Uint8Array> {
  try {
    // 256 KiB pieces: each is a round trip to the thread pool, and zlib's 16 KiB default takes 2x as long in all
    return await gunzipAsync(gz, { chunkSize: 256 * 1024, maxOutputLength: Math.min(maxBytes, constants.MAX_LENGTH) });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') throw archiveTooLarge(`inflates to more than ${maxBytes} bytes`);
    throw invalidArchive(`bad gzip data (${err instanceof Error ? err.message : String(err)})`);
  }
}

/** A web stream over an async iterable (what `ReadableStream.from` does where it exists). */
function readableOf(chunks: AsyncIterator<Uint8Array>): ReadableStream<Uint8Array> {
  return new ReadableStream({
    async pull(controller) {
      const next = await chunks.next();
      if (next.done) controller.close();
      else controller.enqueue(next.value);
    },
    async cancel() {
      await chunks.return?.();
    },
  });
}
