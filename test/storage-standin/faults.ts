/** What can happen to one request instead of a normal answer. */
export type FaultKind = 500 | 503 | 429 | 'drop' | 'hang' | 'cut';

export interface Fault {
  /** Close the socket without answering (a dropped connection). */
  drop: boolean;
  delayMs: number;
  /** Answer normally (the request takes effect) but only after this long: the client times out first. */
  hangMs: number;
  failWith: 500 | 503 | 429 | null;
  /** Send the headers and half the body, then close the socket (a connection lost mid-body). */
  cut: boolean;
}

/**
 * Injected faults. Counters (`failNext`, `delayNext`, `dropNext`): every request takes at most one of each kind, in
 * arrival order. A share (`failShare`): each request, with that probability, takes one of the given kinds, chosen by
 * a seeded generator, so a run can be repeated exactly.
 */
export class Faults {
  private fail = { n: 0, status: 500 as 500 | 503 | 429 };
  private delay = { n: 0, ms: 0 };
  private drop = 0;
  private share: { p: number; kinds: FaultKind[]; hangMs: number; random: () => number } | undefined;
  /** How many requests took each injected fault, by kind. */
  readonly injected: Record<string, number> = {};

  failNext(n: number, status: 500 | 503 | 429 = 500) {
    this.fail = { n, status };
  }

  delayNext(n: number, ms: number) {
    this.delay = { n, ms };
  }

  dropNext(n: number) {
    this.drop = n;
  }

  /** From now on, fails `p` (0..1) of all requests with one of `kinds`; 'hang' answers only after `hangMs`. */
  failShare(p: number, kinds: FaultKind[] = [500, 503, 'drop', 'hang', 'cut'], opts: { seed?: number; hangMs?: number } = {}) {
    if (!(p >= 0 && p <= 1) || kinds.length === 0) throw new Error('failShare: p in [0, 1] and at least one kind');
    this.share = { p, kinds, hangMs: opts.hangMs ?? 30_000, random: mulberry32(opts.seed ?? 1) };
  }

  clear() {
    this.fail.n = this.delay.n = this.drop = 0;
    this.share = undefined;
  }

  /** What happens to the request arriving now. */
  take(): Fault {
    const drop = this.drop > 0;
    if (drop) this.drop--;
    const delayMs = !drop && this.delay.n > 0 ? (this.delay.n--, this.delay.ms) : 0;
    const failWith = !drop && this.fail.n > 0 ? (this.fail.n--, this.fail.status) : null;
    const fault: Fault = { drop, delayMs, hangMs: 0, failWith, cut: false };
    if (drop) this.count('drop');
    else if (failWith) this.count(String(failWith));
    else if (this.share && this.share.random() < this.share.p) {
      const kind = this.share.kinds[Math.floor(this.share.random() * this.share.kinds.length)]!;
      this.count(String(kind));
      if (kind === 'drop') fault.drop = true;
      else if (kind === 'cut') fault.cut = true;
      else if (kind === 'hang') fault.hangMs = this.share.hangMs;
      else fault.failWith = kind;
    }
    return fault;
  }

  private count(kind: string) {
    this.injected[kind] = (this.injected[kind] ?? 0) + 1;
  }
}

/** A small seeded PRNG (mulberry32): the same seed gives the same faults. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
