import { ERRORS } from './errors.ts';
import type { StoredObject } from './store.ts';

// Listing as the real server does it, over the rows the caller may SELECT (the SQL functions are SECURITY
// INVOKER, so RLS filters them first). Ports of storage.search (migrations/tenant/0063), storage.search_v2,
// list_objects_with_delimiter and search_by_timestamp (0050), and ObjectStorage.listObjectsV2 (src/storage/object.ts).

type Row = Pick<StoredObject, 'name' | 'id' | 'updated_at' | 'created_at' | 'last_accessed_at' | 'metadata'>;
/** A folder entry: the rows below a common prefix, collapsed to one. */
type Entry = { name: string; id: string | null; updated_at: string | null; created_at: string | null; last_accessed_at: string | null; metadata: Row['metadata'] | null };

export interface SearchOptions {
  prefix: string;
  search?: string;
  limit?: number;
  offset?: number;
  sortBy?: { column?: string; order?: string };
}

/** COLLATE "C": byte order of the UTF-8 text. */
const byBytes = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));
const time = (t: string | null) => (t === null ? 0 : Date.parse(t));

/** `storage.get_common_prefix`: the key up to the first delimiter after the prefix, or null (a file). */
function commonPrefix(key: string, prefix: string): string | null {
  const at = key.indexOf('/', prefix.length);
  return at < 0 ? null : key.slice(0, at + 1);
}

const folder = (name: string, at: string | null = null): Entry => ({ name, id: null, updated_at: at, created_at: at, last_accessed_at: null, metadata: null });
const file = (o: Row, name = o.name): Entry => ({ name, id: o.id, updated_at: o.updated_at, created_at: o.created_at, last_accessed_at: o.last_accessed_at, metadata: o.metadata });

/**
 * POST /object/list (storage-js `list`): one folder level below `prefix` (a folder: "a" means "a/"), entries named
 * relative to it. Sorting by name matches the prefix case-insensitively and orders by the lower-cased name, folders
 * merged case-insensitively and placed where their first key sorts; other columns list the folders first.
 */
export function searchObjects(rows: readonly Row[], opts: SearchOptions): Entry[] {
  const prefix = opts.prefix.length > 0 && !opts.prefix.endsWith('/') ? `${opts.prefix}/` : opts.prefix;
  const search = opts.search ?? '';
  const limit = Math.min(opts.limit || 100, 1500);
  const offset = opts.offset ?? 0;
  const column = ['updated_at', 'created_at', 'last_accessed_at'].includes(opts.sortBy?.column ?? '') ? (opts.sortBy!.column as 'updated_at') : 'name';
  const asc = (opts.sortBy?.order ?? 'asc').toLowerCase() === 'asc';
  const full = prefix + search;
  const lowered = full.toLowerCase();
  const matching = rows.filter((o) => o.name.toLowerCase().startsWith(lowered));

  if (column !== 'name') {
    // path_tokens[start:levels] of every key matching `prefix || search` (ILIKE), folders first.
    const start = prefix === '' ? 1 : prefix.split('/').length;
    const levels = full === '' ? 1 : full.split('/').length;
    const part = (o: Row) => o.name.split('/').slice(start - 1, levels).join('/');
    const direction = asc ? 1 : -1;
    const folders = [...new Set(matching.filter((o) => o.name.split('/').length !== levels).map(part))].sort((a, b) => direction * byBytes(a, b));
    const files = matching
      .filter((o) => o.name.split('/').length === levels)
      .sort((a, b) => direction * (time(a[column]) - time(b[column])) || byBytes(a.name, b.name));
    return [...folders.map((name) => folder(name)), ...files.map((o) => file(o, part(o)))].slice(offset, offset + limit);
  }

  const sorted = matching.sort((a, b) => byBytes(a.name.toLowerCase(), b.name.toLowerCase()) || byBytes(a.name, b.name));
  if (!asc) sorted.reverse();
  const out: Entry[] = [];
  let skipped = 0;
  let group: string | null = null;
  for (const o of sorted) {
    if (out.length >= limit) break;
    const shared = commonPrefix(o.name.toLowerCase(), lowered);
    if (shared !== null && shared === group) continue; // the rest of a folder already listed (or skipped)
    group = shared;
    if (skipped < offset) {
      skipped++;
      continue;
    }
    // A folder is named after the first key seen in it (in the sort direction), relative to the prefix.
    out.push(shared === null ? file(o, o.name.slice(prefix.length)) : folder(commonPrefix(o.name, full)!.replace(/\/+$/, '').slice(prefix.length)));
  }
  return out;
}

