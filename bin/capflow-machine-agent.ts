#!/usr/bin/env node
/** Entry of an emulated instance's first process (the test bed's machines; see src/emulator/machine-agent.ts). */
import { runMachineAgent } from '../src/emulator/machine-agent.js';

const configPath = process.argv[2];
if (!configPath) {
  process.stderr.write('usage: capflow-machine-agent <machine.json>\n');
  process.exit(2);
}
runMachineAgent(configPath).catch((err: unknown) => {
  process.stderr.write(`machine agent: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
