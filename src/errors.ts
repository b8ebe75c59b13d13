/**
 * Small helpers every module uses to turn failures into log text, in one place.
 * @module
 */

/**
 * The message of an error (with its cause's, as `fetch failed (Connection refused ...)`), or the value
 * itself as text.
 */
export function errText(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = err.cause instanceof Error ? err.cause.message : undefined;
  return cause !== undefined && !err.message.includes(cause) ? `${err.message} (${cause})` : err.message;
}

/** Closes a connection, listener or file that may already be closed. */
export function closeQuietly(resource: { close(): void }): void {
  try {
    resource.close();
  } catch {
    // already closed (by the peer, a timeout, or the other side of a session)
  }
}
