/**
 * A small iPXE script checker for generated menus: known commands only, balanced `${...}`, every
 * `goto` target and every menu item has its `:label`, the `choose --default` names an item, and each
 * item id is unique.
 */

const COMMANDS = new Set([
  "set",
  "menu",
  "item",
  "choose",
  "goto",
  "echo",
  "shell",
  "exit",
  "sanboot",
  "kernel",
  "initrd",
  "imgfetch",
  "boot",
  "chain",
  "iseq",
  "isset",
  "prompt",
  "reboot",
  "imgfree",
  "dhcp",
]);

/** Returns the problems found in `script` (empty when it is fine). */
export function checkIpxeScript(script: string): string[] {
  const problems: string[] = [];
  const lines = script.split("\n");
  if (lines[0] !== "#!ipxe") problems.push("line 1: must be #!ipxe");
  const labels = new Set<string>();
  const gotos: [number, string][] = [];
  const items: [number, string][] = [];
  const defaults: [number, string][] = [];
  let chooseJumpsToItem = false;
  lines.forEach((line, i) => {
    const at = `line ${i + 1}`;
    const trimmed = line.trim();
    if (trimmed === "" || trimmed.startsWith("#")) return;
    if ((line.match(/\$\{/g) ?? []).length !== (line.match(/\$\{[^}]*\}/g) ?? []).length) {
      problems.push(`${at}: unbalanced \${...}`);
    }
    if (trimmed.startsWith(":")) {
      const label = trimmed.slice(1);
      if (!/^[A-Za-z0-9_-]+$/.test(label)) problems.push(`${at}: bad label '${label}'`);
      if (labels.has(label)) problems.push(`${at}: duplicate label '${label}'`);
      labels.add(label);
      return;
    }
    // a trailing `||` is iPXE's documented way to ignore a command's failure
    const chain = trimmed.replace(/\s*\|\|$/, "");
    for (const part of chain.split(/\s*(?:&&|\|\|)\s*/)) {
      if (part === "") {
        problems.push(`${at}: empty command around && or ||`);
        continue;
      }
      const words = part.split(/\s+/);
      if (!COMMANDS.has(words[0])) problems.push(`${at}: unknown command '${words[0]}'`);
      if (words[0] === "goto") {
        if (words.length !== 2) problems.push(`${at}: goto takes one label`);
        else if (words[1] === "${target}") chooseJumpsToItem = true;
        else if (words[1].includes("${")) problems.push(`${at}: computed goto ${words[1]}`);
        else gotos.push([i + 1, words[1]]);
      }
      if (words[0] === "item") {
        const args = words.slice(1);
        if (args[0] === "--gap") continue;
        while (args[0]?.startsWith("--")) args.splice(0, args[0] === "--key" ? 2 : 1);
        if (args.length < 2) problems.push(`${at}: item needs an id and a text`);
        else items.push([i + 1, args[0]]);
      }
      if (words[0] === "choose") {
        const d = words.indexOf("--default");
        if (d >= 0) defaults.push([i + 1, words[d + 1]]);
        if (!part.includes("target")) problems.push(`${at}: choose without a target variable`);
      }
      if (["kernel", "initrd", "sanboot", "chain"].includes(words[0])) {
        const args = words.slice(1);
        for (let j = 0; j < args.length; j++) {
          if (["--name", "-n", "--drive", "--timeout"].includes(args[j])) args.splice(j + 1, 1);
        }
        const url = args.find((w) => !w.startsWith("-"));
        if (url === undefined) {
          if (words[0] !== "sanboot") problems.push(`${at}: ${words[0]} without a URL`);
        } else if (!/^(https?|tftp):\/\//.test(url) && !url.startsWith("${")) {
          problems.push(`${at}: ${words[0]} target '${url}' is not a URL`);
        }
      }
    }
  });
  for (const [line, target] of gotos) {
    if (!labels.has(target)) problems.push(`line ${line}: goto ${target} has no :${target}`);
  }
  const ids = new Set<string>();
  for (const [line, id] of items) {
    if (ids.has(id)) problems.push(`line ${line}: duplicate item '${id}'`);
    ids.add(id);
    if (!labels.has(id)) problems.push(`line ${line}: item ${id} has no :${id}`);
  }
  if (items.length > 0 && !chooseJumpsToItem) {
    problems.push("menu items exist but no choose ... goto ${target}");
  }
  for (const [line, id] of defaults) {
    if (!ids.has(id)) problems.push(`line ${line}: choose --default ${id} is not an item`);
  }
  return problems;
}
