/** Pure helpers of the file server: Range parsing, conditionals, content types, request paths. */
import { deepStrictEqual, equal } from "node:assert/strict";
import {
  contentTypeFor,
  entityTag,
  ifRangeHolds,
  notModified,
  parseRange,
  requestPath,
} from "../../src/http/range.ts";
import { checkIpxeScript } from "./ipxe_syntax.ts";

Deno.test("range: parseRange covers RFC 9110 single, open, suffix and odd forms", () => {
  const p = (h: string | null, size = 1000) => parseRange(h, size);
  deepStrictEqual(p(null), { kind: "full" });
  deepStrictEqual(p("bytes=0-99"), { kind: "partial", range: { start: 0, end: 99 } });
  deepStrictEqual(p("bytes=900-"), { kind: "partial", range: { start: 900, end: 999 } });
  deepStrictEqual(p("bytes=-100"), { kind: "partial", range: { start: 900, end: 999 } });
  deepStrictEqual(p("bytes=-5000"), { kind: "partial", range: { start: 0, end: 999 } });
  deepStrictEqual(p("bytes=990-5000"), { kind: "partial", range: { start: 990, end: 999 } });
  deepStrictEqual(p("Bytes = 1-2"), { kind: "partial", range: { start: 1, end: 2 } }); // lenient unit
  deepStrictEqual(p("bytes=1000-"), { kind: "unsatisfiable" });
  deepStrictEqual(p("bytes=-0"), { kind: "unsatisfiable" });
  deepStrictEqual(p("bytes=0-", 0), { kind: "unsatisfiable" });
  deepStrictEqual(p("bytes=0-1,5-6"), { kind: "full" });
  deepStrictEqual(p("bytes=0-1,2000-"), { kind: "partial", range: { start: 0, end: 1 } });
  deepStrictEqual(p("bytes=5-1"), { kind: "full" });
  deepStrictEqual(p("bytes=a-b"), { kind: "full" });
  deepStrictEqual(p("items=0-1"), { kind: "full" });
  deepStrictEqual(p("bytes=-"), { kind: "full" });
  const big = 6 * 1024 ** 3;
  deepStrictEqual(parseRange(`bytes=${big - 10}-`, big), {
    kind: "partial",
    range: { start: big - 10, end: big - 1 },
  });
});

Deno.test("range: conditionals and entity tags", () => {
  const mtime = new Date("2026-01-02T03:04:05.678Z");
  const etag = entityTag(4096, mtime);
  equal(etag, `"${mtime.getTime().toString(16)}-1000"`);
  // an edit 1 ms later with the same size is a different entity
  equal(entityTag(4096, new Date(mtime.getTime() + 1)) === etag, false);
  const lm = mtime.toUTCString();
  equal(notModified({ ifNoneMatch: etag, ifModifiedSince: null }, etag, mtime), true);
  equal(notModified({ ifNoneMatch: "*", ifModifiedSince: null }, etag, mtime), true);
  equal(notModified({ ifNoneMatch: '"nope"', ifModifiedSince: lm }, etag, mtime), false);
  equal(notModified({ ifNoneMatch: null, ifModifiedSince: lm }, etag, mtime), true);
  equal(notModified({ ifNoneMatch: null, ifModifiedSince: "garbage" }, etag, mtime), false);
  equal(notModified({ ifNoneMatch: null, ifModifiedSince: new Date(0).toUTCString() }, etag, mtime), false);
  equal(ifRangeHolds(null, etag, lm), true);
  equal(ifRangeHolds(etag, etag, lm), true);
  equal(ifRangeHolds(`W/${etag}`, etag, lm), false);
  equal(ifRangeHolds(lm, etag, lm), true);
  equal(ifRangeHolds(new Date(0).toUTCString(), etag, lm), false);
});

Deno.test("range: content types and request paths", () => {
  equal(contentTypeFor("ipxe.efi"), "application/octet-stream");
  equal(contentTypeFor("undionly.KPXE"), "application/octet-stream");
  equal(contentTypeFor("pxelinux.0"), "application/octet-stream");
  equal(contentTypeFor("boot/menu.c32"), "application/octet-stream");
  equal(contentTypeFor("a/boot.ipxe"), "text/plain; charset=utf-8");
  equal(contentTypeFor("debian.iso"), "application/x-iso9660-image");
  equal(contentTypeFor("pxelinux.cfg/default"), "application/octet-stream");
  equal(contentTypeFor("x.cfg"), "text/plain; charset=utf-8");
  equal(requestPath("http://h//ipxe.efi?x=1"), "//ipxe.efi");
  equal(requestPath("http://h/a%20b/%2e%2e/c#f"), "/a b/../c");
  equal(requestPath("http://h:8080/x?y=%zz"), "/x");
  equal(requestPath("http://h/%zz"), null);
  equal(requestPath("http://h"), "/");
  equal(requestPath("/rel/x"), "/rel/x");
});

Deno.test("ipxe syntax checker catches broken scripts", () => {
  const problems = checkIpxeScript(
    "#!ipxe\nitem a A\nitem b B\nitem a again\nchoose --default zz t && goto ${target}\n:a\ngoto nowhere\nfoo bar\n",
  );
  const text = problems.join("\n");
  for (
    const expected of [
      "item b has no :b",
      "duplicate item 'a'",
      "--default zz",
      "goto nowhere",
      "unknown command 'foo'",
    ]
  ) {
    equal(text.includes(expected), true, `${expected} in:\n${text}`);
  }
});
