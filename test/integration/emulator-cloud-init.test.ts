// The cloud-init stand-in with the real `cloud-init schema` (the test bed's cloud-init), and the
// recording stand-in commands run for real. Needs `bash testbed/install.sh` for cloud-init.

import { expect } from 'chai';
import { spawn, spawnSync } from 'node:child_process';
import { accessSync, constants, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { boot, checkCloudConfig, type BootContext } from '../../src/emulator/cloud-init.js';
import { decodeUserData, type InstanceMetadata } from '../../src/emulator/user-data.js';
import { readStandInCalls, STAND_IN_COMMANDS, writeStandInCommands } from '../../src/emulator/stand-in-commands.js';
import { requireTool } from '../support/tools.js';

const meta: InstanceMetadata = {
  instanceId: 'i-0fedcba9876543210',
  localHostname: 'ip-10-0-2-34.us-west-2.compute.internal',
  localIpv4: '10.0.2.34',
  region: 'us-west-2',
  availabilityZone: 'us-west-2b',
};

/** Shaped as Cluster API's kubeadm bootstrap data for a control plane machine. */
const KUBEADM_USER_DATA = `## template: jinja
#cloud-config

write_files:
-   path: /etc/kubernetes/pki/ca.key
    owner: root:root
    permissions: '0600'
    content: |
      not a real key
-   path: /run/kubeadm/kubeadm.yaml
    owner: root:root
    permissions: '0640'
    content: |
      ---
      apiVersion: kubeadm.k8s.io/v1beta4
      kind: InitConfiguration
      nodeRegistration:
        name: '{{ ds.meta_data.local_hostname }}'
        kubeletExtraArgs:
        - name: cloud-provider
          value: external
-   path: /run/cluster-api/placeholder
    owner: root:root
    permissions: '0640'
    content: "makes the directory"
runcmd:
  - 'kubeadm init --config /run/kubeadm/kubeadm.yaml  && echo success > /run/cluster-api/bootstrap-success.complete'
users:
  - name: capi
    sudo: ALL=(ALL) NOPASSWD:ALL
    ssh_authorized_keys:
      - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIexample capi@example
ntp:
  enabled: true
  servers:
    - 169.254.169.123
`;

interface Machine {
  root: string;
  ctx: BootContext;
  calls: string[][];
}

/** A temp root; commands are recorded, and with `path` the boot's own scripts run with it first on PATH. */
function machine(cloudInit: string | undefined, path?: string): Machine {
  const root = mkdtempSync(join(tmpdir(), 'capflow-ci-int-'));
  const calls: string[][] = [];
  const ctx: BootContext = {
    root,
    meta,
    log: () => undefined,
    run: async (cmd, opts) => {
      const argv = typeof cmd === 'string' ? ['/bin/sh', '-c', cmd] : cmd;
      calls.push(argv);
      if (!path || !argv[0]!.startsWith(root)) return 0;
      return new Promise<number>((resolve) => {
        const env = { ...process.env, ...opts?.env, PATH: `${path}${delimiter}${process.env.PATH ?? ''}` };
        spawn(argv[0]!, argv.slice(1), { env, stdio: 'ignore' }).on('close', (code) => resolve(code ?? 1));
      });
    },
    ...(cloudInit ? { cloudInitBinary: cloudInit } : {}),
  };
  return { root, ctx, calls };
}

describe('emulator/cloud-init with the real cloud-init schema', function () {
  this.timeout(60_000);
  let cloudInit: string;
  const roots: string[] = [];
  const bootWith = async (userData: string) => {
    const m = machine(cloudInit);
    roots.push(m.root);
    return { m, report: await boot(decodeUserData(Buffer.from(userData), meta), m.ctx) };
  };
  before(() => {
    cloudInit = requireTool('cloud-init');
  });
  after(() => roots.forEach((r) => rmSync(r, { recursive: true, force: true })));

  it('checkCloudConfig passes a valid cloud-config and fails an invalid one with the schema output', async () => {
    expect(await checkCloudConfig('#cloud-config\nruncmd: [ls]\n', cloudInit)).to.deep.include({ ok: true });
    const bad = await checkCloudConfig('#cloud-config\nruncmd: 5\n', cloudInit);
    expect(bad.ok).to.equal(false);
    expect(bad.output).to.contain("runcmd: 5 is not of type 'array'");
  });

  it('kubeadm bootstrap data (jinja, write_files, runcmd, users, ntp) passes the schema and boots', async () => {
    const { m, report } = await bootWith(KUBEADM_USER_DATA);
    expect(report.errors).to.deep.equal([]);
    expect(report.ok).to.equal(true);
    expect(report.modules.map((x) => x.name)).to.deep.equal([
      'write_files',
      'users_groups',
      'ntp',
      'runcmd',
      'scripts_user',
      'final_message',
    ]);
    expect(readFileSync(join(m.root, 'run/kubeadm/kubeadm.yaml'), 'utf8')).to.contain(`name: '${meta.localHostname}'`);
    expect(m.calls.map((c) => c[0]!.replace(m.root, ''))).to.deep.equal([
      'useradd',
      'passwd',
      'chown',
      `/var/lib/cloud/instances/${meta.instanceId}/scripts/runcmd`,
    ]);
  });

  for (const [what, userData, schemaSays] of [
    ['a write_files entry without a path', '#cloud-config\nwrite_files: [{content: x}]\nbootcmd: [echo hi]\n', "'path' is a required property"],
    ['runcmd that is no list', '#cloud-config\nruncmd: 5\nwrite_files: [{path: /a, content: x}]\n', "runcmd: 5 is not of type 'array'"],
  ] as const) {
    it(`${what} fails the boot before any module runs, with the schema output in the report`, async () => {
      const { m, report } = await bootWith(userData);
      expect(report.ok).to.equal(false);
      expect(report.modules).to.deep.equal([]);
      expect(m.calls).to.deep.equal([]);
      expect(report.errors).to.have.length(1);
      expect(report.errors[0]).to.match(/^schema: part-001: /).and.contain(schemaSays);
      const result = JSON.parse(readFileSync(join(m.root, 'run/cloud-init/result.json'), 'utf8')) as { v1: { errors: string[] } };
      expect(result.v1.errors).to.deep.equal(report.errors);
    });
  }
});

describe('emulator/stand-in-commands', function () {
  this.timeout(30_000);
  let dir: string;
  let bin: string;
  let record: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'capflow-stand-ins-'));
    bin = join(dir, 'bin');
    record = join(dir, 'log', 'calls.jsonl');
    writeStandInCommands(bin, record);
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const call = (command: string, args: string[]) => spawnSync(join(bin, command), args, { encoding: 'utf8' });

  it('nothing recorded yet reads as no calls', () => {
    expect(readStandInCalls(record)).to.deep.equal([]);
  });

  it('records argv exactly: spaces, quotes, backslashes, newlines, empty words, $ and non-ASCII', () => {
    const args = ['restart', 'kube let', `it's "quoted"`, 'back\\slash', 'new\nline', '', '$HOME `id`', 'ünïcødé', '--opt=a b', '\t'];
    const r = call('systemctl', args);
    expect(r.status, r.stderr).to.equal(0);
    const calls = readStandInCalls(record);
    expect(calls).to.have.length(1);
    expect(calls[0]).to.deep.include({ command: 'systemctl', args });
    expect(new Date(calls[0]!.time).toISOString()).to.equal(calls[0]!.time);
  });

  it('every stand-in is executable, succeeds and records; crictl and ctr print nothing', () => {
    for (const command of STAND_IN_COMMANDS) {
      accessSync(join(bin, command), constants.X_OK);
      // sysctl reads a key given alone (test/unit/emulator-stand-in-commands.test.ts); -q writes quietly
      const r = call(command, command === 'sysctl' ? ['-q', 'x=1'] : ['x']);
      expect(r.status, `${command}: ${r.stderr}`).to.equal(0);
      if (command !== 'systemctl' && command !== 'lsmod') expect(r.stdout, command).to.equal('');
    }
    expect(readStandInCalls(record).map((c) => c.command)).to.deep.equal([...STAND_IN_COMMANDS]);
  });

  it('systemctl answers is-active with active and is-enabled with enabled for the image\'s units, one line per unit, nothing when quiet', () => {
    expect(call('systemctl', ['is-active', 'kubelet']).stdout).to.equal('active\n');
    expect(call('systemctl', ['is-active', 'kubelet', 'containerd']).stdout).to.equal('active\nactive\n');
    expect(call('systemctl', ['--no-pager', 'is-enabled', 'kubelet']).stdout).to.equal('enabled\n');
    expect(call('systemctl', ['is-active', '--quiet', 'kubelet']).stdout).to.equal('');
    expect(call('systemctl', ['daemon-reload']).stdout).to.equal('');
  });

  it('systemctl says a unit the image lacks is inactive (exit 3) and disabled (exit 1), as kubeadm\'s firewalld check expects', () => {
    const active = call('systemctl', ['is-active', 'firewalld']);
    expect({ out: active.stdout, status: active.status }).to.deep.equal({ out: 'inactive\n', status: 3 });
    const enabled = call('systemctl', ['is-enabled', 'kubelet.service', 'firewalld']);
    expect({ out: enabled.stdout, status: enabled.status }).to.deep.equal({ out: 'enabled\ndisabled\n', status: 1 });
  });

  it("a boot's runcmd finds the stand-ins first on its PATH and they record what the script ran", async () => {
    const m = machine(undefined, bin);
    try {
      const out = join(m.root, 'is-active');
      const userData = [
        '#cloud-config',
        'runcmd:',
        '- swapoff -a',
        '- modprobe br_netfilter',
        "- sysctl -w net.ipv4.ip_forward=1 'kernel.msg=a b'",
        '- [systemctl, enable, --now, kubelet]',
        `- systemctl is-active kubelet > ${out}`,
        '- [crictl, pull, "registry.k8s.io/pause:3.10", "it\'s"]',
      ].join('\n');
      const report = await boot(decodeUserData(Buffer.from(userData), meta), m.ctx);
      expect(report.errors).to.deep.equal([]);
      expect(readStandInCalls(record).map((c) => [c.command, ...c.args])).to.deep.equal([
        ['swapoff', '-a'],
        ['modprobe', 'br_netfilter'],
        ['sysctl', '-w', 'net.ipv4.ip_forward=1', 'kernel.msg=a b'],
        ['systemctl', 'enable', '--now', 'kubelet'],
        ['systemctl', 'is-active', 'kubelet'],
        ['crictl', 'pull', 'registry.k8s.io/pause:3.10', "it's"],
      ]);
      expect(readFileSync(out, 'utf8')).to.equal('active\n');
    } finally {
      rmSync(m.root, { recursive: true, force: true });
    }
  });
});
