/**
 * Network-namespace test bed: a server namespace and a client namespace joined by a veth pair. Needs root
 * and `ip netns`; `netnsAvailable()` says why not when it cannot work. Always call `destroy()` (finally).
 */

/** Runs a command; returns its exit code and output (never throws for a non-zero exit). */
export async function run(cmd: string, args: string[], opts: { netns?: string } = {}) {
  const full = opts.netns ? ["netns", "exec", opts.netns, cmd, ...args] : args;
  const out = await new Deno.Command(opts.netns ? "ip" : cmd, {
    args: full,
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

function which(name: string): string | null {
  for (const dir of ["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/sbin", "/usr/local/bin"]) {
    try {
      if (Deno.statSync(`${dir}/${name}`).isFile) return `${dir}/${name}`;
    } catch {
      // not in this directory
    }
  }
  return null;
}

/** Null when namespaces can be used here, else the reason they cannot. */
export function netnsAvailable(tools: string[] = []): string | null {
  if (Deno.uid() !== 0) return "not root";
  for (const tool of ["ip", ...tools]) if (which(tool) === null) return `${tool} is not installed`;
  const probe = `pypxe-probe-${Deno.pid}`;
  const add = new Deno.Command("ip", { args: ["netns", "add", probe], stderr: "piped" }).outputSync();
  if (add.code !== 0) return `ip netns add failed: ${new TextDecoder().decode(add.stderr).trim()}`;
  new Deno.Command("ip", { args: ["netns", "del", probe] }).outputSync();
  return null;
}

/** A pair of namespaces: `server` holds `vs` with `serverIp`/24, `client` holds `vc` (no address). */
export interface NetnsPair {
  server: string;
  client: string;
  serverIp: string;
  destroy(): Promise<void>;
}

let counter = 0;

/** Creates the pair (unique names); throws when a step fails, after cleaning up. */
export async function createPair(serverIp = "10.213.0.1"): Promise<NetnsPair> {
  const id = `${Deno.pid}-${counter++}`;
  const server = `pypxe-s-${id}`;
  const client = `pypxe-c-${id}`;
  const destroy = async () => {
    await run("ip", ["netns", "del", server]);
    await run("ip", ["netns", "del", client]);
  };
  const steps: [string, string[], string?][] = [
    ["ip", ["netns", "add", server]],
    ["ip", ["netns", "add", client]],
    ["ip", ["link", "add", "vs", "netns", server, "type", "veth", "peer", "name", "vc", "netns", client]],
    ["ip", ["addr", "add", `${serverIp}/24`, "dev", "vs"], server],
    ["ip", ["link", "set", "vs", "up"], server],
    ["ip", ["link", "set", "lo", "up"], server],
    ["ip", ["link", "set", "vc", "up"], client],
    ["ip", ["link", "set", "lo", "up"], client],
  ];
  for (const [cmd, args, ns] of steps) {
    const r = await run(cmd, args, { netns: ns });
    if (r.code !== 0) {
      await destroy();
      throw new Error(`${cmd} ${args.join(" ")}: ${r.stderr.trim()}`);
    }
  }
  return { server, client, serverIp, destroy };
}
