/**
 * A running step stops at its next safe point when its cluster is paused: provision-vpc against moto
 * (through the fault proxy), in process (runStepVia), on a temp copy of examples/clusters/aws-self-managed.
 * The pause marker is written the way the reconciler writes it (src/core/pause.ts), from the fault
 * proxy's per-call hook at a known call (CreateVpc), so the step sees it at the next safe point.
 */
import { expect } from 'chai';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ExitCode } from '../../src/core/errors.js';
import { clearPauseMarker, pauseMarkerName, writePauseMarker } from '../../src/core/pause.js';
import { LocalSecretStore } from '../../src/core/secrets.js';
import { provisionVpc } from '../../executors/provision-vpc.js';
import { clientConfig } from '../support/moto.js';
import { useMotoBehindProxy } from '../support/fault-proxy.js';
import { mutatingActions, runStepVia, type StepRun } from '../support/step-run.js';
import { snapshotWorld } from '../support/aws-world.js';

const REVISION = '0123456789abcdef0123456789abcdef01234567';
const PAUSED_BY = 'fedcba9876543210fedcba9876543210fedcba98';
const EXAMPLE = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..', 'examples', 'clusters', 'aws-self-managed');

describe('pause: a running step stops at its next safe point (provision-vpc against moto, through the fault proxy)', function () {
  this.timeout(180_000);
  const bed = useMotoBehindProxy();
  let repo: string;
  let secretsDir: string;
  let secrets: LocalSecretStore;

  beforeEach(() => {
    repo = mkdtempSync(path.join(os.tmpdir(), 'capflow-pause-repo-'));
    cpSync(EXAMPLE, path.join(repo, 'clusters', 'dev'), { recursive: true });
    secretsDir = mkdtempSync(path.join(os.tmpdir(), 'capflow-pause-secrets-'));
    secrets = new LocalSecretStore(secretsDir);
  });
  afterEach(() => {
    bed.proxy.setAuthorizer(undefined);
    rmSync(repo, { recursive: true, force: true });
    rmSync(secretsDir, { recursive: true, force: true });
  });

  const run = (): Promise<StepRun> => runStepVia({ proxy: bed.proxy, repo, clusterPath: 'clusters/dev', region: clientConfig(bed.proxy.endpoint).region, revision: REVISION, secrets }, provisionVpc);

  const counts = async () => {
    const world = await snapshotWorld(bed.moto.endpoint);
    const n = (kind: string) => world.resources.filter((x) => x.kind === kind).length;
    return { vpc: n('vpc'), subnet: n('subnet'), igw: n('internet-gateway'), nat: n('nat-gateway'), rt: n('route-table') };
  };

  it('paused at CreateVpc: exits 4 "paused at subnets" (not a crash, not a spec error) with no subnet made; while paused a rerun changes nothing; unpaused, the rerun converges with no duplicate and the next makes 0 mutating calls', async () => {
    let hooked = 0;
    bed.proxy.setAuthorizer(async (call) => {
      if (call.action === 'CreateVpc' && hooked++ === 0) {
        await writePauseMarker(secrets, 'dev', { revision: PAUSED_BY, where: 'clusters/dev/cluster.yaml:8 spec.paused', at: new Date().toISOString() });
      }
      return undefined;
    });
    const stopped = await run();
    expect(stopped.exitCode, stopped.log.slice(-2000)).to.equal(ExitCode.paused);
    expect(stopped.summary.status).to.equal('paused');
    expect(stopped.summary.error).to.include({ code: 'STEP_PAUSED', kind: 'paused' });
    expect(stopped.summary.error?.message).to.equal(`paused at subnets: the cluster was paused by commit ${PAUSED_BY.slice(0, 12)} (clusters/dev/cluster.yaml:8 spec.paused)`);
    expect(mutatingActions(stopped)).to.not.include('CreateSubnet');
    expect(mutatingActions(stopped)).to.include('CreateVpc');
    expect(await counts()).to.deep.equal({ vpc: 1, subnet: 0, igw: 0, nat: 0, rt: 0 });

    // still paused: stopped at its first safe point, before any AWS call
    const again = await run();
    expect(again.exitCode).to.equal(ExitCode.paused);
    expect(again.summary.error?.message).to.match(/^paused at start:/);
    expect(again.calls).to.deep.equal([]);

    // unpaused (the reconciler removes the marker): the rerun converges from where the first stopped
    await clearPauseMarker(secrets, 'dev');
    expect(await secrets.get(pauseMarkerName('dev'))).to.equal(undefined);
    const resumed = await run();
    expect(resumed.exitCode, `${JSON.stringify(resumed.summary.error)}\n${resumed.log.slice(-2000)}`).to.equal(0);
    expect(mutatingActions(resumed)).to.not.include('CreateVpc');
    const world = await counts();
    expect(world.vpc, 'no second VPC').to.equal(1);
    expect(world.subnet).to.equal(6);
    expect(world.nat).to.equal(3);
    const idle = await run();
    expect(idle.exitCode).to.equal(0);
    expect(mutatingActions(idle)).to.deep.equal([]);
  });
});
