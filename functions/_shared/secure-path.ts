import { invalidPath } from './errors.ts';

/** The longest path the unpacker accepts (an archive path, prefix included). */
export const MAX_PATH_LENGTH = 1024;
const MAX_SEGMENT_BYTES = 255;
/** CON, PRN, AUX, NUL, COM1–9, LPT1–9 (also with ¹²³), alone or before an extension, in any case: devices on Windows. */
const WINDOWS_DEVICE = /^(con|prn|aux|nul|com[1-9¹²³]|lpt[1-9¹²³])(\.[^.]*)*$/i;
const utf8 = new TextEncoder();

/**
 * Normalises a caller-supplied relative file path ("a//b/./c" -> "a/b/c") or throws a 400 `invalid_path`.
 * Rejects what could escape a folder or mean different things on different systems: absolute paths, drive
 * letters, `..`, backslashes, NUL and control characters, Windows-reserved characters and device names (`CON`,
 * `nul.py`), names ending in "." or " ", and directories (trailing `/` or `/.`).
 * @example normaliseRelativePath('app//main.py') === 'app/main.py'
 */
export function normaliseRelativePath(input: string, label?: string, limits: PathLimits = {}): string {
  const fail = (why: string) => invalidPath(`${label ?? `path ${show(input)}`}: ${why}`);
  const maxLength = limits.maxLength ?? MAX_PATH_LENGTH;
  if (input.length === 0) throw fail('must not be empty');
  if (input.length > maxLength) throw fail(`must be at most ${maxLength} characters`);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f-\u009f]/.test(input)) throw fail('must not contain NUL or control characters');
  if (input.includes('\\')) throw fail('must use "/" as separator, not "\\"');
  if (input.startsWith('/')) throw fail('must be relative, not absolute');
  if (/^[A-Za-z]:/.test(input)) throw fail('must not start with a drive letter');
  // Generated projects are unpacked on Windows too, where these mean streams, devices or wildcards.
  if (/[<>:"|?*]/.test(input)) throw fail('must not contain any of < > : " | ? *');
  if (input.endsWith('/') || input === '.' || input.endsWith('/.')) throw fail('must name a file, not a directory');
  const segments = input.split('/').filter((s) => s !== '' && s !== '.');
  if (segments.some((s) => s === '..')) throw fail('must not contain ".."');
  // Windows drops trailing dots and spaces, so "a." and "a" would collide there ("..." too).
  if (segments.some((s) => s.endsWith('.') || s.endsWith(' '))) throw fail('must not have a name ending in "." or " "');
  if (segments.length === 0) throw fail('must name a file');
  if (limits.maxDepth !== undefined && segments.length - 1 > limits.maxDepth) throw fail(`is more than ${limits.maxDepth} folders deep (MAX_PATH_DEPTH)`);
  // A segment of at most 85 UTF-16 units is at most 255 UTF-8 bytes: only longer ones need encoding to tell.
  if (segments.some((s) => s.length > 85 && utf8.encode(s).length > MAX_SEGMENT_BYTES)) throw fail(`has a name longer than ${MAX_SEGMENT_BYTES} bytes`);
  const device = segments.find((s) => WINDOWS_DEVICE.test(s));
  if (device !== undefined) throw fail(`must not use ${JSON.stringify(device)}: a Windows device name, which no Windows user could unpack`);
  return segments.join('/');
}

/** Bounds on paths beyond the unpacker's own (for saves: see functions/_shared/limits.ts). */
export interface PathLimits {
  /** Characters (UTF-16 units), default MAX_PATH_LENGTH. */
  maxLength?: number;
  /** Folders above the file. */
  maxDepth?: number;
  /** Distinct folders in a whole set. */
  maxFolders?: number;
}

/**
 * Normalises a whole set of file paths and checks they can coexist in one tree on any system: no two equal
 * after normalisation or differing only in case or Unicode form, and no path both a file and a folder.
 * Returns the normalised paths in input order.
 */
export function normaliseFileSet(paths: readonly string[], label = 'files', limits: PathLimits = {}): string[] {
  const out = paths.map((p) => normaliseRelativePath(p, `${label}[${show(p)}]`, limits));
  let folders = 0;
  // Compared as macOS and Windows would: "README.md" and "readme.md" (or é composed and decomposed) collide there.
  // A tree of folded names, so the work is linear in the input however deep the paths (a prefix per level would
  // be quadratic in depth).
  type Node = { path?: string; children: Map<string, Node> };
  const root: Node = { children: new Map() };
  for (const p of out) {
    let node = root;
    // Folded once per path: NFC never joins across "/" and case mapping never makes one, so the segments line up.
    const segments = fold(p).split('/');
    for (const [i, key] of segments.entries()) {
      if (node.path !== undefined) throw invalidPath(`${label}: ${JSON.stringify(node.path)} is both a file and a folder`);
      let next = node.children.get(key);
      if (!next) {
        node.children.set(key, (next = { children: new Map() }));
        if (i < segments.length - 1 && ++folders > (limits.maxFolders ?? Infinity)) {
          throw invalidPath(`${label}: more than ${limits.maxFolders} folders (MAX_FOLDERS)`);
        }
      }
      node = next;
      if (i === segments.length - 1) {
        if (node.path === p) throw invalidPath(`${label}: more than one entry normalises to ${JSON.stringify(p)}`);
        if (node.path !== undefined) throw invalidPath(`${label}: ${JSON.stringify(node.path)} and ${JSON.stringify(p)} differ only in case or Unicode form`);
        if (node.children.size > 0) throw invalidPath(`${label}: ${JSON.stringify(p)} is both a file and a folder`);
        node.path = p;
      }
    }
  }
  return out;
}

/**
 * Case-insensitive as Windows and macOS (and Python's casefold) compare names: lower-casing alone keeps σ and ς,
 * µ and μ, ſ and s apart; lower → upper → lower maps each pair to one. NFC first, for composed and decomposed é.
 */
const fold = (p: string) => p.normalize('NFC').toLowerCase().toUpperCase().toLowerCase();

const show = (p: string) => JSON.stringify(p.length > 80 ? `${p.slice(0, 80)}…` : p);
