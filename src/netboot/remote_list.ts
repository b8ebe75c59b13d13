/**
 * What the remote cache reports: one {@linkcode RemoteEntryInfo} per held file, download in progress
 * and last failure (`pypxe cache list`, the status page), and the progress and outcome of a prefetch
 * (`pypxe cache fetch`).
 * @module
 */
import type { Download } from "./remote_download.ts";
import type { RemoteError } from "./remote_fetch.ts";
import type { IndexEntry } from "./remote_index.ts";

/** How a listed file's hash stands. */
export type HashStatus = "verified" | "unverified" | "mismatch" | "pending" | "none";

/** One line of {@linkcode RemoteCache.list}. */
export interface RemoteEntryInfo {
  readonly url: string;
  readonly key: string;
  readonly state: "complete" | "downloading" | "failed";
  /** Total bytes (announced while downloading; null when unknown). */
  readonly size: number | null;
  readonly received: number;
  /** When fetched, last used, last confirmed by the origin (ms since the epoch); null when not held. */
  readonly fetchedAt: number | null;
  readonly lastUsedAt: number | null;
  readonly checkedAt: number | null;
  /** Age of the held copy (ms). */
  readonly ageMs: number | null;
  readonly hash: HashStatus;
  readonly sha256: string | null;
  /** Why the last download failed. */
  readonly error: string | null;
  /** True for a download replacing a held copy (a newer version). */
  readonly replacing: boolean;
}

/** Progress of one URL in {@linkcode RemoteCache.fetchAll}. */
export interface FetchProgress {
  readonly url: string;
  readonly state: "downloading" | "complete" | "failed";
  readonly received: number;
  readonly size: number | undefined;
  readonly error?: string;
}

/** The outcome of one URL in {@linkcode RemoteCache.fetchAll}. */
export interface FetchResult {
  readonly url: string;
  readonly ok: boolean;
  readonly size?: number;
  readonly sha256?: string;
  /** True when the file was already held before this fetch. */
  readonly cached?: boolean;
  /** False for a file larger than `maxBytes` (fetched, verified, not kept). */
  readonly kept?: boolean;
  readonly error?: string;
}

/** The line of a held file. */
export function heldInfo(e: IndexEntry, now: number): RemoteEntryInfo {
  return {
    url: e.url,
    key: e.key,
    state: "complete",
    size: e.size,
    received: e.size,
    fetchedAt: e.fetchedAt,
    lastUsedAt: e.lastUsedAt,
    checkedAt: e.checkedAt,
    ageMs: now - e.fetchedAt,
    hash: e.verified ? "verified" : "unverified",
    sha256: e.sha256,
    error: null,
    replacing: false,
  };
}

/** The line of a download in progress (`replacing`: a newer version of a held file). */
export function downloadInfo(key: string, d: Download, replacing: boolean): RemoteEntryInfo {
  return {
    ...EMPTY,
    url: d.url,
    key,
    state: "downloading",
    size: d.size ?? null,
    received: d.received,
    hash: "pending",
    replacing,
  };
}

/** The line of a URL whose last download failed. */
export function failedInfo(key: string, url: string, error: RemoteError): RemoteEntryInfo {
  return {
    ...EMPTY,
    url,
    key,
    state: "failed",
    hash: error.code === "mismatch" ? "mismatch" : "none",
    error: error.message,
  };
}

const EMPTY = {
  size: null,
  received: 0,
  fetchedAt: null,
  lastUsedAt: null,
  checkedAt: null,
  ageMs: null,
  sha256: null,
  error: null,
  replacing: false,
} as const;
