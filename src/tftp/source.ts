/**
 * What a TFTP read sends: a {@linkcode ByteSource}, either a whole buffer in memory (generated and cached
 * files, netascii conversions) or an open file read by position, and {@linkcode openSource}, which picks
 * one for a resolved netboot file.
 *
 * @example
 * ```ts
 * const source = await openSource(file, { files, netascii: false });
 * const buf = new Uint8Array(512);
 * await source.readAt(0, buf);
 * source.close();
 * ```
 * @module
 */
import type { BootFiles } from "../netboot/files.ts";
import type { NetbootFile } from "../netboot/fs.ts";
import { toNetascii } from "./netascii.ts";

/** Bytes a transfer reads from: a whole buffer in memory or an open file read by position. */
export interface ByteSource {
  readonly size: number;
  /** The whole content when it is in memory. */
  readonly bytes: Uint8Array | null;
  /** Fills `buf` from `offset`; returns the count read (short only at end of file). */
  readAt(offset: number, buf: Uint8Array): Promise<number>;
  close(): void;
}

/** A source held in memory (cached small files, netascii conversions). */
export function memorySource(bytes: Uint8Array): ByteSource {
  return {
    size: bytes.length,
    bytes,
    readAt(offset, buf) {
      const part = bytes.subarray(offset, offset + buf.length);
      buf.set(part);
      return Promise.resolve(part.length);
    },
    close() {},
  };
}

/** A source reading an open file with positioned reads; `size` is fixed when the transfer starts. */
export function fileSource(file: Deno.FsFile, size: number): ByteSource {
  let position = 0;
  let closed = false;
  return {
    size,
    bytes: null,
    async readAt(offset, buf) {
      if (position !== offset) {
        await file.seek(offset, Deno.SeekMode.Start);
        position = offset;
      }
      let filled = 0;
      // bounded: every pass reads at least one byte or stops
      while (filled < buf.length) {
        const n = await file.read(buf.subarray(filled));
        if (n === null || n === 0) break;
        filled += n;
      }
      position += filled;
      return filled;
    },
    close() {
      if (closed) return;
      closed = true;
      file.close();
    },
  };
}

/** Options of {@linkcode openSource}. */
export interface OpenSourceOptions {
  /** The served view of the tree: small files come from its memory cache. */
  files: BootFiles;
  /** Send in netascii mode (the file is converted in memory). */
  netascii: boolean;
  /** Largest file served in netascii mode; default 16 MiB. */
  netasciiMaxBytes?: number;
}

/**
 * Opens the bytes of a resolved file: a generated file's content, a netascii conversion (refused past
 * `netasciiMaxBytes`), a cached copy, or else the file on disk.
 */
export async function openSource(file: NetbootFile, opts: OpenSourceOptions): Promise<ByteSource> {
  const netascii = opts.netascii;
  if (file.remote !== undefined) {
    // a remote file still downloading: reads wait for its bytes (and fail if the download fails)
    const remote = file.remote;
    if (netascii) {
      remote.close();
      throw new Error("netascii is not offered for remote files still downloading; ask for octet");
    }
    return {
      size: file.size,
      bytes: null,
      readAt: (offset, buf) => remote.read(offset, buf),
      close: () => remote.close(),
    };
  }
  if (file.content !== undefined) return memorySource(netascii ? toNetascii(file.content) : file.content);
  if (netascii) {
    const limit = opts.netasciiMaxBytes ?? 16 * 1024 * 1024;
    if (file.size > limit) throw new Error(`netascii is limited to ${limit} bytes; ask for octet`);
    return memorySource(toNetascii(await Deno.readFile(file.path)));
  }
  const bytes = await opts.files.bytes(file);
  if (bytes !== null) return memorySource(bytes);
  return fileSource(await Deno.open(file.path, { read: true }), file.size);
}
