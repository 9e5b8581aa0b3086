import { expect } from 'chai';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { argoLintOffline, REPO_ROOT } from '../support/tools.js';
import { loadTemplates } from '../../src/runner/index.js';

const dir = path.join(REPO_ROOT, 'workflow-templates');
const files = readdirSync(dir).filter((f) => f.endsWith('.yaml')).map((f) => path.join(dir, f));

describe('workflow-templates/: what Argo and the local runner make of our DAGs', function () {
  this.timeout(120_000);

  it('every WorkflowTemplate passes the real `argo lint --offline`, together (templateRefs resolve)', async () => {
    const res = await argoLintOffline(files);
    expect(res.ok, res.output).to.equal(true);
  });

  it('every WorkflowTemplate loads in the local runner (Argo schema, supported fields, refs, inputs)', () => {
    const index = loadTemplates(dir);
    expect([...index.keys()].sort()).to.deep.equal(['cluster-apply', 'cluster-delete', 'cluster-plan', 'install-addons', 'join-workers', 'kubeadm-init', 'launch-nodes', 'provision-vpc', 'validate-spec']);
  });

  it('every cluster DAG holds a per-cluster mutex and a deadline, and every step retries only exit 75', () => {
    const index = loadTemplates(dir);
    for (const name of ['cluster-apply', 'cluster-plan', 'cluster-delete']) {
      const spec = index.get(name)!.resource.spec;
      expect(spec.synchronization?.mutexes?.[0]?.name, name).to.equal('capflow-cluster-{{workflow.parameters.cluster-name}}');
      expect(spec.activeDeadlineSeconds, name).to.be.a('number');
    }
    const step = index.get('validate-spec')!.resource.spec.templates![0]!;
    expect(step.activeDeadlineSeconds).to.not.equal(undefined);
    expect((step.retryStrategy as { expression?: string }).expression).to.equal('asInt(lastRetry.exitCode) == 75');
    expect(step.container?.command).to.deep.equal(['capflow']);
  });
});
