// One writer per embedded database: PGlite is Postgres in one process, and two processes on one data dir each
// overwrite the other's pages (rows acknowledged by one are gone after a restart). So the Node host and the
// migration CLI take an exclusive lock file beside PGLITE_DATA_DIR before PGlite opens it.
//
// The lock is `<data dir>.lock`, created whole and atomically with link(2) (a name appears complete or not at
// all). It names its holder by pid, the process's start time and this boot's id (Linux), so a lock left by a
// killed process is recognised as stale even once its pid is reused. Taking over a stale lock is itself guarded:
// only the process that creates `<lock>.takeover-<nonce>` (link again: one winner) may remove that very lock, and
// it checks under that claim that the lock is still the stale one. A claim left by a process killed while taking
// over is stale in the same way and taken over by the same rule. Without /proc (macOS) a holder counts as alive
// while its pid exists; a reused pid then errs toward refusing, never toward two writers.
import { randomBytes } from 'node:crypto';
import { readFileSync, unlinkSync } from 'node:fs';
import { link, mkdir, open, readFile, realpath, unlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import type { Driver } from '../functions/_shared/db/database.ts';

/** Who holds a lock: enough to tell, after a crash, whether that process is still the one running. */
interface Holder {
  pid: number;
  /** Linux: start time in clock ticks since boot (/proc/<pid>/stat field 22); tells a reused pid apart. */
  start: string | null;
  /** Linux: this boot's id; a lock written before a reboot is stale whatever its pid. */
  boot: string | null;
  host: string;
  /** Unique per acquisition: names the take-over claim of exactly this lock file. */
  nonce: string;
  since: string;
}

/** The data dir is locked by a live process (or the lock cannot be judged): nothing was opened. */
export class DataDirLockedError extends Error {
  override name = 'DataDirLockedError';
  constructor(
    readonly dataDir: string,
    readonly holderPid: number | undefined,
    message: string,
  ) {
    super(message);
  }
}

/** Claims of claims left by processes killed while taking over, three deep: a person has to look. */
class TakeOverStuck extends DataDirLockedError {}

export interface DataDirLock {
  /** The lock file. */
  readonly path: string;
  /** Removes the lock file if it is still ours; once. */
  release(): Promise<void>;
}

/** Nonces of the locks this process holds: its own pid in a lock file is "alive" only for these. */
const heldHere = new Set<string>();

/**
 * Takes the exclusive lock on `dataDir` (which need not exist yet), or throws DataDirLockedError naming the holder.
 * @example const lock = await lockDataDir('./storage/db'); try { … } finally { await lock.release(); }
 */
export async function lockDataDir(dataDir: string): Promise<DataDirLock> {
  const shown = resolve(dataDir);
  const path = await lockPathFor(shown);
  const me = ownHolder();
  // Written and synced under a private name first, so that every name linked to it is complete when it appears.
  const tmp = `${path}.${me.pid}-${me.nonce}.tmp`;
  const file = await open(tmp, 'wx', 0o644);
  try {
    await file.writeFile(`${JSON.stringify(me)}\n`);
    await file.sync();
  } finally {
    await file.close();
  }
  try {
    await acquire(path, tmp, shown, 0);
  } finally {
    await unlink(tmp).catch(() => {});
  }
  heldHere.add(me.nonce);
  // A process that ends without close() (process.exit, the forced exit on a stuck shutdown) still lets go.
  const onExit = () => {
    try {
      if (readHolderSync(path)?.nonce === me.nonce) unlinkSync(path);
    } catch {
      /* the next start takes the stale lock over */
    }
  };
  process.on('exit', onExit);
  let released = false;
  return {
    path,
    async release() {
      if (released) return;
      released = true;
      process.off('exit', onExit);
      heldHere.delete(me.nonce);
      const now = await readHolder(path);
      if (typeof now === 'object' && now.nonce === me.nonce) await unlink(path).catch(ignoreMissing);
    },
  };
}

/** Locks `dataDir`, then opens it with `openDriver`; the driver's close() releases the lock after closing. */
export async function openLocked(dataDir: string, openDriver: () => Promise<Driver>): Promise<Driver> {
  const lock = await lockDataDir(dataDir);
  let driver: Driver;
  try {
    driver = await openDriver();
  } catch (err) {
    await lock.release();
    throw err;
  }
  return { transaction: (fn) => driver.transaction(fn), close: () => driver.close().finally(() => lock.release()) };
}

/** `<real path of dataDir>.lock`: every spelling of one directory (relative, symlinked) meets at one lock. */
async function lockPathFor(dataDir: string): Promise<string> {
  await mkdir(dirname(dataDir), { recursive: true });
  let real: string;
  try {
    real = await realpath(dataDir);
  } catch (err) {
    if (errCode(err) !== 'ENOENT') throw err;
    real = join(await realpath(dirname(dataDir)), basename(dataDir));
  }
  return `${real}.lock`;
}

/** Creates `name` as a link to `tmp`; if it exists, refuses for a live holder and takes a stale one over. */
async function acquire(name: string, tmp: string, shown: string, depth: number): Promise<void> {
  for (let attempt = 0; attempt < 200; attempt++) {
    try {
      await link(tmp, name);
      return;
    } catch (err) {
      if (errCode(err) !== 'EEXIST') throw err;
    }
    const held = await readHolder(name);
    if (held === undefined) continue; // let go between our link and our read
    if (held === 'unreadable') {
      throw new DataDirLockedError(shown, undefined, `[db] PGLITE_DATA_DIR ${shown} has a lock file that cannot be read (${name}): if no server or migration uses that directory, remove the file`);
    }
    if (isAlive(held)) throw busy(shown, name, held);
    if (!(await takeOver(name, held, tmp, shown, depth))) await sleep(5 + Math.random() * 20);
  }
  throw new DataDirLockedError(shown, undefined, `[db] could not take the lock on PGLITE_DATA_DIR ${shown}: ${name} keeps changing hands`);
}

/**
 * Removes the stale lock `name` held by `stale`, under the claim `<name>.takeover-<stale.nonce>`: of all the
 * processes that found this same stale lock, one creates the claim, and it removes `name` only if `name` is still
 * that lock. Later claimants find a different nonce and leave it. False: someone else is taking it over.
 */
async function takeOver(name: string, stale: Holder, tmp: string, shown: string, depth: number): Promise<boolean> {
  if (depth >= 3) throw new TakeOverStuck(shown, stale.pid, `[db] cannot take over the stale lock on PGLITE_DATA_DIR ${shown}: remove ${name} and its .takeover-* files by hand`);
  const claim = `${name}.takeover-${stale.nonce}`;
  try {
    await acquire(claim, tmp, shown, depth + 1);
  } catch (err) {
    if (err instanceof DataDirLockedError && !(err instanceof TakeOverStuck)) return false; // a live process has the claim
    throw err;
  }
  try {
    const now = await readHolder(name);
    if (typeof now === 'object' && now.nonce === stale.nonce) await unlink(name).catch(ignoreMissing);
  } finally {
    await unlink(claim).catch(ignoreMissing);
  }
  return true;
}

function busy(shown: string, name: string, h: Holder): DataDirLockedError {
  const where = h.host === hostname() ? '' : ` on host ${h.host}`;
  const remedy =
    h.host === hostname()
      ? 'stop it first, or give this process its own PGLITE_DATA_DIR (or a DATABASE_URL)'
      : `this machine cannot tell whether it still runs; if it does not, remove ${name}`;
  return new DataDirLockedError(shown, h.pid, `[db] PGLITE_DATA_DIR ${shown} is in use by another process (pid ${h.pid}${where}, since ${h.since}): the embedded database takes one process at a time; ${remedy}`);
}

/** Whether the process that wrote `h` may still be running; false only when it certainly is not. */
function isAlive(h: Holder): boolean {
  if (h.host !== hostname()) return true; // another machine's processes cannot be seen from here
  if (h.pid === process.pid) return heldHere.has(h.nonce); // our pid, but not our lock: an earlier process had it
  const boot = bootId();
  if (h.boot && boot && h.boot !== boot) return false;
  if (process.platform !== 'linux') {
    try {
      process.kill(h.pid, 0);
      return true;
    } catch (err) {
      return errCode(err) === 'EPERM';
    }
  }
  const stat = procStat(h.pid);
  if (!stat) return false;
  if (stat.state === 'Z' || stat.state === 'X') return false; // exited, not yet reaped: it writes nothing more
  return h.start === null || h.start === stat.start;
}

function ownHolder(): Holder {
  return {
    pid: process.pid,
    start: procStat(process.pid)?.start ?? null,
    boot: bootId(),
    host: hostname(),
    nonce: randomBytes(16).toString('hex'),
    since: new Date().toISOString(),
  };
}

/** State and start time from /proc/<pid>/stat (Linux); undefined if there is no such process (or no /proc). */
function procStat(pid: number): { state: string; start: string } | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // "pid (comm) state ppid …": comm may hold spaces and parentheses, so the fields start after the last ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return fields.length > 19 ? { state: fields[0]!, start: fields[19]! } : undefined;
}

