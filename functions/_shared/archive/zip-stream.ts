import { deflateRaw, deflateRawSync } from 'node:zlib';
import { Zip, ZipPassThrough, type FlateError } from 'fflate';
import { archiveTooLarge } from '../errors.ts';
import { concat, unpackStream, type ByteChunks, type UnpackLimits } from './tar-gz.ts';

/** Zip output waiting for the reader, at most (then the unpack waits): memory stays bounded whatever the generation. */
const BUFFERED_BYTES = 1024 * 1024;
/** Without ZIP64 (fflate writes none) a zip holds at most this many entries. */
const MAX_ZIP_ENTRIES = 65_535;
const EMPTY = new Uint8Array(0);
/** Unix (APPNOTE 4.4.2.2), so unzip applies the modes below. */
const OS_UNIX = 3;
const FILE_ATTRS = (0o100644 << 16) >>> 0;
/** The mode as for a file, plus MS-DOS's directory bit (0x10), which Windows and Python's zipfile look at. */
const DIR_ATTRS = ((0o040755 << 16) | 0x10) >>> 0;

/**
 * Streams a tar.gz's entries as a zip, in the same order and under the same names (the root folder included,
 * folders as `name/` entries), deterministic: the same archive always gives the same bytes on one runtime. fflate
 * writes the zip; each file is deflated whole by the platform's zlib at level 6 (`NativeDeflate`: 5x fflate's
 * speed, and one call per file, so the bytes never depend on how the tar was read; Deno's zlib gives other bytes
 * than Node's, hence the download's weak ETag). Fixed modes (0644 files, 0755 folders, Unix), no extra fields or
 * comments, and every entry's time `mtime` (the manifest's created_at, as the tar has it).
 *
 * DOS times carry no zone and fflate writes them from a Date's local-time fields, so `mtime`'s UTC fields are
 * handed over as local ones: a zip shows the same wall-clock time as the tar's UTC mtime, and the bytes do not
 * depend on the host's zone (Supabase's edge and CI run in UTC anyway) — except for a created_at that falls in the
 * hour a host's zone skips at a DST change, which such a host writes an hour later.
 *
 * Memory stays bounded: the tar is inflated as the zip is read, and the unpack waits while BUFFERED_BYTES of zip
 * output are unread (one file is held whole while it is deflated: at most the limits' maxFileBytes). `gz` must be
 * verified bytes (by sha256); they are still unpacked with every check.
 */
export function zipFromTarGz(gz: ByteChunks, limits: UnpackLimits, mtime: Date): ReadableStream<Uint8Array> {
  const dosTime = asLocalFields(mtime);
  let wake: (() => void) | undefined;
  let cancelled = false;
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  /** Waits while the reader has enough queued; throws once it went away (the unpack stops). */
  const room = async () => {
    while (!cancelled && (controller.desiredSize ?? 1) <= 0) await new Promise<void>((resolve) => (wake = resolve));
    if (cancelled) throw CANCELLED;
  };
  let failure: unknown;
  const produce = async () => {
    const zip = new Zip((err, chunk, final) => {
      if (err) failure ??= err;
      else if (!cancelled) {
        controller.enqueue(chunk);
        if (final) controller.close();
      }
    });
    let entries = 0;
    const add = (entry: ZipPassThrough, attrs: number) => {
      if (++entries > MAX_ZIP_ENTRIES) throw archiveTooLarge(`more than ${MAX_ZIP_ENTRIES} entries do not fit a zip`);
      Object.assign(entry, { mtime: dosTime, os: OS_UNIX, attrs });
      zip.add(entry);
    };
    await unpackStream(gz, limits, {
      async folder(path) {
        const dir = new ZipPassThrough(`${path}/`);
        add(dir, DIR_ATTRS);
        dir.push(EMPTY, true);
        await room();
      },
      async file(path, _size, chunks) {
        const file = new NativeDeflate(path);
        add(file, FILE_ATTRS);
        for await (const chunk of chunks) file.push(chunk);
        file.push(EMPTY, true);
        await file.done;
        if (failure) throw failure;
        await room();
      },
    });
    zip.end();
    if (failure) throw failure;
  };
  return new ReadableStream<Uint8Array>(
    {
      start(c) {
        controller = c;
        produce().catch((err) => {
          if (err !== CANCELLED) controller.error(err);
        });
      },
      pull() {
        wake?.();
        wake = undefined;
      },
      cancel() {
        cancelled = true;
        wake?.();
      },
    },
    new ByteLengthQueuingStrategy({ highWaterMark: BUFFERED_BYTES }),
  );
}

const CANCELLED = Symbol('cancelled');

const ZLIB = { level: 6 };
const SYNC_DEFLATE_BELOW = 256 * 1024;

/**
 * A zip entry deflated by the platform's zlib: fflate's documented way to bring one's own compression (a
 * ZipPassThrough whose `process` is overridden; fflate still counts the size and CRC of what is pushed). The file
 * is collected, then deflated in one call.
 */
class NativeDeflate extends ZipPassThrough {
  private parts: Uint8Array[] = [];
  private settle!: () => void;
  /** Resolves once the entry's compressed bytes went to the zip. */
  readonly done = new Promise<void>((resolve) => (this.settle = resolve));

  constructor(name: string) {
    super(name);
    this.compression = 8;
  }

  protected override process(chunk: Uint8Array, final: boolean): void {
    // copied: a reader may reuse its buffer once the next chunk is asked for
    if (chunk.byteLength > 0) this.parts.push(chunk.slice());
    if (!final) return;
    const whole = concat(this.parts);
    this.parts = [];
    const emit = (err: Error | null, out: Uint8Array) => {
      this.ondata(err as FlateError | null, (err ? EMPTY : out) as Uint8Array<ArrayBuffer>, true);
      this.settle();
    };
    // Small files in this thread (a thread-pool round trip costs more than deflating 10 KB), large ones off it.
    if (whole.byteLength < SYNC_DEFLATE_BELOW) emit(null, deflateRawSync(whole, ZLIB));
    else deflateRaw(whole, ZLIB, emit);
  }
}

/** A Date whose local-time fields are `t`'s UTC ones, within the years fflate writes as a DOS time (1980–2099). */
function asLocalFields(t: Date): Date {
  const ms = Math.min(Math.max(t.getTime(), Date.UTC(1980, 0, 1)), Date.UTC(2099, 11, 31, 23, 59, 58));
  const u = new Date(ms);
  return new Date(u.getUTCFullYear(), u.getUTCMonth(), u.getUTCDate(), u.getUTCHours(), u.getUTCMinutes(), u.getUTCSeconds());
}
