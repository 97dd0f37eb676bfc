/** SIEM streaming: where each configured destination stands (cursor, lag, holder, last error). */
import type { Command } from "commander";
import { siemDestinationList, type SiemDestinationStatus } from "../../contract/siem.js";
import { globalOptions, type CliContext } from "../context.js";
import { type Column, emit, renderTable } from "../output.js";
import { clientFor } from "./shared.js";

const COLUMNS: readonly Column<SiemDestinationStatus>[] = [
  { header: "NAME", value: (d) => d.name },
  { header: "KIND", value: (d) => `${d.kind}/${d.format}` },
  { header: "ENDPOINT", value: (d) => d.endpoint },
  { header: "DELIVERED", value: (d) => `${d.deliveredSeq}/${d.headSeq}` },
  { header: "LAG", value: (d) => `${d.lagEvents} events, ${Math.round(d.lagSeconds)}s` },
  { header: "STATE", value: (d) => (d.deliveringHere ? d.state : `standby (${d.holder ?? "no holder"})`) },
  { header: "LAST ERROR", value: (d) => d.lastError },
];

export function registerSiemCommands(program: Command, ctx: CliContext): void {
  const siem = program.command("siem").description("SIEM streaming of the audit log (auditor, security, admin)");
  siem
    .command("status")
    .description("each SIEM destination's cursor, lag and state")
    .addHelpText("after", "\nExample:\n  stint siem status\n  stint siem status --json\n")
    .action(async (_options: unknown, command: Command) => {
      const { json } = globalOptions(command);
      const client = await clientFor(ctx, command);
      const { data, raw } = await client.request("GET", "/v1/siem/destinations", { schema: siemDestinationList });
      emit(ctx, json, raw, () =>
        data.items.length === 0
          ? "No SIEM destinations are configured (siem.destinations in the configuration file).\n"
          : renderTable(COLUMNS, data.items),
      );
    });
}
