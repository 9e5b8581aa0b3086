/**
 * validate-spec: loads a cluster folder, validates it against the real CRD
 * schemas and reports every problem with file:line:column. The first step of
 * every DAG, so a bad commit stops before anything is created.
 */
import path from 'node:path';
import type { Executor } from '../src/core/executor.js';
import { formatProblem, specHash, validateClusterSpec, SpecInvalidError } from '../src/spec/index.js';

export const validateSpec: Executor = {
  id: 'validate-spec',
  description: 'Validate a cluster spec folder and print its normalized hash',
  supportsDelete: false,
  supportsDryRun: true,
  inputSchema: {
    type: 'object',
    additionalProperties: false,
    properties: {
      'vars-file': { type: 'string', description: 'clusterctl variables file (KEY=value lines), relative to the repository' },
      'use-env': { type: 'string', enum: ['true', 'false'], default: 'false', description: 'substitute ${VAR} from the environment' },
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
    const varsFile = params['vars-file'] ? path.resolve(repoDir, params['vars-file']) : undefined;
    const { model, problems } = await validateClusterSpec(dir, {
      ...(varsFile ? { varsFile } : {}),
      useEnv: params['use-env'] === 'true',
    });
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
