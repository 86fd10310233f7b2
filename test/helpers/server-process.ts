import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** `scripts/serve.ts` in a process of its own, as `npm start` runs it. */
export class ServerProcess {
  child!: ChildProcess;
  output = '';
  readonly base: string;

  constructor(readonly env: NodeJS.ProcessEnv) {
    this.base = `http://127.0.0.1:${env.PORT}/functions/v1/generations`;
  }

  /** Starts the server and resolves once /health answers. */
  async start(): Promise<this> {
    this.child = spawn(process.execPath, ['--import', 'tsx', 'scripts/serve.ts'], { env: this.env, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stdout!.on('data', (d) => (this.output += d));
    this.child.stderr!.on('data', (d) => (this.output += d));
    for (let i = 0; i < 300; i++) {
      if (this.child.exitCode !== null) break;
      try {
        if ((await fetch(`${this.base}/health`)).status < 500) return this;
      } catch {
        /* not listening yet */
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`server did not start:\n${this.output}`);
  }

  /** Starts the server expecting it to refuse: resolves with its exit code; throws if it comes up instead. */
  async startRefused(): Promise<number | null> {
    try {
      await this.start();
    } catch {
      if (this.child.exitCode === null && this.child.signalCode === null) await this.kill();
      return this.exited();
    }
    await this.kill();
    throw new Error(`the server started, but should have refused:\n${this.output}`);
  }

  /** Resolves with the exit code once the process has ended. */
  exited(): Promise<number | null> {
    const child = this.child;
    return new Promise((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve(child.exitCode) : child.once('exit', (code) => resolve(code))));
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<number | null> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    return this.exited();
  }

  /** Mints a token with the real `scripts/token.ts`, in the server's environment. */
  async token(...args: string[]): Promise<string> {
    const { stdout } = await run(process.execPath, ['--import', 'tsx', 'scripts/token.ts', ...args], { env: this.env });
    return stdout.trim();
  }
}
