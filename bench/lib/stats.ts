/** The p-th percentile of ascending `sorted` (nearest rank, as bench/save-latency.ts takes it). */
export const percentile = (sorted: readonly number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;

/** `n` to `digits` decimals, as a number (for the JSON line). */
export const round = (n: number, digits = 2): number => +n.toFixed(digits);

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Timings (ms) in ascending order, with their p50, p99 and sum. */
export function timings(ms: readonly number[]): { p50: number; p99: number; total: number; count: number } {
  const sorted = [...ms].sort((a, b) => a - b);
  return { p50: percentile(sorted, 50), p99: percentile(sorted, 99), total: sorted.reduce((a, b) => a + b, 0), count: sorted.length };
}