export interface ListV2Options {
  prefix?: string;
  limit?: number;
  cursor?: string;
  with_delimiter?: boolean;
  sortBy?: { column?: string; order?: string };
}

interface Cursor {
  startAfter: string;
  sortOrder?: string;
  sortColumn?: string;
  sortColumnAfter?: string;
}

const CURSOR_PARTS = { l: 'startAfter', o: 'sortOrder', c: 'sortColumn', a: 'sortColumnAfter' } as const;

/** Base64 of `l:<last name>\no:<order>\nc:<column>\na:<column value>`, the parts that are set. */
function encodeCursor(cursor: Cursor): string {
  const lines = Object.entries(CURSOR_PARTS).flatMap(([k, field]) => (cursor[field] ? [`${k}:${cursor[field]}`] : []));
  return Buffer.from(lines.join('\n')).toString('base64');
}

function decodeCursor(token: string): Cursor {
  const cursor: Cursor = { startAfter: '', sortOrder: 'asc' };
  for (const part of Buffer.from(token, 'base64').toString().split('\n')) {
    const match = /^(\S):(.*)/.exec(part);
    if (!match || !(match[1]! in CURSOR_PARTS)) throw ERRORS.invalidParameter('continuation token');
    cursor[CURSOR_PARTS[match[1] as keyof typeof CURSOR_PARTS]] = match[2]!;
  }
  return cursor;
}

type V2Row = Entry & { key?: string };

/**
 * POST /object/list-v2 (storage-js `listV2`): `{ hasNext, nextCursor?, nextCursorKey?, folders, objects }` with
 * full key names; the prefix matches case-sensitively and as is (not made a folder). `with_delimiter` collapses
 * folders (named `a/sub/`, no id); without it every key below the prefix is an object. At most 1000 per page.
 */
export function listObjectsV2(rows: readonly Row[], opts: ListV2Options) {
  const limit = Math.min(opts.limit || 1000, 1000);
  const prefix = opts.prefix ?? '';
  const cursor = opts.cursor ? decodeCursor(opts.cursor) : undefined;
  const order = cursor?.sortOrder || opts.sortBy?.order;
  const column = cursor?.sortColumn || opts.sortBy?.column;
  const page = { prefix, limit: limit + 1, startAfter: cursor?.startAfter ?? '', order: order === 'desc' ? ('desc' as const) : ('asc' as const), after: cursor?.sortColumnAfter };
  let result: V2Row[] = opts.with_delimiter
    ? column === 'updated_at' || column === 'created_at'
      ? byTimestamp(rows, { ...page, column })
      : withDelimiter(rows, page)
    : flat(rows, { ...page, column: column === 'updated_at' || column === 'created_at' ? column : undefined });

  if (opts.with_delimiter) {
    // The route's own pass over the rows (a no-op unless a folder name still holds a delimiter past the prefix).
    const delimited: V2Row[] = [];
    let previous = '';
    for (const row of result) {
      const at = row.name.replace(prefix, '').indexOf('/');
      if (at < 0) {
        delimited.push(row);
        continue;
      }
      const current = row.name.slice(0, prefix.length + at + 1);
      if (current !== previous) delimited.push({ ...folder(current), key: undefined });
      previous = current;
    }
    result = delimited;
  }

  const hasNext = result.length > limit;
  const shown = result.slice(0, limit);
  const folders = shown.filter((r) => r.id === null).map((r) => ({ ...r, name: r.name.endsWith('/') ? r.name : `${r.name}/` }));
  const objects = shown.filter((r) => r.id !== null);
  const last = shown[shown.length - 1];
  if (!hasNext || !last) return { hasNext, folders, objects };
  const lastValue = column === 'updated_at' || column === 'created_at' ? last[column] : null;
  const nextCursor = encodeCursor({ startAfter: last.name, sortOrder: order, sortColumn: column, sortColumnAfter: lastValue ? new Date(lastValue).toISOString() : undefined });
  return { hasNext, nextCursor, nextCursorKey: last.name, folders, objects };
}

