/**
 * Live boot status: per client (MAC, type, IP, stage, current file, bytes/total, rate, last seen, a
 * timeline of its boot events and plain-language hints when the boot stopped), the services and totals,
 * and Prometheus counters, fed only by the boot event stream. Served over HTTP as `/status` (a page,
 * complete without JavaScript, that updates itself from `/status/live`), `/status.json` and
 * `/status/events` (the same snapshot as JSON, once or as server-sent events) and `/metrics`.
 *
 * The parts live in `status/`: `model.ts` (the board), `timeline.ts` (a client's events), `hints.ts`
 * (why a boot stopped), `page.ts` (the HTML), `routes.ts` (the HTTP routes), `metrics.ts` (counters).
 * @module
 */
export {
  type ClientState,
  type ClientStatus,
  type ServerSummary,
  type ServiceSummary,
  StatusBoard,
  type StatusSnapshot,
  type StatusTotals,
} from "./status/model.ts";
export { type Hint, type HintCode, type HintOptions, hintsFor, QUIET_MS } from "./status/hints.ts";
export {
  describeEntry,
  MAX_TIMELINE,
  type Stage,
  STAGE_NAMES,
  stageOfFile,
  STAGES,
  type TimelineEntry,
} from "./status/timeline.ts";
export { renderStatus, statusPage } from "./status/page.ts";
