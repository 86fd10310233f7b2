/**
 * The media type of a generated project's file, by its name alone (listings never read bytes): the text formats a
 * FastAPI project holds, a few images and fonts, and `application/octet-stream` for anything unknown.
 */
const BY_EXTENSION: Readonly<Record<string, string>> = {
  py: 'text/x-python',
  pyi: 'text/x-python',
  md: 'text/markdown',
  txt: 'text/plain',
  rst: 'text/x-rst',
  json: 'application/json',
  yaml: 'application/yaml',
  yml: 'application/yaml',
  toml: 'application/toml',
  ini: 'text/plain',
  cfg: 'text/plain',
  conf: 'text/plain',
  env: 'text/plain',
  lock: 'text/plain',
  csv: 'text/csv',
  sql: 'application/sql',
  sh: 'text/x-shellscript',
  html: 'text/html',
  htm: 'text/html',
  jinja: 'text/html',
  j2: 'text/html',
  css: 'text/css',
  js: 'text/javascript',
  mjs: 'text/javascript',
  ts: 'text/x-typescript',
  tsx: 'text/x-typescript',
  jsx: 'text/javascript',
  xml: 'application/xml',
  svg: 'image/svg+xml',
  png: 'image/png',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  gif: 'image/gif',
  webp: 'image/webp',
  ico: 'image/vnd.microsoft.icon',
  pdf: 'application/pdf',
  woff: 'font/woff',
  woff2: 'font/woff2',
  zip: 'application/zip',
  gz: 'application/gzip',
};

/** Names without an extension (or whose extension says nothing) that are text in a project. */
const TEXT_NAMES = new Set(['dockerfile', 'makefile', 'procfile', 'license', 'licence', 'readme', 'changelog', 'authors', '.gitignore', '.dockerignore', '.env', '.env.example', '.editorconfig', '.flake8', '.python-version', 'alembic.ini', 'requirements.in']);

/** Media types served with `; charset=utf-8` (everything saved through the API is UTF-8). */
const TEXT_APPLICATION = new Set(['application/json', 'application/yaml', 'application/toml', 'application/sql', 'application/xml', 'image/svg+xml']);

/** @example mediaTypeOf('app/main.py') === 'text/x-python' */
export function mediaTypeOf(path: string): string {
  const name = path.slice(path.lastIndexOf('/') + 1).toLowerCase();
  if (TEXT_NAMES.has(name)) return 'text/plain';
  const dot = name.lastIndexOf('.');
  const known = dot > 0 ? BY_EXTENSION[name.slice(dot + 1)] : undefined;
  if (known) return known;
  // ".env.local", "Dockerfile.dev", "requirements-dev.txt" (above)…
  if (name.startsWith('.env') || name.startsWith('dockerfile')) return 'text/plain';
  return 'application/octet-stream';
}

export const isTextMediaType = (type: string) => type.startsWith('text/') || TEXT_APPLICATION.has(type);

/** The Content-Type header for a file: text types name their charset. */
export const contentTypeOf = (path: string) => {
  const type = mediaTypeOf(path);
  return isTextMediaType(type) ? `${type}; charset=utf-8` : type;
};
