/**
 * validate-spec: loads a cluster folder, validates it against the real CRD
 * schemas and reports every problem with file:line:column. The first step of
 * every DAG, so a bad commit stops before anything is created.
 */
import path from 'node:path';
import type { Executor } from '../src/core/executor.js';
import { InputError } from '../src/core/errors.js';
import { formatProblem, isCredentialName, specHash, validateClusterSpec, varsFileWithin, SpecInvalidError } from '../src/spec/index.js';

export const validateSpec: Executor = {
  id: 'validate-spec',
  description: 'Validate a cluster spec folder and print its normalized hash',
  supportsDelete: false,
  supportsDryRun: true,
  inputSchema: {
    type: 'object',
    additionalProperties: false,
    properties: {
      'vars-file': { type: 'string', description: 'clusterctl variables file (KEY=value lines) over the cluster.env of the folder; inside the repository, relative to it' },
      'use-env': { type: 'string', enum: ['true', 'false'], default: 'false', description: 'substitute ${VAR} from the environment (never credential variables)' },
    },
  },
  outputSchema: {
    type: 'object',
    additionalProperties: false,
    required: ['cluster-name', 'provider', 'spec-hash', 'kubernetes-version'],
    properties: {
      'cluster-name': { type: 'string' },
      provider: { type: 'string', enum: ['aws', 'eks', 'byoh'] },
      'spec-hash': { type: 'string', pattern: '^[0-9a-f]{64}$' },
      'kubernetes-version': { type: 'string' },
    },
  },
  async run(ctx) {
    const { repoDir, clusterPath, params } = ctx.options;
    const dir = path.resolve(repoDir, clusterPath);
    ctx.log.info('Validating cluster spec', { clusterPath });
    // vars-file stays inside the checkout: a path (or a symlink on its way) leading out is refused
    // before anything is read, and a malformed line is reported by file:line, never quoted.
    // (`capflow step --vars` gives a file of the operator's own choosing instead.)
    const varsFile = params['vars-file'] ? await varsFileWithin(repoDir, params['vars-file']) : ctx.options.varsFile;
    const useEnv = params['use-env'] === 'true';
    const { model, problems } = await validateClusterSpec(dir, {
      ...(varsFile ? { varsFile } : {}),
      useEnv,
    });
    // use-env: the loader never substitutes a variable named like a credential nor a value shaped
    // like one (refusing is the only safe choice: once pasted into the spec a secret reaches the
    // model, problem messages on stderr and stdout, and output parameters, where redaction cannot
    // recognise it). As a last net, nothing this step prints or outputs may carry the value of a
    // credential variable of its environment under another name (CLUSTER_NAME=$AWS_SECRET_ACCESS_KEY).
    if (useEnv) refuseEnvCredentials([...problems.map(formatProblem), ...(model ? [model.name, model.kubernetesVersion ?? ''] : [])]);
    const errors = problems.filter((p) => p.severity === 'error');
    for (const p of problems) {
      if (p.severity === 'error') ctx.log.error(formatProblem(p));
      else ctx.log.warn(formatProblem(p));
    }
    if (errors.length > 0 || !model) throw new SpecInvalidError(problems);
    const hash = specHash(model);
    ctx.log.info('Cluster spec is valid', { cluster: model.name, provider: model.provider, documents: model.documents.length, specHash: hash.slice(0, 12) });
    return {
      outputs: {
        'cluster-name': model.name,
        provider: model.provider,
        'spec-hash': hash,
        'kubernetes-version': model.kubernetesVersion ?? '',
      },
      summary: { documents: model.documents.length, warnings: problems.length - errors.length },
    };
  },
};

/** Throws when a text carries the value of a credential variable of the environment (never naming the value). */
function refuseEnvCredentials(texts: readonly string[]): void {
  for (const [name, value] of Object.entries(process.env)) {
    if (value === undefined || value.length < 8 || !isCredentialName(name)) continue;
    if (texts.some((t) => t.includes(value))) {
      throw new InputError('VARIABLE_SECRET', `the spec carries the value of the credential variable ${name} (through another variable); refusing to print or output it`, {
        hint: 'use-env substitutes non-secret values only; secrets travel as Kubernetes Secrets named in the spec',
      });
    }
  }
}
