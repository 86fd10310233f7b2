import { invalidPath } from './errors.ts';

const MAX_PATH_LENGTH = 1024;
const MAX_SEGMENT_BYTES = 255;
const utf8 = new TextEncoder();

/**
 * Normalises a caller-supplied relative file path ("a//b/./c" -> "a/b/c") or throws a 400 `invalid_path`.
 * Rejects what could escape a folder or mean different things on different systems: absolute paths, drive
 * letters, `..`, backslashes, NUL and control characters, Windows-reserved characters, names ending in "." or " ",
 * and directories (trailing `/` or `/.`).
 * @example normaliseRelativePath('app//main.py') === 'app/main.py'
 */
export function normaliseRelativePath(input: string, label?: string): string {
  const fail = (why: string) => invalidPath(`${label ?? `path ${show(input)}`}: ${why}`);
  if (input.length === 0) throw fail('must not be empty');
  if (input.length > MAX_PATH_LENGTH) throw fail(`must be at most ${MAX_PATH_LENGTH} characters`);
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
  if (segments.some((s) => utf8.encode(s).length > MAX_SEGMENT_BYTES)) throw fail(`has a name longer than ${MAX_SEGMENT_BYTES} bytes`);
  return segments.join('/');
}

/**
 * Normalises a whole set of file paths and checks they can coexist in one tree on any system: no two equal
 * after normalisation or differing only in case or Unicode form, and no path both a file and a folder.
 * Returns the normalised paths in input order.
 */
export function normaliseFileSet(paths: readonly string[], label = 'files'): string[] {
  const out = paths.map((p) => normaliseRelativePath(p, `${label}[${show(p)}]`));
  // Compared as macOS and Windows would: "README.md" and "readme.md" (or é composed and decomposed) collide there.
  const fold = (p: string) => p.normalize('NFC').toLowerCase();
  const seen = new Map<string, string>();
  for (const p of out) {
    const other = seen.get(fold(p));
    if (other === p) throw invalidPath(`${label}: more than one entry normalises to ${JSON.stringify(p)}`);
    if (other !== undefined) throw invalidPath(`${label}: ${JSON.stringify(other)} and ${JSON.stringify(p)} differ only in case or Unicode form`);
    seen.set(fold(p), p);
  }
  for (const p of out) {
    const parts = p.split('/');
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join('/');
      if (seen.has(fold(dir))) throw invalidPath(`${label}: ${JSON.stringify(dir)} is both a file and a folder`);
    }
  }
  return out;
}

const show = (p: string) => JSON.stringify(p.length > 80 ? `${p.slice(0, 80)}…` : p);
