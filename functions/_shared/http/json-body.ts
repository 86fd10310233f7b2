import type { Context, MiddlewareHandler } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import type { z } from 'zod';
import { AppError, badRequest, ErrorCode, tooLarge } from '../errors.ts';
import { describeIssues } from './schemas.ts';

/** Refuses a body over `maxBytes` with a 413 before it is read whole (Content-Length or streamed). */
export const limitBody = (maxBytes: number): MiddlewareHandler =>
  bodyLimit({
    maxSize: maxBytes,
    onError: () => {
      throw tooLarge(`request body over ${maxBytes} bytes`);
    },
  });

/** 415 unless the request says it is JSON. */
export function requireJson(c: Context): void {
  if (!/^application\/json\b/i.test(c.req.header('content-type') ?? '')) {
    throw new AppError(ErrorCode.UnsupportedMediaType, 415, 'content-type must be application/json');
  }
}

/**
 * The body read as JSON and checked against `schema` (415 not JSON, 400 invalid JSON or a field naming the
 * problem). With `optional`, a request without a body (or an empty one, whatever its Content-Type) is `undefined`.
 * @example const { pinned } = await readJsonBody(c, pinRequest);
 */
export async function readJsonBody<S extends z.ZodType>(c: Context, schema: S, opts: { optional?: boolean } = {}): Promise<z.output<S> | undefined> {
  const bytes = new Uint8Array(await c.req.arrayBuffer());
  if (opts.optional && bytes.byteLength === 0) return undefined;
  requireJson(c);
  const parsed = schema.safeParse(parseJsonBody(bytes));
  if (!parsed.success) throw badRequest(describeIssues(parsed.error));
  return parsed.data;
}

export const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * The body as JSON, refused rather than altered: bytes that are not valid UTF-8 would otherwise be stored as
 * U+FFFD. The 400 names where: the byte offset and the last key before it.
 */
export function parseJsonBody(bytes: Uint8Array): unknown {
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    const at = firstInvalidUtf8(bytes);
    const before = new TextDecoder().decode(bytes.subarray(0, at));
    const key = [...before.matchAll(/"((?:[^"\\]|\\.){0,200})"\s*:/g)].at(-1)?.[1];
    throw badRequest(`body is not valid UTF-8 (at byte ${at}${key === undefined ? '' : `, in the value of "${key}"`})`, ErrorCode.InvalidJson);
  }
  try {
    return JSON.parse(text);
  } catch {
    throw badRequest('body is not valid JSON', ErrorCode.InvalidJson);
  }
}

/** The offset of the first byte that does not start or continue a well-formed UTF-8 sequence. */
function firstInvalidUtf8(b: Uint8Array): number {
  for (let i = 0; i < b.length; ) {
    const x = b[i]!;
    const n = x < 0x80 ? 1 : x >= 0xc2 && x <= 0xdf ? 2 : x >= 0xe0 && x <= 0xef ? 3 : x >= 0xf0 && x <= 0xf4 ? 4 : 0;
    if (n === 0) return i;
    try {
      utf8.decode(b.subarray(i, i + n));
    } catch {
      return i;
    }
    i += n;
  }
  return b.length;
}
