/** Counters for injected faults; every request takes at most one of each kind, in arrival order. */
export class Faults {
  private fail = { n: 0, status: 500 as 500 | 503 | 429 };
  private delay = { n: 0, ms: 0 };
  private drop = 0;

  failNext(n: number, status: 500 | 503 | 429 = 500) {
    this.fail = { n, status };
  }

  delayNext(n: number, ms: number) {
    this.delay = { n, ms };
  }

  dropNext(n: number) {
    this.drop = n;
  }

  clear() {
    this.fail.n = this.delay.n = this.drop = 0;
  }

  /** What happens to the request arriving now. */
  take(): { drop: boolean; delayMs: number; failWith: 500 | 503 | 429 | null } {
    const drop = this.drop > 0;
    if (drop) this.drop--;
    const delayMs = !drop && this.delay.n > 0 ? (this.delay.n--, this.delay.ms) : 0;
    const failWith = !drop && this.fail.n > 0 ? (this.fail.n--, this.fail.status) : null;
    return { drop, delayMs, failWith };
  }
}
