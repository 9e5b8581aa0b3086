// Every example cluster with a KubeadmControlPlane, rendered for init, control plane join and worker
// join, checked with the test bed's real tools: the user data with `cloud-init schema`, the kubeadm
// configuration it writes with `kubeadm config validate`. Needs `bash testbed/install.sh`.
//
// cloud-init's schema command does not render `## template: jinja`, and kubeadm refuses the unrendered
// `{{ ds.meta_data.local_hostname }}` node name, so the user data is decoded first as the emulator's
// cloud-init does at boot: jinja rendered with sample EC2 metadata.
import { expect } from 'chai';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parseAllDocuments, stringify } from 'yaml';
import { renderUserData, type UserDataInput } from '../../src/bootstrap/cloud-config.js';
import type { BootstrapRole } from '../../src/bootstrap/kubeadm-config.js';
import { decodeUserData, type InstanceMetadata } from '../../src/emulator/user-data.js';
import { loadClusterSpec, type ClusterModel, type KubeadmConfigSpec, type KubeadmControlPlane } from '../../src/spec/index.js';
import { cloudInitSchema, kubeadmValidate, REPO_ROOT, testbedVersions } from '../support/tools.js';

const EXAMPLES = path.join(REPO_ROOT, 'examples', 'clusters');
const TOKEN = 'abcdef.0123456789abcdef';
const CA_HASH = `sha256:${'3'.repeat(64)}`;
const PEM = (what: string): string => `-----BEGIN ${what}-----\nTUlJQg==\n-----END ${what}-----\n`;
const CERTIFICATES = {
  clusterCa: { certPem: PEM('CERTIFICATE'), keyPem: PEM('RSA PRIVATE KEY') },
  etcdCa: { certPem: PEM('CERTIFICATE'), keyPem: PEM('RSA PRIVATE KEY') },
  frontProxyCa: { certPem: PEM('CERTIFICATE'), keyPem: PEM('RSA PRIVATE KEY') },
  serviceAccount: { publicKeyPem: PEM('PUBLIC KEY'), privateKeyPem: PEM('RSA PRIVATE KEY') },
};
const META: InstanceMetadata = {
  instanceId: 'i-0123456789abcdef0',
  localHostname: 'ip-10-0-1-23.ec2.internal',
  localIpv4: '10.0.1.23',
  region: 'us-east-1',
  availabilityZone: 'us-east-1a',
};
/**
 * The test bed's kubeadm deploys only control planes at most one minor older than itself, so a
 * ClusterConfiguration is validated at the test bed's version (the examples' v1.31 renders the same
 * kubeadm API, v1beta4). Join documents carry no version.
 */
const TESTBED_KUBERNETES = testbedVersions().KUBERNETES_VERSION ?? 'v1.34.4';

interface Case {
  role: BootstrapRole;
  what: string;
  spec: KubeadmConfigSpec;
}

/** The control plane's three roles, then one worker join per KubeadmConfigTemplate or KubeadmConfig. */
function casesOf(model: ClusterModel): Case[] {
  const kcp = model.controlPlane as KubeadmControlPlane;
  const cases: Case[] = [
    { role: 'init', what: kcp.metadata.name, spec: kcp.spec.kubeadmConfigSpec },
    { role: 'control-plane-join', what: kcp.metadata.name, spec: kcp.spec.kubeadmConfigSpec },
  ];
  for (const t of Object.values(model.bootstrapTemplates)) {
    if (t.kind === 'KubeadmConfigTemplate') cases.push({ role: 'worker-join', what: `KubeadmConfigTemplate/${t.metadata.name}`, spec: t.spec.template.spec });
  }
  for (const c of Object.values(model.bootstrapConfigs)) {
    if (c.kind === 'KubeadmConfig') cases.push({ role: 'worker-join', what: `KubeadmConfig/${c.metadata.name}`, spec: c.spec });
  }
  return cases;
}