interface Page {
  prefix: string;
  limit: number;
  startAfter: string;
  order: 'asc' | 'desc';
  after: string | undefined;
}

/** Without a delimiter: `SELECT id, name, metadata, … WHERE name LIKE prefix% ORDER BY [column,] name COLLATE "C"`. */
function flat(rows: readonly Row[], p: Page & { column: 'updated_at' | 'created_at' | undefined }): V2Row[] {
  const direction = p.order === 'asc' ? 1 : -1;
  const compare = (a: Row, b: { name: string; at: number }) => (p.column && p.after !== undefined ? time(a[p.column]) - b.at : 0) || byBytes(a.name, b.name);
  const seek = { name: p.startAfter, at: p.after ? Date.parse(p.after) : 0 };
  return rows
    .filter((o) => o.name.startsWith(p.prefix) && (!p.startAfter || direction * compare(o, seek) > 0))
    .sort((a, b) => direction * ((p.column ? time(a[p.column]) - time(b[p.column]) : 0) || byBytes(a.name, b.name)))
    .slice(0, p.limit)
    .map((o) => ({ id: o.id, name: o.name, metadata: o.metadata, updated_at: o.updated_at, created_at: o.created_at, last_accessed_at: o.last_accessed_at }));
}

/** `split_part(name, '/', levels)`: the entry's own name, `levels` being the prefix's depth. */
function withKey(prefix: string, e: Entry): V2Row {
  const levels = prefix ? prefix.split('/').length : 1;
  return { key: e.name.split('/')[levels - 1] ?? '', ...e };
}

/** `list_objects_with_delimiter` by name: a seek from the cursor, then one entry per folder or file. */
function withDelimiter(rows: readonly Row[], p: Page): V2Row[] {
  const inRange = rows.filter((o) => o.name.startsWith(p.prefix)).sort((a, b) => byBytes(a.name, b.name));
  const asc = p.order === 'asc';
  if (!asc) inRange.reverse();
  // A cursor naming a folder skips the whole folder; one naming a file skips keys up to `file/` (as the SQL does).
  const isFolder = p.startAfter !== '' && rows.some((o) => o.name.startsWith(`${p.startAfter}/`));
  const seek = p.startAfter === '' ? null : asc ? p.startAfter + (isFolder ? '0' : '/') : p.startAfter + (isFolder ? '/' : '');
  const out: V2Row[] = [];
  let group: string | null = null;
  for (const o of inRange) {
    if (out.length >= p.limit) break;
    if (seek !== null && (asc ? byBytes(o.name, seek) < 0 : byBytes(o.name, seek) >= 0)) continue;
    const shared = commonPrefix(o.name, p.prefix);
    if (shared !== null && shared === group) continue;
    group = shared;
    out.push(withKey(p.prefix, shared === null ? file(o) : folder(shared.replace(/\/+$/, ''))));
  }
  return out;
}

/** `search_by_timestamp`: folders dated by their oldest key's created_at, then everything ordered by the column. */
function byTimestamp(rows: readonly Row[], p: Page & { column: 'updated_at' | 'created_at' }): V2Row[] {
  const entries = new Map<string, Entry>();
  for (const o of rows.filter((r) => r.name.startsWith(p.prefix))) {
    const shared = commonPrefix(o.name, p.prefix);
    if (shared === null) {
      entries.set(`file:${o.name}`, file(o));
      continue;
    }
    const seen = entries.get(`dir:${shared}`);
    if (!seen || time(o.created_at) < time(seen.created_at)) entries.set(`dir:${shared}`, folder(shared.replace(/\/+$/, ''), o.created_at));
  }
  const direction = p.order === 'asc' ? 1 : -1;
  const compare = (a: Entry, at: number, name: string) => time(a[p.column]) - at || byBytes(a.name, name);
  const after = p.after ? Date.parse(p.after) : 0;
  return [...entries.values()]
    .filter((e) => !p.startAfter || direction * compare(e, after, p.startAfter) > 0)
    .sort((a, b) => direction * compare(a, time(b[p.column]), b.name))
    .slice(0, p.limit)
    .map((e) => withKey(p.prefix, e));
}
