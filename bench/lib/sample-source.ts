// Generated source files for the benchmarks: Python-like text with varied names, so archives compress about as a
// real project does (about 8 to 1), not as one repeated line does (a hundred to 1).

const WORDS = (
  'user item order invoice payment account session token product cart address profile report audit event ' +
  'message channel team member role permission setting webhook upload file image comment review rating tag ' +
  'category search filter page cursor schedule task job queue worker metric alert device location price'
).split(' ');

/** A small seeded generator (FNV-1a of the seed into mulberry32): the same seed, the same files. */
function random(seed: string): () => number {
  let h = 2166136261;
  for (let i = 0; i < seed.length; i++) h = Math.imul(h ^ seed.charCodeAt(i), 16777619);
  let a = h >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const cap = (w: string) => w[0]!.toUpperCase() + w.slice(1);

/**
 * `count` Python files of about `bytesEach` bytes each under app/, the same for the same seed.
 * @example sourceFiles('gen-1', 50, 4096) // 50 files, ~200 KB, an archive of ~25 KB
 */
export function sourceFiles(seed: string, count: number, bytesEach: number): Record<string, string> {
  const next = random(seed);
  const word = () => WORDS[Math.floor(next() * WORDS.length)]!;
  const files: Record<string, string> = {};
  for (let i = 0; i < count; i++) {
    let text = `# ${seed} ${i}\nfrom fastapi import APIRouter, Depends\nfrom sqlalchemy.orm import Session\n\nrouter = APIRouter()\n\n`;
    while (text.length < bytesEach) {
      const [a, b, c, n] = [word(), word(), word(), Math.floor(next() * 1000)];
      text +=
        `@router.get("/${a}s/{${c}_id}/${b}")\n` +
        `def ${a}_${b}_${n}(${c}_id: int, db: Session = Depends(get_db)) -> ${cap(a)}${cap(b)}Out:\n` +
        `    return crud.${b}.get_${c}(db, ${c}_id=${c}_id, limit=${Math.floor(next() * 100)})\n\n`;
    }
    files[`app/${word()}/${word()}_${i}.py`] = text;
  }
  return files;
}
