const MAX_DEPTH = 32;
const LONE_SURROGATE = /\p{Surrogate}/u;

/** An unpaired UTF-16 surrogate: not valid Unicode, and UTF-8 would store U+FFFD instead of it. */
export const hasLoneSurrogate = (s: string) => LONE_SURROGATE.test(s);

/**
 * Why a caller's JSON value cannot be stored as-is in Postgres jsonb or re-encoded byte for byte, or undefined
 * when it can: NUL characters and unpaired surrogates (jsonb rejects them; UTF-8 cannot encode them), the key
 * `__proto__` (JavaScript objects silently drop it), nesting deeper than 32 levels, and numbers JSON parsing has
 * already changed: beyond ±(2^53 − 1) an integer is rounded (9007199254740993 becomes …992) and out of range it is
 * Infinity (1e400), stored as null. Decimals are kept as IEEE doubles, in their shortest exact form.
 */
export function jsonProblem(value: unknown, depth = 0): string | undefined {
  if (depth > MAX_DEPTH) return `nested deeper than ${MAX_DEPTH} levels`;
  if (typeof value === 'string') return textProblem(value);
  if (typeof value === 'number') return numberProblem(value);
  if (Array.isArray(value)) {
    for (const v of value) {
      const p = jsonProblem(v, depth + 1);
      if (p) return p;
    }
    return undefined;
  }
  if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      if (k === '__proto__') return 'the key "__proto__" is not allowed';
      const p = textProblem(k) ?? jsonProblem(v, depth + 1);
      if (p) return p;
    }
  }
  return undefined;
}

/** NUL or an unpaired surrogate in a string; undefined when it is fine. */
export function textProblem(s: string): string | undefined {
  if (s.includes('\u0000')) return 'contains a NUL character';
  if (hasLoneSurrogate(s)) return 'contains an unpaired UTF-16 surrogate (not valid Unicode)';
  return undefined;
}

/** A number that does not stand for what was sent; undefined when it does. */
function numberProblem(n: number): string | undefined {
  if (!Number.isFinite(n)) return 'a number too large to store (it would become null)';
  if (Number.isInteger(n) && !Number.isSafeInteger(n)) return `an integer beyond ±${Number.MAX_SAFE_INTEGER} cannot be kept exactly: send it as a string`;
  return undefined;
}
