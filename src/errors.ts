/**
 * Small helpers every module uses to turn failures into log text, in one place.
 * @module
 */

/** The message of an error, or the value itself as text. */
export function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Closes a connection, listener or file that may already be closed. */
export function closeQuietly(resource: { close(): void }): void {
  try {
    resource.close();
  } catch {
    // already closed (by the peer, a timeout, or the other side of a session)
  }
}
