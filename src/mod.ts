/**
 * pypxe as a library: each service can be used on its own, like PyPXE's `from pypxe import tftp`.
 *
 * @example
 * ```ts
 * import { NetbootFs, BootEvents, TftpServer } from "pypxe";
 * const netboot = await NetbootFs.open({ overlay: "./tftpboot" });
 * const tftp = new TftpServer({ host: "0.0.0.0", port: 69, netboot, events: new BootEvents() });
 * await tftp.start();
 * ```
 * @module
 */
export { runPypxe } from "./app.ts";
export {
  buildConfig,
  ConfigError,
  DEFAULTS,
  loadConfigFile,
  parseConfigJson,
  type PxeConfig,
} from "./config.ts";
export { parseArgs } from "./cli.ts";
export { type BootEvent, BootEvents } from "./events.ts";
export { setupLogging, teardownLogging } from "./log.ts";
export { NetbootError, type NetbootFile, NetbootFs } from "./netboot/fs.ts";
export { type Service, ServiceGroup } from "./server.ts";
export { DhcpServer } from "./dhcp/server.ts";
export { HttpServer } from "./http/server.ts";
export { ipxeMenu } from "./netboot/ipxe.ts";
export { type MenuEntry, type MenuFile, MenuFileError, parseMenuFile } from "./netboot/menu.ts";
export { BootFiles, type BootFilesOptions, GENERATED_FILES } from "./netboot/files.ts";
export { GRUB_CONFIG_NAME, grubConfig } from "./netboot/grub.ts";
export { NbdServer } from "./nbd/server.ts";
export { TftpServer } from "./tftp/server.ts";
export { loadStaticLeases, parseStaticLeases, type StaticLeases } from "./static_leases.ts";
export { type ClientStatus, StatusBoard } from "./status.ts";
export { bootFileFor, describeClient } from "./dhcp/policy.ts";
