import { ExitCode } from '../core/errors.js';
import { secretStoreFromEnv } from '../core/secrets.js';
import { listClaims } from '../hosts/claims.js';
import { parse } from './args.js';
import type { CliIo } from './context.js';

export const hostsHelp = `Usage: capflow hosts [cluster ...] [--json]

Lists the bring-your-own hosts claimed by clusters (all, or those named): host,
address, cluster, machine group, state (claimed, or releasing: join-workers
drains, resets and releases it) and when it was claimed. Reads the claims from
capflow's secret store: the management cluster's Secrets capflow-host-* (in
CAPFLOW_NAMESPACE, default capflow-system), or the local store
(CAPFLOW_SECRET_STORE=local, CAPFLOW_SECRETS_DIR).

Options:
  --json   the claims as a JSON array
Exit codes: 0 printed.`;

export async function hostsCommand(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parse('hosts', argv, { json: { type: 'boolean' } });
  if (values.help) {
    io.out(hostsHelp);
    return ExitCode.ok;
  }
  const wanted = new Set(positionals);
  const claims = (await listClaims(secretStoreFromEnv(io.env))).filter((c) => wanted.size === 0 || wanted.has(c.cluster));
  if (values.json) {
    io.out(JSON.stringify(claims, null, 2));
    return ExitCode.ok;
  }
  const rows = [['HOST', 'ADDRESS', 'CLUSTER', 'GROUP', 'STATE', 'CLAIMED'], ...claims.map((c) => [c.host, `${c.address}:${c.port}`, c.cluster, c.group, c.state, c.claimedAt])];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const r of rows) io.out(r.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd());
  return ExitCode.ok;
}
