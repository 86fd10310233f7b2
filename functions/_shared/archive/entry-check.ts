import type { TarHeader } from 'modern-tar';
import { archiveTooLarge, invalidArchive } from '../errors.ts';
import { normaliseRelativePath } from '../secure-path.ts';
import type { UnpackLimits } from './tar-gz.ts';

/** The per-entry checks, kept as entries stream past: only paths are remembered. */
export class EntryCheck {
  count = 0;
  private total = 0;
  private readonly seen = new Set<string>();
  private readonly files = new Set<string>();
  private readonly parents = new Set<string>();

  constructor(private readonly limits: UnpackLimits) {}

  /** Checks one entry; returns its normalised path. */
  entry(header: TarHeader): string {
    const { limits } = this;
    if (++this.count > limits.maxEntries) throw archiveTooLarge(`more than ${limits.maxEntries} entries`);
    const type = header.type ?? 'file';
    if (type !== 'file' && type !== 'directory') throw invalidArchive(`entry ${JSON.stringify(header.name)} is a ${type}; only files and folders are allowed`);
    let path: string;
    try {
      path = normaliseRelativePath(type === 'directory' ? header.name.replace(/\/+$/, '') : header.name);
    } catch (err) {
      throw invalidArchive((err as Error).message);
    }
    if (this.seen.has(path)) throw invalidArchive(`duplicate entry ${JSON.stringify(path)}`);
    this.seen.add(path);
    for (let i = path.indexOf('/'); i !== -1; i = path.indexOf('/', i + 1)) {
      const parent = path.slice(0, i);
      if (this.files.has(parent)) throw bothFileAndFolder(parent);
      this.parents.add(parent);
    }
    if (type === 'directory') return path;
    if (this.parents.has(path)) throw bothFileAndFolder(path);
    this.files.add(path);
    if (header.size > limits.maxFileBytes) throw archiveTooLarge(`entry ${JSON.stringify(path)} is over ${limits.maxFileBytes} bytes`);
    this.total += header.size;
    if (this.total > limits.maxTotalBytes) throw archiveTooLarge(`contents are over ${limits.maxTotalBytes} bytes`);
    return path;
  }
}

const bothFileAndFolder = (path: string) => invalidArchive(`${JSON.stringify(path)} is both a file and a folder`);
