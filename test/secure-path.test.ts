import { describe, expect, it } from 'vitest';
import { AppError } from '../functions/_shared/errors.ts';
import { normaliseFileSet, normaliseRelativePath } from '../functions/_shared/secure-path.ts';

/** Runs `fn`, which must throw a 400 `invalid_path` AppError, and returns that error's message. */
function invalidPathMessage(fn: () => unknown): string {
  let thrown: unknown;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  expect(thrown, 'expected an error to be thrown').toBeInstanceOf(AppError);
  expect(thrown).toMatchObject({ status: 400, code: 'invalid_path' });
  return (thrown as AppError).message;
}

const segment = (bytes: number) => 'n'.repeat(bytes);

describe('normaliseRelativePath: good paths', () => {
  it.each([
    ['main.py', 'main.py'],
    ['app/main.py', 'app/main.py'],
    ['a//b/./c', 'a/b/c'],
    ['./a', 'a'],
    ['a/./././b', 'a/b'],
    ['a///b////c.txt', 'a/b/c.txt'],
    ['.hidden/.env', '.hidden/.env'],
    ['..a/b..c/d', '..a/b..c/d'],
    ['source/données/résumé.txt', 'source/données/résumé.txt'],
    ['日本語/ファイル.md', '日本語/ファイル.md'],
    ['with space/and-dash_under.score', 'with space/and-dash_under.score'],
  ])('%j -> %j', (input, expected) => {
    expect(normaliseRelativePath(input)).toBe(expected);
  });

  it('is idempotent', () => {
    for (const p of ['a//b/./c', './x/y', 'q']) {
      const once = normaliseRelativePath(p);
      expect(normaliseRelativePath(once)).toBe(once);
    }
  });

  it('accepts a 255-byte name and a 1024-character path, the largest allowed', () => {
    expect(normaliseRelativePath(segment(255))).toBe(segment(255));
    expect(normaliseRelativePath(`${'é'.repeat(127)}x`)).toHaveLength(128); // 255 UTF-8 bytes
    const longest = [segment(255), segment(255), segment(255), segment(254), 'z'].join('/');
    expect(longest).toHaveLength(1024);
    expect(normaliseRelativePath(longest)).toBe(longest);
  });
});

describe('normaliseRelativePath: bad paths are a 400 invalid_path naming the path', () => {
  it.each([
    ['empty', '', /must not be empty/],
    ['absolute', '/etc/passwd', /absolute/],
    ['absolute with a double slash', '//server/share', /absolute/],
    ['a drive letter', 'C:x', /drive letter/],
    ['a drive letter and a slash', 'c:/windows/system32', /drive letter/],
    ['a leading ".."', '../evil', /"\.\."/],
    ['a ".." in the middle', 'a/../../evil', /"\.\."/],
    ['a ".." that stays inside', 'a/b/../c', /"\.\."/],
    ['a trailing ".."', 'a/..', /"\.\."/],
    ['only ".."', '..', /"\.\."/],
    ['a backslash', 'a\\b', /separator, not "\\"/],
    ['a Windows escape', '..\\..\\evil', /separator, not "\\"/],
    ['a NUL', 'a\u0000b', /NUL or control/],
    ['a newline', 'a\nb', /NUL or control/],
    ['a tab', 'a\tb', /NUL or control/],
    ['a carriage return', 'x\r', /NUL or control/],
    ['an escape character', 'a\u001b[31m', /NUL or control/],
    ['a unit separator (0x1f)', 'a\u001fb', /NUL or control/],
    ['a DEL (0x7f)', 'a\u007fb', /NUL or control/],
    ['a trailing slash', 'a/b/', /not a directory/],
    ['only a slash and dot', './', /not a directory/],
    ['only a dot', '.', /must name a file/],
    ['only dots and slashes', './././.', /must name a file/],
    ['a name over 255 bytes', `a/${segment(256)}`, /longer than 255 bytes/],
    ['a name over 255 bytes in UTF-8 but not in characters', `${'é'.repeat(128)}`, /longer than 255 bytes/],
    ['a path over 1024 characters', `${'a/'.repeat(512)}b`, /at most 1024 characters/],
    ['a C1 control character (U+0085)', 'a\u0085b', /NUL or control/],
    ['an NTFS stream colon', 'a/C:x', /< > :/],
    ['a pipe', 'a|b.py', /< > :/],
    ['a wildcard', 'a?.py', /< > :/],
    ['only three dots', '...', /ending in "\."/],
    ['a name ending in a dot', 'app/main.', /ending in "\."/],
    ['a name ending in a space', 'app/main.py ', /ending in "\." or " "/],
    ['a trailing "/."', 'a/.', /not a directory/],
  ])('%s', (_label, input, why) => {
    const message = invalidPathMessage(() => normaliseRelativePath(input));
    expect(message).toMatch(why);
    const shown = JSON.stringify(input.length > 80 ? `${input.slice(0, 80)}…` : input);
    expect(message).toContain(`path ${shown}`);
  });

  it('names the path with the label when one is given', () => {
    const message = invalidPathMessage(() => normaliseRelativePath('../x', 'files["../x"]'));
    expect(message).toBe('files["../x"]: must not contain ".."');
  });
});

