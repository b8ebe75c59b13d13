/**
 * Byte sizes as people read them, in one place: decimal units (1 MB = 10^6 bytes), like `ls -h --si`,
 * curl and the sizes firmware menus show. Three spellings for three places: menus and messages
 * (`700.0 MB`), the live terminal table (`700.0M`), and the per-transfer log line (`0.3 MB`).
 * @module
 */

/** `700.0 MB`, `4.2 GB`, `12 KB` (never below 1 KB: a menu item's size). */
export function formatSize(bytes: number): string {
  if (bytes >= 1e9) return `${(bytes / 1e9).toFixed(1)} GB`;
  if (bytes >= 1e6) return `${(bytes / 1e6).toFixed(1)} MB`;
  return `${Math.max(1, Math.round(bytes / 1e3))} KB`;
}

/** `1.23G`, `700.0M`, `12k`, `512`: narrow, for the terminal table's columns. */
export function compactSize(bytes: number): string {
  if (bytes >= 1e9) return `${(bytes / 1e9).toFixed(2)}G`;
  if (bytes >= 1e6) return `${(bytes / 1e6).toFixed(1)}M`;
  if (bytes >= 1e3) return `${Math.round(bytes / 1e3)}k`;
  return `${bytes}`;
}

/** `12.3 MB`, or `512 bytes` below 0.1 MB: the size in a finished transfer's log line. */
export function transferSize(bytes: number): string {
  const mb = bytes / 1e6;
  return mb >= 0.1 ? `${mb.toFixed(1)} MB` : `${bytes} bytes`;
}
