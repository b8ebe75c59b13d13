/**
 * The HTTP face of the status board: `/status` (the page), `/status/live` (the page's updates: rendered
 * HTML as server-sent events), `/status.json` and `/status/events` (the snapshot as JSON, once or as
 * server-sent events) and `/metrics`.
 * @module
 */
import type { StatusBoard } from "./model.ts";
import { renderStatus, statusPage } from "./page.ts";

/** Answers the status routes; null for any other path (the file server handles it). */
export function statusRoute(
  board: StatusBoard,
  req: { readonly method: string },
  path: string,
): Response | null {
  if (req.method !== "GET" && req.method !== "HEAD") return null;
  switch (path) {
    case "/status":
      // the first view is in the page itself (complete without JavaScript or a live connection)
      return new Response(statusPage(renderStatus(board.snapshot())), {
        headers: { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" },
      });
    case "/status.json":
      return Response.json(board.snapshot(), { headers: { "cache-control": "no-store" } });
    case "/metrics":
      return new Response(board.metrics(), { headers: { "content-type": "text/plain; version=0.0.4" } });
    case "/status/events":
      return eventStream(board, () => JSON.stringify(board.snapshot()));
    case "/status/live":
      return eventStream(board, () => JSON.stringify(renderStatus(board.snapshot())));
    default:
      return null;
  }
}

/** Server-sent events of `message()`: at once, at most 4 a second while events flow, else every 2 s. */
function eventStream(board: StatusBoard, message: () => string): Response {
  const encoder = new TextEncoder();
  let timer: ReturnType<typeof setInterval> | undefined;
  let delay: ReturnType<typeof setTimeout> | undefined;
  let off: (() => void) | undefined;
  let pending = false;
  const stop = () => {
    clearInterval(timer);
    clearTimeout(delay);
    off?.();
  };
  const body = new ReadableStream<Uint8Array>({
    start: (controller) => {
      const push = () => {
        pending = false;
        try {
          controller.enqueue(encoder.encode(`data: ${message()}\n\n`));
        } catch {
          stop(); // the stream is closed: the client went away
        }
      };
      push();
      off = board.onChange(() => {
        if (pending) return;
        pending = true;
        delay = setTimeout(push, 250);
      });
      // the heartbeat also keeps "last seen" and the stopped-client hints current
      timer = setInterval(push, 2000);
    },
    // Deno cancels the body when the client goes away or the server stops
    cancel: stop,
  });
  return new Response(body, {
    headers: { "content-type": "text/event-stream", "cache-control": "no-store" },
  });
}
