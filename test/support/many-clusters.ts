/**
 * Many clusters in one AWS account, for test/integration/many-clusters.test.ts and
 * bench/many-clusters.bench.ts: N copies of the aws-self-managed example (cluster `acct-<i>`) in one
 * Git repository, each created by its own `capflow run` process (the local runner) of
 * test/fixtures/many-clusters/network-and-machines.yaml (provision-vpc then launch-nodes, the real
 * step templates), all at once, against moto behind the fault proxy. The processes share one lock
 * directory, so the account's semaphore (capflow-aws-accounts) spans them, as Argo's controller
 * makes it span workflows.
 */
import { cpSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CreateKeyPairCommand, DescribeImagesCommand, EC2Client } from '@aws-sdk/client-ec2';
import { LocalSecretStore } from '../../src/core/secrets.js';
import { bootstrapSecretName } from '../../executors/aws-step.js';
import { createGitRemote, git, type GitRemote } from './git-remote.js';
import { spawnCapflow, type CliResult } from './cli.js';
import { awsTestEnv, clientConfig } from './moto.js';
import { REPO_ROOT } from './tools.js';

const EXAMPLE = path.join(REPO_ROOT, 'examples', 'clusters', 'aws-self-managed');
const FIXTURE = path.join(REPO_ROOT, 'test', 'fixtures', 'many-clusters', 'network-and-machines.yaml');

export const clusterName = (i: number): string => `acct-${i}`;

/** What every cluster needs in the account and moto lacks: an AMI id moto knows, the key pair, the instance profiles. */
export async function prepareAccount(motoEndpoint: string): Promise<string> {
  const ec2 = new EC2Client(clientConfig(motoEndpoint));
  try {
    const images = await ec2.send(new DescribeImagesCommand({ Owners: ['amazon'], Filters: [{ Name: 'architecture', Values: ['x86_64'] }] }));
    await ec2.send(new CreateKeyPairCommand({ KeyName: 'capflow-dev' }));
    for (const profile of ['control-plane.cluster-api-provider-aws.sigs.k8s.io', 'nodes.cluster-api-provider-aws.sigs.k8s.io']) {
      // IAM's CreateInstanceProfile straight to moto (no IAM client among our dependencies; moto does not check signatures).
      const res = await fetch(motoEndpoint, {
        method: 'POST',
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          authorization: 'AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0',
        },
        body: new URLSearchParams({ Action: 'CreateInstanceProfile', Version: '2010-05-08', InstanceProfileName: profile }).toString(),
      });
      if (res.status !== 200) throw new Error(`CreateInstanceProfile ${profile}: ${res.status} ${await res.text()}`);
    }
    return images.Images![0]!.ImageId!;
  } finally {
    ec2.destroy();
  }
}

export interface Fleet {
  remote: GitRemote;
  revision: string;
  names: string[];
  /** WorkflowTemplates: workflow-templates/ plus the network-and-machines fixture. */
  templatesDir: string;
  secretsDir: string;
  lockDir: string;
  runDir: string;
  dir: string;
}

/**
 * The repository of `n` clusters (each with its own VPC CIDR), the templates directory and the
 * placeholder bootstrap secrets (user data launch-nodes reads; no kubeadm-init runs here).
 * `accountWide: false` rewrites the AWS steps to take the whole account bucket each
 * (CAPFLOW_AWS_ACCOUNT_SLOTS=1: a per-process limit only), to show what the shared limit prevents.
 */
export async function makeFleet(n: number, ami: string, opts: { accountWide?: boolean } = {}): Promise<Fleet> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'capflow-fleet-'));
  const remote = await createGitRemote();
  const files: Record<string, string> = {};
  const names: string[] = [];
  for (let i = 1; i <= n; i++) {
    const name = clusterName(i);
    names.push(name);
    for (const f of readdirSync(EXAMPLE)) {
      let text = readFileSync(path.join(EXAMPLE, f), 'utf8').replaceAll('aws-dev', name);
      if (f === 'control-plane.yaml' || f === 'workers.yaml') text = text.replace(/(\n {6}instanceType: .*\n)/g, `$1      ami:\n        id: ${ami}\n`);
      files[`clusters/${name}/${f}`] = text;
    }
  }
  await remote.commitFiles(files, `${n} clusters`);
  const revision = await git(remote.workdir, 'rev-parse', 'HEAD');
  const templatesDir = path.join(dir, 'templates');
  cpSync(path.join(REPO_ROOT, 'workflow-templates'), templatesDir, { recursive: true });
  cpSync(FIXTURE, path.join(templatesDir, path.basename(FIXTURE)));
  if (opts.accountWide === false) {
    for (const f of readdirSync(templatesDir)) {
      const p = path.join(templatesDir, f);
      const text = readFileSync(p, 'utf8');
      const per = text.replace(
        /- name: CAPFLOW_AWS_ACCOUNT_SLOTS\n(\s+)valueFrom:\n\s+configMapKeyRef:\n\s+name: capflow-aws-accounts\n\s+key: "\{\{inputs\.parameters\.aws-account\}\}"/g,
        '- name: CAPFLOW_AWS_ACCOUNT_SLOTS\n$1value: "1"',
      );
      if (per !== text) writeFileSync(p, per);
    }
  }
  const secretsDir = path.join(dir, 'secrets');
  const secrets = new LocalSecretStore(secretsDir);
  for (const name of names) {
    await secrets.put(bootstrapSecretName(name), {
      'control-plane': '#cloud-config\n# placeholder user data: no bootstrap step here\n',
      [`${name}-md-0`]: '#cloud-config\n# placeholder\n',
      [`${name}-md-spot`]: '#cloud-config\n# placeholder\n',
    });
  }
  return { remote, revision, names, templatesDir, secretsDir, lockDir: path.join(dir, 'locks'), runDir: path.join(dir, 'runs'), dir };
}

