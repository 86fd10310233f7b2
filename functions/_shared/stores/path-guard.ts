import { readFile, realpath, stat } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, relative, resolve } from 'node:path';

/**
 * Whether two folders are one, or one lies inside the other, as the disk sees them rather than as they are spelled:
 * symlinks are resolved (realpath of the nearest existing ancestor, for a folder not created yet), and folders are
 * matched by device and inode, so a bind mount is seen through too. Node and Deno alike, `node:fs` only.
 *
 * Three views are compared, any one of which finding an overlap is enough:
 *  - the real paths, lexically;
 *  - the device/inode of each folder up the two ancestor chains: the nearest folder both chains share anchors the
 *    rest of each path (catches a path that runs through a bind mount of the other, or of one of its ancestors);
 *  - on Linux, /proc/self/mountinfo: each real path as (device, path inside that filesystem), which also catches a
 *    folder that is itself a bind mount of a subfolder of the other (no ancestor chain shows that).
 */
export type Overlap = 'same' | 'first-inside-second' | 'second-inside-first';

/** How `a` and `b` overlap, or undefined when they are apart. Neither needs to exist yet. */
export async function overlap(a: string, b: string): Promise<Overlap | undefined> {
  const [x, y] = await Promise.all([locate(a), locate(b)]);
  const mounts = await readMounts();
  const views: [string, string][] = [[x.real, y.real], ...anchored(x, y)];
  if (mounts) {
    const [mx, my] = [onFilesystem(mounts, x.real), onFilesystem(mounts, y.real)];
    if (mx && my && mx.dev === my.dev) views.push([mx.path, my.path]);
  }
  let found: Overlap | undefined;
  for (const [p, q] of views) {
    const how = nesting(p, q);
    if (how === 'same') return how;
    found ??= how;
  }
  return found;
}

/** Whether `path` is `root` or lies inside it, once links and mounts are resolved. Neither needs to exist yet. */
export async function isInside(root: string, path: string): Promise<boolean> {
  const how = await overlap(root, path);
  return how === 'same' || how === 'second-inside-first';
}

interface Located {
  /** The real path: its nearest existing ancestor resolved, the rest as spelled. */
  real: string;
  /** That existing ancestor, then each folder above it, with its identity (`dev:ino`, or undefined if unknown). */
  chain: { dir: string; id: string | undefined }[];
}

async function locate(path: string): Promise<Located> {
  let existing = resolve(path);
  let rest = '';
  for (;;) {
    try {
      existing = await realpath(existing);
      break;
    } catch {
      const parent = dirname(existing);
      if (parent === existing) break;
      rest = rest ? join(basename(existing), rest) : basename(existing);
      existing = parent;
    }
  }
  const chain: Located['chain'] = [];
  for (let dir = existing; ; dir = dirname(dir)) {
    chain.push({ dir, id: await identity(dir) });
    if (dirname(dir) === dir) break;
  }
  return { real: rest ? join(existing, rest) : existing, chain };
}

async function identity(dir: string): Promise<string | undefined> {
  try {
    const s = await stat(dir, { bigint: true });
    return s.ino === 0n ? undefined : `${s.dev}:${s.ino}`; // some runtimes and filesystems give no inode
  } catch {
    return undefined;
  }
}

/**
 * Both paths rewritten relative to the nearest folder of one chain that the other chain holds too (by identity),
 * from each side: equal relative paths, or one a prefix of the other, mean an overlap through that folder.
 */
function anchored(x: Located, y: Located): [string, string][] {
  const out: [string, string][] = [];
  for (const [from, to, flip] of [[x, y, false], [y, x, true]] as const) {
    for (const mine of from.chain) {
      const theirs = mine.id && to.chain.find((c) => c.id === mine.id);
      if (!theirs) continue;
      const pair: [string, string] = [join('/', relative(mine.dir, from.real)), join('/', relative(theirs.dir, to.real))];
      out.push(flip ? [pair[1], pair[0]] : pair);
      break;
    }
  }
  return out;
}

function nesting(p: string, q: string): Overlap | undefined {
  if (within(q, p)) return within(p, q) ? 'same' : 'first-inside-second';
  if (within(p, q)) return 'second-inside-first';
  return undefined;
}

/** Whether `path` is `root` or lies inside it, lexically (both absolute). */
function within(root: string, path: string): boolean {
  const rel = relative(root, path);
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
}

interface Mount {
  dev: string;
  /** The folder of the filesystem mounted here (not `/` for a bind mount of a subfolder). */
  root: string;
  point: string;
}

/** The mount table (Linux); undefined where there is none to read, or it may not be read. */
async function readMounts(): Promise<Mount[] | undefined> {
  let text: string;
  try {
    text = await readFile('/proc/self/mountinfo', 'utf8');
  } catch {
    return undefined;
  }
  const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
  return text
    .split('\n')
    .map((line) => line.split(' '))
    .filter((f) => f.length > 4)
    .map((f) => ({ dev: f[2]!, root: unescape(f[3]!), point: unescape(f[4]!) }));
}

/** A real path as the filesystem holding it names it: (device, path from that filesystem's root). */
function onFilesystem(mounts: Mount[], real: string): { dev: string; path: string } | undefined {
  let best: Mount | undefined;
  // The deepest mount point holding the path; of several on one point, the last mounted (it hides the others).
  for (const m of mounts) if (within(m.point, real) && (!best || m.point.length >= best.point.length)) best = m;
  return best && { dev: best.dev, path: join(best.root, relative(best.point, real)) };
}
