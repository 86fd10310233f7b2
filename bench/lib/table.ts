/**
 * Rows as an aligned text table: the first row is the header, numbers are right-aligned.
 * @example formatTable([['read', 'p50 ms'], ['cached', '1.20']])
 */
export function formatTable(rows: readonly (readonly string[])[]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  const numeric = (s: string) => /^-?[\d.,]+(e[+-]?\d+)?×?$/.test(s);
  // A column whose cells are all numbers (or empty) is right-aligned, its header too.
  const right = widths.map((_, i) => i > 0 && rows.slice(1).every((r) => !r[i] || numeric(r[i]!)));
  return rows
    .map((r) => r.map((cell, i) => (right[i] ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!))).join('  ').trimEnd())
    .join('\n');
}
