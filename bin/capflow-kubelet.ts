#!/usr/bin/env node
/** The `kubelet` of the test bed's machines: a stand-in (see src/emulator/kubelet/kubelet.ts). */
import { main } from '../src/emulator/kubelet/kubelet.js';

const version = process.env.CAPFLOW_KUBELET_VERSION;
process.exitCode = await main(process.argv.slice(2), version ? { version } : {});
