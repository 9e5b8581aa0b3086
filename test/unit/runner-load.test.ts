/** Loading and validating WorkflowTemplates: schema, unsupported fields, parameters. */
import { expect } from 'chai';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { isCapflowError, type CapflowError } from '../../src/core/errors.js';
import { findUnsupportedFields, listIgnoredFields, loadTemplates, runWorkflow, workflowTemplateValidator } from '../../src/runner/index.js';
import { checkWorkflowTemplate } from '../../src/runner/validate.js';
import type { LoadedTemplate } from '../../src/runner/index.js';
import { FIXTURES, cleanTempDirs, fixtureTemplates, tempDir } from '../fixtures/runner/harness.js';
import { capflowErrorOf } from '../support/errors.js';


async function catchAsync(p: Promise<unknown>): Promise<CapflowError> {
  try {
    await p;
  } catch (e) {
    if (isCapflowError(e)) return e;
    throw e;
  }
  throw new Error('expected an error');
}

describe('runner: loading templates', function () {
  this.timeout(20_000);
  after(cleanTempDirs);

  it('the fixture templates, should load and index by metadata.name', () => {
    const index = fixtureTemplates();
    expect([...index.keys()]).to.include.members(['runner-lib', 'diamond', 'parallel', 'parallel-one', 'retry', 'when', 'outputs']);
    expect(index.get('diamond')!.file).to.match(/diamond\.yaml$/);
  });

  it('the schema validator, should be compiled once per process', () => {
    // The same instance each time (not a timing, which a loaded machine would break).
    const a = workflowTemplateValidator();
    const b = workflowTemplateValidator();
    expect(a).to.equal(b);
  });

  it('unsupported fields, should be rejected before anything runs, naming template, path and reason', () => {
    // The local runner never ignores an Argo field it does not implement.
    const err = capflowErrorOf(() => loadTemplates(path.join(FIXTURES, 'unsupported')));
    expect(err.code).to.equal('RUNNER_UNSUPPORTED_FIELD');
    expect(err.exitCode).to.equal(2);
    expect(err.message).to.include('"uses-unsupported"');
    expect(err.message).to.include('spec.podGC is not supported by the local runner');
    expect(err.message).to.include('spec.templates[main].dag.tasks[a].withItems is not supported by the local runner');
    // spec.volumes alone is ignored (pod volumes); a container mounting one is not
    expect(err.details?.fields).to.deep.equal(['spec.podGC', 'spec.templates[main].dag.tasks[a].withItems', 'spec.templates[touch].container.volumeMounts']);
  });

  it('steps, suspend and hooks, should be unsupported; image, resources and labels ignored', () => {
    const doc = {
      metadata: { name: 'x', labels: { a: 'b' } },
      spec: {
        hooks: { exit: { template: 'x' } },
        templates: [
          { name: 's', steps: [[{ name: 'a', template: 'c' }]] },
          { name: 'p', suspend: {} },
          { name: 'c', container: { image: 'alpine', resources: { limits: { cpu: '1' } }, command: ['true'] } },
        ],
      },
    };
    expect(findUnsupportedFields(doc).map((p) => p.path)).to.deep.equal(['spec.hooks', 'spec.templates[s].steps', 'spec.templates[p].suspend']);
    const ignored = listIgnoredFields().map((f) => f.path);
    expect(ignored).to.include.members(['spec.templates[].container.image', 'spec.templates[].container.resources', 'metadata.labels', 'spec.serviceAccountName']);
    for (const f of listIgnoredFields()) expect(f.reason).to.be.a('string').and.not.equal('');
  });

  it('a template of the wrong shape, should fail the Argo schema with its path', () => {
    const err = capflowErrorOf(() => loadTemplates(path.join(FIXTURES, 'invalid-shape')));
    expect(err.code).to.equal('RUNNER_INVALID_TEMPLATE');
    expect(err.message).to.match(/container\.command must be array/);
  });

  it('a task that does not supply a required input parameter, should be rejected at load', () => {
    // Argo: "inputs.parameters.region was not supplied" when neither an argument, value nor default exists.
    const err = capflowErrorOf(() => loadTemplates(path.join(FIXTURES, 'missing-input')));
    expect(err.code).to.equal('RUNNER_INVALID_TEMPLATE');
    expect(err.message).to.include('inputs.parameters.region was not supplied');
  });

  it('a task reading outputs of a task it does not depend on, should be rejected', () => {
    // Argo validates that `{{tasks.X...}}` only names ancestors of the task.
    const lt = {
      name: 'x',
      file: 'x.yaml',
      resource: {
        apiVersion: 'argoproj.io/v1alpha1',
        kind: 'WorkflowTemplate',
        metadata: { name: 'x' },
        spec: {
          entrypoint: 'main',
          templates: [
            { name: 'main', dag: { tasks: [{ name: 'a', template: 'c' }, { name: 'b', template: 'c', arguments: { parameters: [{ name: 'v', value: '{{tasks.a.outputs.result}}' }] } }] } },
            { name: 'c', inputs: { parameters: [{ name: 'v', default: '' }] }, container: { command: ['true'] } },
          ],
        },
      },
    } satisfies LoadedTemplate;
    expect(checkWorkflowTemplate(lt, new Map([['x', lt]]))).to.deep.equal([
      'spec.templates[main].dag.tasks[b].arguments.parameters[0].value: {{tasks.a.outputs.result}} refers to task "a", which "b" does not depend on',
    ]);
  });

  it('a missing workflow parameter, should be an InputError before anything runs', async () => {
    const dir = tempDir();
    const err = await catchAsync(runWorkflow({ templates: fixtureTemplates(), templateName: 'retry', parameters: { code: '1' }, runDir: path.join(dir, 'runs') }));
    expect(err.code).to.equal('RUNNER_MISSING_PARAMETER');
    expect(err.message).to.include('"counter"');
    expect(existsSync(path.join(dir, 'runs'))).to.equal(false);
  });

  it('an undeclared workflow parameter, should be an InputError', async () => {
    const err = await catchAsync(runWorkflow({ templates: fixtureTemplates(), templateName: 'when', parameters: { log: '/dev/null', flg: 'yes' }, runDir: tempDir() }));
    expect(err.code).to.equal('RUNNER_UNKNOWN_PARAMETER');
    expect(err.message).to.include('"flg"');
  });

  it('an unknown WorkflowTemplate, should be an InputError listing the known ones', async () => {
    const err = await catchAsync(runWorkflow({ templates: fixtureTemplates(), templateName: 'nope', runDir: tempDir() }));
    expect(err.code).to.equal('RUNNER_TEMPLATE_NOT_FOUND');
    expect(err.hint).to.include('diamond');
  });
});
