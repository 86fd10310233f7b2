/**
 * Orders strings by Unicode code point, as Python's `sorted()` does (JavaScript's `<` compares UTF-16 code
 * units, which puts astral characters such as emoji before U+E000–U+FFFF).
 */
export function byCodePoint(a: string, b: string): number {
  const x = a[Symbol.iterator]();
  const y = b[Symbol.iterator]();
  for (;;) {
    const p = x.next();
    const q = y.next();
    if (p.done || q.done) return p.done && q.done ? 0 : p.done ? -1 : 1;
    const d = p.value.codePointAt(0)! - q.value.codePointAt(0)!;
    if (d !== 0) return d;
  }
}
