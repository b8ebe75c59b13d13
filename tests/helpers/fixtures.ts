/**
 * Where the golden packets captured from real firmware live (`shared/fixtures/`): $PYPXE_FIXTURES, else
 * `shared/fixtures` beside the repository, else the workplace's `/work/shared/fixtures` (a clean clone
 * elsewhere on the same machine still finds them).
 */
export function fixturesDir(): string {
  const env = Deno.permissions.querySync({ name: "env", variable: "PYPXE_FIXTURES" }).state === "granted"
    ? Deno.env.get("PYPXE_FIXTURES")
    : undefined;
  const candidates = [
    ...(env ? [env] : []),
    new URL("../../../shared/fixtures", import.meta.url).pathname,
    "/work/shared/fixtures",
  ];
  for (const dir of candidates) {
    try {
      if (Deno.statSync(`${dir}/dhcp`).isDirectory) return dir.replace(/\/$/, "") + "/";
    } catch {
      // try the next place
    }
  }
  throw new Error(`firmware fixtures not found in ${candidates.join(", ")} (set PYPXE_FIXTURES)`);
}
