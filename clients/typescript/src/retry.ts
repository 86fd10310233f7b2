/** How calls that are safe to repeat are retried: 5xx answers and network failures only, with exponential backoff. */
export interface RetryOptions {
  /** Retries after the first attempt (default 3; 0 turns retries off). */
  retries: number;
  /** The first backoff, doubled each retry, with jitter (default 250 ms). */
  minDelayMs: number;
  /** No backoff is longer than this (default 5 000 ms; also caps a server's Retry-After). */
  maxDelayMs: number;
}

export const DEFAULT_RETRY: RetryOptions = { retries: 3, minDelayMs: 250, maxDelayMs: 5_000 };

/**
 * Worth another try: the server failed or was unavailable. Never 4xx (the request itself is wrong), never 501,
 * never `cloud_corrupt` (the stored copy is bad: asking again reads the same bytes).
 */
export function retryableStatus(status: number, code?: string): boolean {
  return status >= 500 && status !== 501 && code !== 'cloud_corrupt';
}

/** The wait before retry number `retry` (1-based): min·2^(retry−1), capped, with equal jitter (half fixed, half random); a Retry-After wins. */
export function backoffMs(retry: number, options: RetryOptions, retryAfter?: string | null, random = Math.random): number {
  const seconds = retryAfter ? Number(retryAfter) : Number.NaN;
  if (Number.isFinite(seconds) && seconds >= 0) return Math.min(seconds * 1000, options.maxDelayMs);
  const ceiling = Math.min(options.minDelayMs * 2 ** (retry - 1), options.maxDelayMs);
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

/** Resolves after `ms`, or rejects with the signal's reason when it aborts first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
