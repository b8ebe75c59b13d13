/** sha256 helpers: every transfer test compares bytes by hash. */
import { createHash } from "node:crypto";

/** sha256 hex of bytes. */
export function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** sha256 hex of a file, streamed in 1 MiB reads (bounded by the file size). */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  using file = await Deno.open(path);
  const buf = new Uint8Array(1 << 20);
  while (true) {
    const n = await file.read(buf);
    if (n === null) break;
    hash.update(buf.subarray(0, n));
  }
  return hash.digest("hex");
}