function bootId(): string | null {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || null;
  } catch {
    return null;
  }
}

/** The holder in a lock file; undefined if there is none, 'unreadable' if it is not one of ours. */
async function readHolder(path: string): Promise<Holder | 'unreadable' | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if (errCode(err) === 'ENOENT') return undefined;
    throw err;
  }
  return parseHolder(text);
}

function readHolderSync(path: string): Holder | undefined {
  const h = parseHolder(readFileSync(path, 'utf8'));
  return typeof h === 'object' ? h : undefined;
}

function parseHolder(text: string): Holder | 'unreadable' {
  try {
    const h = JSON.parse(text) as Partial<Holder>;
    // The nonce becomes part of a file name: only what we write is accepted.
    if (Number.isSafeInteger(h.pid) && h.pid! > 0 && typeof h.nonce === 'string' && /^[0-9a-f]{32}$/.test(h.nonce) && typeof h.host === 'string') {
      return { pid: h.pid!, start: typeof h.start === 'string' ? h.start : null, boot: typeof h.boot === 'string' ? h.boot : null, host: h.host, nonce: h.nonce, since: String(h.since) };
    }
  } catch {
    /* not JSON */
  }
  return 'unreadable';
}

const errCode = (err: unknown) => (err as NodeJS.ErrnoException | undefined)?.code;
const ignoreMissing = (err: unknown) => {
  if (errCode(err) !== 'ENOENT') throw err;
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
