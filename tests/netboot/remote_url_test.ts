/** Remote references, pure: URL or local name, refused schemes naming the entry, the JSON form, names. */
import assert from "node:assert/strict";
import {
  checkRemoteUrl,
  displayUrl,
  isRemoteUrl,
  parseRemoteRef,
  remoteKey,
  remoteName,
  RemoteUrlError,
} from "../../src/netboot/remote.ts";

const HASH = "AB".repeat(32);

Deno.test("remote url: a URL is told from a local name", () => {
  for (const url of ["http://x/y", "https://x/y", "HTTP://X/Y", "ftp://x/y", "tftp://x/y", "file:///etc"]) {
    assert.equal(isRemoteUrl(url), true, url);
  }
  for (const name of ["vmlinuz", "ipxe.efi", "grub/grub.cfg", "C:\\boot\\x", "http:/nope", "/abs/path"]) {
    assert.equal(isRemoteUrl(name), false, name);
  }
});

Deno.test("remote url: non-HTTP schemes are refused at start-up with the entry named", () => {
  assert.equal(checkRemoteUrl("https://mirror.example/a b", "x").href, "https://mirror.example/a%20b");
  const cases: [string, RegExp][] = [
    [
      "ftp://mirror/vmlinuz",
      /^menu\.json entries\[2\]\.kernel: "ftp:\/\/mirror\/vmlinuz" is not an http:\/\/ or https:\/\/ URL \(scheme ftp:\)$/,
    ],
    ["tftp://10.0.0.1/pxelinux.0", /is not an http:\/\/ or https:\/\/ URL \(scheme tftp:\)/],
    ["http://", /is not a valid URL/],
    ["file:///boot/vmlinuz", /is not an http:\/\/ or https:\/\/ URL/],
  ];
  for (const [url, message] of cases) {
    assert.throws(() => checkRemoteUrl(url, "menu.json entries[2].kernel"), (err: unknown) => {
      assert.ok(err instanceof RemoteUrlError);
      assert.equal(err.where, "menu.json entries[2].kernel");
      assert.match(err.message, message);
      return true;
    });
  }
});

Deno.test("remote url: the JSON forms: string, {url, sha256}, local names, and precise errors", () => {
  assert.equal(parseRemoteRef("vmlinuz", "e.kernel"), null);
  assert.deepEqual(parseRemoteRef("http://o/k", "e.kernel"), { url: "http://o/k" });
  assert.deepEqual(parseRemoteRef({ url: "https://o/i", sha256: HASH }, "e.initrd[1]"), {
    url: "https://o/i",
    sha256: HASH.toLowerCase(),
  });
  assert.deepEqual(parseRemoteRef({ url: "https://o/i" }, "e.initrd[1]"), { url: "https://o/i" });
  const bad: [unknown, RegExp][] = [
    ["ftp://o/k", /: e\.kernel: "ftp:\/\/o\/k" is not an http/],
    [{ url: "https://o/i", sha256: "abc" }, /: e\.kernel\.sha256: "abc" must be 64 hex digits$/],
    [{ url: 42 }, /: e\.kernel\.url: "42" must be a URL string$/],
    [{ url: "https://o/i", sha: HASH }, /: e\.kernel\.sha: .* is not a known key \(use "url", "sha256"\)$/],
    [{ url: "gopher://o/i" }, /: e\.kernel\.url: "gopher:\/\/o\/i" is not an http/],
    [7, /: e\.kernel: "7" must be a file name, a URL or \{"url": \.\.\., "sha256": \.\.\.\}$/],
    [null, /must be a file name, a URL/],
  ];
  for (const [value, message] of bad) {
    assert.throws(() => parseRemoteRef(value, "e.kernel"), message, JSON.stringify(value));
  }
});

Deno.test("remote url: keys and served names", () => {
  const url = "https://boot.example/releases/6.8/vmlinuz?sig=1";
  assert.match(remoteKey(url), /^[0-9a-f]{64}$/);
  assert.notEqual(remoteKey(url), remoteKey(url + "2"));
  assert.equal(remoteName(url), `remote/${remoteKey(url).slice(0, 16)}/vmlinuz`);
  assert.equal(remoteName("https://o/"), `remote/${remoteKey("https://o/").slice(0, 16)}/file`);
  assert.match(remoteName("https://o/a%20b%2F..%2Fc"), /\/file$/, "odd basenames become 'file'");
  assert.match(remoteName("https://o/initrd.img-6.8.0+1"), /\/initrd\.img-6\.8\.0\+1$/);
  assert.equal(displayUrl("https://user:secret@o/k"), "https://user:***@o/k");
  assert.equal(displayUrl("https://o/k"), "https://o/k");
});
