const MAX_DEPTH = 32;
const LONE_SURROGATE = /\p{Surrogate}/u;

/** An unpaired UTF-16 surrogate: not valid Unicode, and UTF-8 would store U+FFFD instead of it. */
export const hasLoneSurrogate = (s: string) => LONE_SURROGATE.test(s);

/**
 * Why a caller's JSON value cannot be stored as-is in Postgres jsonb or re-encoded byte for byte, or undefined
 * when it can: NUL characters and unpaired surrogates (jsonb rejects them; UTF-8 cannot encode them), the key
 * `__proto__` (JavaScript objects silently drop it) and nesting deeper than 32 levels.
 */
export function jsonProblem(value: unknown, depth = 0): string | undefined {
  if (depth > MAX_DEPTH) return `nested deeper than ${MAX_DEPTH} levels`;
  if (typeof value === 'string') return textProblem(value);
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
