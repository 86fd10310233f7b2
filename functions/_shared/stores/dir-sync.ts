/** What a filesystem or platform answers when it cannot fsync a folder (Windows cannot open one): skipped. */
export const NO_DIR_SYNC: ReadonlySet<string> = new Set(['EISDIR', 'EINVAL', 'ENOTSUP', 'EOPNOTSUPP', 'EPERM', 'EACCES', 'EBADF']);