export interface FleetRun {
  results: (CliResult & { name: string })[];
  wallMs: number;
}

/** One `capflow run network-and-machines` process per cluster, all started at once; the semaphore's limit from a ConfigMap file. */
export async function runFleet(fleet: Fleet, endpoint: string, opts: { limit: number; names?: string[]; env?: Record<string, string> }): Promise<FleetRun> {
  const cm = path.join(fleet.dir, `accounts-${opts.limit}.yaml`);
  writeFileSync(cm, `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: capflow-aws-accounts\ndata:\n  default: "${opts.limit}"\n`);
  const started = Date.now();
  const results = await Promise.all(
    (opts.names ?? fleet.names).map(async (name) => {
      const { done } = spawnCapflow(
        [
          'run',
          'network-and-machines',
          '--plain',
          '--templates',
          fleet.templatesDir,
          '--config-map',
          cm,
          '--lock-dir',
          fleet.lockDir,
          '--run-dir',
          fleet.runDir,
          '-p',
          `repo=${fleet.remote.workdir}`,
          '-p',
          `revision=${fleet.revision}`,
          '-p',
          `cluster-path=clusters/${name}`,
          '-p',
          `cluster-name=${name}`,
        ],
        // The proxy enforces EC2's buckets, so the client buckets are on as against AWS.
        { env: { ...awsTestEnv(endpoint), CAPFLOW_AWS_RATE_LIMIT: 'on', CAPFLOW_SECRET_STORE: 'local', CAPFLOW_SECRETS_DIR: fleet.secretsDir, ...(opts.env ?? {}) } },
      );
      return { name, ...(await done) };
    }),
  );
  return { results, wallMs: Date.now() - started };
}

export interface StepRecord {
  step: string;
  cluster: string;
  exitCode: number;
  durationMs: number;
  /** When the runner started the attempt (the task log's header line). */
  startedAt: number;
  awsCalls: { mutating: number; read: number; retried: number; rateLimitWaitMs: number };
}

/** Step summaries (the JSON line each step prints last) from the runs' task logs, with when each attempt started. */
export function stepSummaries(fleet: Fleet): StepRecord[] {
  const out: StepRecord[] = [];
  for (const wf of readdirSync(fleet.runDir)) {
    for (const f of readdirSync(path.join(fleet.runDir, wf))) {
      let startedAt = 0;
      for (const line of readFileSync(path.join(fleet.runDir, wf, f), 'utf8').split('\n')) {
        const header = /^--- (\S+Z) /.exec(line);
        if (header) startedAt = Date.parse(header[1]!);
        if (!line.startsWith('{"') || !line.includes('"awsCalls"')) continue;
        out.push({ ...(JSON.parse(line) as Omit<StepRecord, 'startedAt'>), startedAt });
      }
    }
  }
  return out;
}

/** The most steps running at one moment (each from its start to start + its own duration). */
export function maxConcurrentSteps(records: StepRecord[]): number {
  const edges = records.flatMap((r) => [
    { t: r.startedAt, d: 1 },
    { t: r.startedAt + r.durationMs, d: -1 },
  ]);
  edges.sort((a, b) => a.t - b.t || a.d - b.d);
  let now = 0;
  let max = 0;
  for (const e of edges) max = Math.max(max, (now += e.d));
  return max;
}

export async function removeFleet(fleet: Fleet): Promise<void> {
  await fleet.remote.stop();
  const { rmSync } = await import('node:fs');
  rmSync(fleet.dir, { recursive: true, force: true });
}