describe('normaliseFileSet', () => {
  it('returns the normalised paths in input order', () => {
    expect(normaliseFileSet(['z.txt', 'a//b/./c', './m/n', 'a/b/d'])).toEqual(['z.txt', 'a/b/c', 'm/n', 'a/b/d']);
    expect(normaliseFileSet([])).toEqual([]);
  });

  it('accepts siblings that share a prefix but are not parent and child', () => {
    expect(normaliseFileSet(['a', 'ab/c', 'a.txt', 'a-b/c'])).toEqual(['a', 'ab/c', 'a.txt', 'a-b/c']);
  });

  it.each([
    [['a/b', 'a//b']],
    [['a/b', './a/b']],
    [['x', 'a/b', 'a/./b']],
    [['same', 'same']],
  ])('rejects %j: two entries normalise to the same path', (paths) => {
    const message = invalidPathMessage(() => normaliseFileSet(paths));
    expect(message).toMatch(/more than one entry normalises to/);
    expect(message).toContain(JSON.stringify(normaliseRelativePath(paths[paths.length - 1]!)));
  });

  it.each([
    [['a', 'a/b'], 'a'],
    [['a/b', 'a'], 'a'],
    [['src/app', 'src/app/main.py'], 'src/app'],
    [['x/y/z/w', 'x/y'], 'x/y'],
    [['a', './a//b'], 'a'],
  ])('rejects %j: %j is both a file and a folder', (paths, conflict) => {
    const message = invalidPathMessage(() => normaliseFileSet(paths));
    expect(message).toContain(`${JSON.stringify(conflict)} is both a file and a folder`);
  });

  it('rejects a set with one bad path, naming it under the label', () => {
    expect(invalidPathMessage(() => normaliseFileSet(['ok.txt', '../evil']))).toBe('files["../evil"]: must not contain ".."');
    expect(invalidPathMessage(() => normaliseFileSet(['ok.txt', '/abs'], 'upload'))).toBe('upload["/abs"]: must be relative, not absolute');
    expect(invalidPathMessage(() => normaliseFileSet(['a', 'a'], 'upload'))).toMatch(/^upload: /);
  });

  it.each(['CON', 'nul.py', 'app/Aux.txt', 'lpt1', 'COM9.tar.gz', 'x/PRN', 'com¹.txt'])('rejects the Windows device name in %j', (p) => {
    expect(invalidPathMessage(() => normaliseFileSet([p]))).toMatch(/a Windows device name/);
  });

  it.each(['console.py', 'nullable.py', 'auxiliary/a', 'com10.txt', 'lpt', 'my_con.py'])('accepts %j, which only looks like a device name', (p) => {
    expect(normaliseFileSet([p])).toEqual([p]);
  });

  it('checks deep paths in time linear in the input, not in depth squared', () => {
    const deep = (levels: number, n: number) => Array.from({ length: n }, (_, i) => `${'a/'.repeat(levels)}f${i}`);
    const time = (paths: string[]) => {
      const t0 = performance.now();
      normaliseFileSet(paths);
      return performance.now() - t0;
    };
    time(deep(10, 200)); // warm-up
    // the same number of characters, once as shallow paths and once 500 levels deep
    const shallow = time(Array.from({ length: 1500 }, (_, i) => `${'abcdefghij/'.repeat(9)}${'x'.repeat(12)}${i}`.slice(0, 1010)));
    const deepMs = time(deep(500, 1500));
    expect(deepMs, `deep ${deepMs.toFixed(1)} ms vs shallow ${shallow.toFixed(1)} ms`).toBeLessThan(Math.max(20 * shallow, 250));
  });
});

