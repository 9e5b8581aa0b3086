/**
 * The test bed's booting machines: time from RunInstances to the Node Ready, per machine, for three
 * control planes (kubeadm init, then two kubeadm join --control-plane, one after another) and ten
 * workers launched at once; RSS per control plane machine and per worker; and the share of CPU time
 * spent in the stand-ins (machine agents, kubelet stand-ins: node processes) against the real
 * binaries (etcd, kube-apiserver, kube-controller-manager, kube-scheduler), with the finished boot
 * commands (kubeadm runs, user data, stand-in commands: the processes' reaped children) apart. The CNI config is written as soon as each machine
 * exists (it stands for the CNI DaemonSet), so Ready means registered and heartbeating.
 * Needs root and the test bed. Prints figures; asserts nothing.
 *
 *   npm run build && node --import tsx bench/machines.bench.ts [workers=10]
 */
import { readFileSync, readlinkSync } from 'node:fs';
import { pidsIn } from '../src/emulator/network.js';
import type { Machine } from '../src/emulator/machine.js';
import { KubeadmWorld, sleep } from '../test/support/kubeadm-world.js';
import { startTestSupervisor } from '../test/support/machines.js';
import { startMoto } from '../test/support/moto.js';

const workers = Number(process.argv[2] ?? 10);
const moto = await startMoto();
const sup = await startTestSupervisor(moto.endpoint);
const world = await KubeadmWorld.create(moto.endpoint, sup, { name: 'bench', cidr: '10.0.0.0/16' });
const launchedAt = new Map<string, number>();
const readyAfter = new Map<string, number>();
let kubeconfig: string | undefined;

async function launch(kind: 'cp' | 'worker'): Promise<Machine> {
  const t0 = Date.now();
  const id = kind === 'cp' ? await world.launchControlPlane() : await world.launchWorker();
  const m = await world.machine(id, 60_000);
  launchedAt.set(m.options.config.hostname, t0);
  await world.installCni(m).catch(async () => {
    await sleep(500);
    await world.installCni(m);
  });
  return m;
}

async function waitReady(names: string[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (names.some((n) => !readyAfter.has(n))) {
    if (Date.now() > deadline) throw new Error(`not Ready in time: ${names.filter((n) => !readyAfter.has(n)).join(', ')}`);
    try {
      for (const node of await world.nodes(kubeconfig!)) {
        if (node.ready && !readyAfter.has(node.name) && launchedAt.has(node.name)) readyAfter.set(node.name, Date.now() - launchedAt.get(node.name)!);
      }
    } catch {
      /* API restarting while a control plane joins */
    }
    await sleep(250);
  }
}

function procStats(pid: number): { rssKb: number; ownTicks: number; childTicks: number; name: string } | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const exe = (() => {
      try {
        return readlinkSync(`/proc/${pid}/exe`);
      } catch {
        return '';
      }
    })();
    return {
      rssKb: Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0),
      ownTicks: Number(fields[11]) + Number(fields[12]),
      // cutime + cstime: children already reaped (kubeadm runs, user data commands, stand-in commands)
      childTicks: Number(fields[13]) + Number(fields[14]),
      name: /node$/.test(exe) ? 'stand-in' : 'real',
    };
  } catch {
    return undefined;
  }
}

async function machineStats(m: Machine): Promise<{ rssMb: number; standInTicks: number; realTicks: number; bootTicks: number }> {
  let rssKb = 0;
  let standInTicks = 0;
  let realTicks = 0;
  let bootTicks = 0;
  for (const pid of await pidsIn(m.options.netns)) {
    const s = procStats(pid);
    if (!s) continue;
    rssKb += s.rssKb;
    if (s.name === 'stand-in') standInTicks += s.ownTicks;
    else realTicks += s.ownTicks;
    bootTicks += s.childTicks;
  }
  return { rssMb: rssKb / 1024, standInTicks, realTicks, bootTicks };
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const sec = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;

try {
  const t0 = Date.now();
  const cps: Machine[] = [await launch('cp')];
  await world.waitForApi(300_000, cps[0]);
  kubeconfig = await world.adminKubeconfig(cps[0]!);
  await waitReady([cps[0]!.options.config.hostname], 300_000);
  for (let i = 0; i < 2; i++) {
    const m = await launch('cp');
    cps.push(m);
    await waitReady([m.options.config.hostname], 300_000);
  }
  const cpDone = Date.now() - t0;
  const tw = Date.now();
  const ws = await Promise.all(Array.from({ length: workers }, () => launch('worker')));
  await waitReady(ws.map((m) => m.options.config.hostname), 600_000);
  const wDone = Date.now() - tw;

  const cpTimes = cps.map((m) => readyAfter.get(m.options.config.hostname)!);
  const wTimes = ws.map((m) => readyAfter.get(m.options.config.hostname)!);
  const cpStats = await Promise.all(cps.map(machineStats));
  const wStats = await Promise.all(ws.map(machineStats));
  const all = [...cpStats, ...wStats];
  const standIn = all.reduce((n, s) => n + s.standInTicks, 0);
  const real = all.reduce((n, s) => n + s.realTicks, 0);
  const bootCommands = all.reduce((n, s) => n + s.bootTicks, 0);
  console.log(`machines: 3 control planes + ${workers} workers (kubeadm ${world.version}), one run`);
  console.log(`RunInstances → Node Ready, control planes: ${cpTimes.map(sec).join(', ')} (first = kubeadm init); median ${sec(median(cpTimes))}`);
  console.log(`RunInstances → Node Ready, workers launched together: median ${sec(median(wTimes))}, max ${sec(Math.max(...wTimes))}`);
  console.log(`wall: 3 control planes ${sec(cpDone)}, ${workers} workers ${sec(wDone)}, all ${sec(cpDone + wDone)}`);
  console.log(`RSS per control plane machine: median ${median(cpStats.map((s) => s.rssMb)).toFixed(0)} MB; per worker (only stand-ins run there: agent + kubelet stand-in): median ${median(wStats.map((s) => s.rssMb)).toFixed(0)} MB`);
  console.log(
    `CPU time: stand-ins' own ${(standIn / 100).toFixed(1)} s, control plane binaries' own ${(real / 100).toFixed(1)} s, finished boot commands (kubeadm, user data, stand-in commands) ${(bootCommands / 100).toFixed(1)} s; stand-in share of the running processes ${((100 * standIn) / (standIn + real)).toFixed(1)} %, of all ${((100 * standIn) / (standIn + real + bootCommands)).toFixed(1)} %`,
  );
} finally {
  await sup.stop();
  world.dispose();
  await moto.stop();
}
