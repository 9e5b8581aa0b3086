/**
 * The executor contract: every step of every DAG has this one shape, so the
 * CLI, the container entry point and the local runner treat them all alike.
 */
import type { Logger } from './logger.js';
import type { AwsClients } from './aws.js';
import type { SecretStore } from './secrets.js';
import type { OutputsWriter } from './outputs.js';
import type { JsonSchema } from './schema.js';

/** What every step receives from its caller (flags, env or Argo parameters). */
export interface StepOptions {
  /** Checkout of the GitOps repository (absolute path). */
  repoDir: string;
  /** Cluster folder relative to repoDir (e.g. clusters/dev), or absolute. */
  clusterPath: string;
  /** Git revision the run is pinned to ("unknown" when not in a repository). */
  revision: string;
  dryRun: boolean;
  delete: boolean;
  /** Step-specific parameters (validated against the step's input schema). */
  params: Record<string, string>;
  /**
   * A clusterctl variables file (KEY=value lines) over the folder's own cluster.env, for loading
   * the spec: `capflow step --vars` only (a Workflow's steps read the folder's cluster.env).
   */
  varsFile?: string;
}

export interface StepContext {
  readonly stepId: string;
  readonly options: StepOptions;
  readonly log: Logger;
  readonly aws: AwsClients;
  readonly secrets: SecretStore;
  readonly outputs: OutputsWriter;
  /** Aborted when the step's deadline passes or the process is asked to stop. */
  readonly signal: AbortSignal;
  /**
   * A safe point: throws PausedError (exit 4) when the cluster was paused since the step started
   * (src/core/pause.ts). Called between resource families with what comes next (`nat-gateways`).
   * A no-op in --dry-run (a plan changes nothing).
   */
  readonly checkpoint: (phase: string) => Promise<void>;
}

export interface StepResult {
  /** Output parameters by name (strings, as Argo passes them). */
  outputs: Record<string, string>;
  /** Extra fields for the JSON summary line (counts, ids; never secrets). */
  summary?: Record<string, unknown>;
}

export interface Executor {
  /** Kebab-case id, the same as the WorkflowTemplate and image entry point. */
  readonly id: string;
  readonly description: string;
  /** JSON schema of `options.params`. */
  readonly inputSchema: JsonSchema;
  /** JSON schema of `StepResult.outputs`. */
  readonly outputSchema: JsonSchema;
  /** Whether the step supports --delete / --dry-run. */
  readonly supportsDelete: boolean;
  readonly supportsDryRun: boolean;
  run(ctx: StepContext): Promise<StepResult>;
}
