/**
 * The network between us and Supabase Storage in every benchmark: the stand-in (its own process) waits this long
 * per request, plus the time its bodies take at this bandwidth. 50 ms and 100 Mbit/s: a server talking to a
 * Storage API in another region of the same continent.
 */
export const REMOTE_STORAGE = { latencyMs: 50, bytesPerSecond: 12_500_000 } as const;

/** How the network is described in a table's heading. */
export const describeNetwork = (n: { latencyMs: number; bytesPerSecond: number }) =>
  `${n.latencyMs} ms, ${Math.round((n.bytesPerSecond * 8) / 1e6)} Mbit/s`;