function inputFor(model: ClusterModel, c: Case, kubernetesVersion = model.kubernetesVersion): UserDataInput {
  const infra = model.infrastructure.spec as { controlPlaneEndpoint?: { host: string; port: number } };
  return {
    role: c.role,
    spec: c.spec,
    clusterName: model.name,
    kubernetesVersion,
    // the load balancer's name where the infrastructure step would provide it
    controlPlaneEndpoint: model.cluster.spec.controlPlaneEndpoint ?? infra.controlPlaneEndpoint ?? { host: `${model.name}-apiserver-0123456789.elb.us-east-1.amazonaws.com`, port: 6443 },
    clusterNetwork: model.cluster.spec.clusterNetwork,
    bootstrapToken: TOKEN,
    bootstrapTokenTtl: '15m0s',
    caCertHashes: [CA_HASH],
    ...(c.role === 'worker-join' ? {} : { certificates: CERTIFICATES }),
    ...(c.role === 'control-plane-join' ? { certificateKey: 'c'.repeat(64) } : {}),
  };
}

/** The cloud-config as cloud-init sees it at boot (jinja rendered) and the kubeadm file it writes. */
function boot(userData: string): { cloudConfig: string; kubeadm: string } {
  const parts = decodeUserData(Buffer.from(userData), META);
  expect(parts.map((p) => p.kind)).to.deep.equal(['cloud-config']);
  const part = parts[0]!;
  if (part.kind !== 'cloud-config') throw new Error('unreachable');
  const files = (part.config.write_files ?? []) as Array<{ path: string; content: string }>;
  const kubeadm = files.find((f) => f.path.startsWith('/run/kubeadm/'));
  if (!kubeadm) throw new Error('no kubeadm configuration in write_files');
  return { cloudConfig: part.text, kubeadm: kubeadm.content };
}

/** The documents with the ClusterConfiguration's version set to the test bed's kubeadm. */
function atTestbedVersion(kubeadmYaml: string): string {
  return parseAllDocuments(kubeadmYaml)
    .map((d) => d.toJS() as Record<string, unknown>)
    .map((d) => stringify(d.kind === 'ClusterConfiguration' ? { ...d, kubernetesVersion: TESTBED_KUBERNETES } : d))
    .join('---\n');
}

async function expectValid(userData: string): Promise<void> {
  expect(userData.startsWith('## template: jinja\n#cloud-config\n')).to.equal(true);
  const { cloudConfig, kubeadm } = boot(userData);
  expect(kubeadm).to.not.include('{{');
  const schema = await cloudInitSchema(cloudConfig);
  expect(schema.ok, `cloud-init schema:\n${schema.output}\n${cloudConfig}`).to.equal(true);
  const validated = await kubeadmValidate(atTestbedVersion(kubeadm));
  expect(validated.ok, `kubeadm config validate:\n${validated.output}\n${kubeadm}`).to.equal(true);
}

describe('bootstrap render: the examples with the real kubeadm and cloud-init', function () {
  this.timeout(120_000);

  // the examples with kubeadm data; a managed control plane (EKS) has none
  const folders = readdirSync(EXAMPLES, { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .map((d) => d.name)
    .filter((name) => readdirSync(path.join(EXAMPLES, name)).some((f) => /kind:\s*KubeadmControlPlane\b/.test(readFileSync(path.join(EXAMPLES, name, f), 'utf8'))))
    .sort();
  it('renders for every example with a KubeadmControlPlane (all but the EKS one)', () => {
    expect(folders).to.deep.equal(['aws-machinepool', 'aws-self-managed', 'aws-small', 'byoh']);
  });
  for (const folder of folders) {
    it(`${folder}: every user data passes cloud-init schema and its kubeadm configuration kubeadm config validate`, async () => {
      const model = await loadClusterSpec(path.join(EXAMPLES, folder));
      expect(model.controlPlane.kind).to.equal('KubeadmControlPlane');
      const cases = casesOf(model);
      expect(cases.map((c) => c.role)).to.include.members(['init', 'control-plane-join', 'worker-join']);
      for (const c of cases) {
        const userData = await renderUserData(inputFor(model, c));
        try {
          await expectValid(userData);
        } catch (err) {
          (err as Error).message = `${c.role} of ${c.what}: ${(err as Error).message}`;
          throw err;
        }
      }
    });
  }

  it('the kubeadm v1beta3 rendering (Kubernetes before 1.31) also validates, for all three roles', async () => {
    const model = await loadClusterSpec(path.join(EXAMPLES, 'aws-self-managed'));
    for (const c of casesOf(model)) {
      const userData = await renderUserData(inputFor(model, c, 'v1.30.8'));
      expect(boot(userData).kubeadm).to.include('apiVersion: kubeadm.k8s.io/v1beta3');
      await expectValid(userData);
    }
  });
});
