/**
 * The reconciler's parts and the contracts between them. Git says what each
 * cluster should be (GitSource), the management cluster remembers what was
 * applied (RecordStore) and runs the work (WorkflowClient); only the leader
 * (LeaderElector) decides and submits.
 */

// ------------------------------------------------------------------------------------------------
// Git

/** One `clusters/<name>/` folder at one commit. */
export interface ClusterFolder {
  /** The folder name, which is the cluster's identity. */
  name: string;
  /** Path relative to the repository root, e.g. `clusters/dev`. */
  path: string;
  /** Git tree id of the folder: equal trees mean equal files, so the spec need not be loaded again. */
  tree: string;
  /** The folder holds the deletion marker file (DELETION_MARKER): delete the cluster. */
  deletionMarker: boolean;
}

/** The marker file that asks for a cluster's deletion while its folder stays in Git. */
export const DELETION_MARKER = 'DELETE';

export interface GitSnapshot {
  /** Full commit id of the branch head. */
  revision: string;
  branch: string;
  /** Cluster folders by name. */
  clusters: Map<string, ClusterFolder>;
  /** Folder names under the clusters directory that are not valid cluster names (DNS-1123 labels). */
  badFolders: string[];
  /** A directory where the repository is checked out at `revision` once checkout() resolved (read-only for callers). */
  workdir: string;
  /**
   * Checks the work tree out at `revision` (once; a no-op when it is). Only spec loads need files:
   * a pass that loads none skips it (at 10,000 folders a checkout refreshes 40,000 index entries).
   * Absent: workdir is checked out already.
   */
  checkout?: () => Promise<void>;
  /**
   * Makes `paths` (folders or files, relative to the repository root) present as at `revision` and
   * resolves to the root of a directory that holds them (and possibly more of that commit) — without
   * checking the whole work tree out. Absent: use checkout() and workdir.
   */
  materialize?: (paths: string[]) => Promise<string>;
  /**
   * The Git object id (tree or blob) of each path at `revision`, one git call for all; a path absent
   * there is absent from the map. Absent: inputs outside a cluster's folder are not followed.
   */
  objectIds?: (paths: string[]) => Promise<Map<string, string>>;
  /** How long the sync's steps took, ms (for the pass's log line). */
  timings?: { fetchMs: number; listMs: number };
  /** When this process first saw the commit (start of the commit-to-submission latency). */
  firstSeenAt: Date;
}

export interface GitSource {
  /** Fetches the branch from the remote and lists its cluster folders. Throws TransientError when the remote cannot be reached. */
  sync(): Promise<GitSnapshot>;
  /** Removes nothing the next start needs; stops background work. */
  close(): Promise<void>;
}

/** A push as a Git host reported it in a webhook, after its signature or token was verified. */
export interface PushEvent {
  provider: 'github' | 'gitlab' | 'gitea';
  /** e.g. refs/heads/main */
  ref: string;
  /** Commit id after the push ('' when the payload has none). */
  after: string;
  /** The delivery id header when the host sends one (for logs). */
  delivery?: string;
}

// ------------------------------------------------------------------------------------------------
// Workflows

/** The phase Argo reports; '' (not yet picked up by the controller) is reported as Pending. */
export type WorkflowPhase = 'Pending' | 'Running' | 'Succeeded' | 'Failed' | 'Error';

export const FINISHED_PHASES: ReadonlySet<WorkflowPhase> = new Set(['Succeeded', 'Failed', 'Error']);

export type RunKind = 'apply' | 'delete' | 'plan';

export const TEMPLATE_FOR: Record<RunKind, string> = { apply: 'cluster-apply', delete: 'cluster-delete', plan: 'cluster-plan' };

/** What the reconciler needs to know of one Workflow object. */
export interface WorkflowView {
  name: string;
  kind: RunKind;
  cluster: string;
  revision: string;
  specHash: string;
  /** The attempt (or, for plans, sequence) number in the deterministic name. */
  attempt: number;
  phase: WorkflowPhase;
  createdAt?: string;
  startedAt?: string;
  finishedAt?: string;
  /** The first failed or errored step (a leaf node's display name), when phase is Failed or Error. */
  failedStep?: string;
  /** The failed step's message, else the workflow's. */
  message?: string;
  /** For plans: the sum of every node's output parameter `changes`; undefined when no node reported one. */
  changes?: number;
}

export interface SubmitRequest {
  kind: RunKind;
  cluster: string;
  repo: string;
  revision: string;
  clusterPath: string;
  specHash: string;
  attempt: number;
}

/** What pausing or unpausing a cluster does besides writing its record (decide.ts decides, reconciler.ts does). */
export interface PauseEffect {
  /** set: write the pause marker steps read at their safe points (src/core/pause.ts); clear: remove it. */
  marker: 'set' | 'clear';
  /** For set: the commit that paused and where. */
  revision?: string;
  where?: string;
  /** A run in flight: suspend it (pause), resume it (unpause, same spec), or stop it (unpause, the spec changed). */
  suspend?: string;
  resume?: string;
  stop?: string;
}

/** Where the pause markers live (the secret store the steps read); the reconciler only creates and deletes. */
export interface PauseMarkers {
  set(cluster: string, marker: { revision: string; where: string; at: string }): Promise<void>;
  clear(cluster: string): Promise<void>;
}

export interface WorkflowClient {
  /**
   * Creates the Workflow under its deterministic name (workflowName). When a Workflow of that name
   * already exists (a crash after the create), it is returned with created false: never a duplicate.
   */
  submit(req: SubmitRequest): Promise<{ workflow: WorkflowView; created: boolean }>;
  get(name: string): Promise<WorkflowView | undefined>;
  /** Every Workflow capflow made in the namespace. */
  list(): Promise<WorkflowView[]>;
  /**
   * Calls back on every add and change (after an initial list), and with the name of every Workflow
   * deleted (onDelete); the returned function stops watching.
   */
  watch(onChange: (workflow: WorkflowView) => void, onDelete?: (name: string) => void): Promise<() => Promise<void>>;
  /**
   * Sets Argo's `spec.suspend` (true: the controller starts no further step pods; false: it goes on).
   * A Workflow that is gone or finished is left alone. Optional: without it runs are not suspended.
   */
  setSuspended?(name: string, suspend: boolean): Promise<void>;
  /** Argo's `spec.shutdown: Stop`: no new steps, exit handlers run, the Workflow ends Failed. */
  stop?(name: string): Promise<void>;
}

// ------------------------------------------------------------------------------------------------
// Records: what the management cluster remembers of each cluster

export type ClusterPhase =
  /** Known from Git, nothing run yet. */
  | 'Pending'
  /** A run (apply or delete) is submitted or running. */
  | 'Running'
  /** The spec at appliedRevision is applied. */
  | 'Succeeded'
  /** The last run failed; retried after nextRetryAt. */
  | 'Failed'
  /** The spec in Git does not validate: nothing is submitted until it changes. */
  | 'Invalid'
  /** The folder is gone from Git and deletion is not allowed: reported, nothing done. */
  | 'Removed'
  /** Deleted by a cluster-delete run. */
  | 'Deleted'
  /**
   * The Cluster is paused in Git (spec.paused or the cluster.x-k8s.io/paused annotation): nothing is
   * submitted for it, a run in flight is suspended and its step stops at its next safe point.
   */
  | 'Paused';

export type DriftState = 'Unknown' | 'InSync' | 'Drifted';

export interface RunRecord {
  workflow: string;
  kind: RunKind;
  revision: string;
  specHash: string;
  attempt: number;
  /** 'Submitting' is written before the create, so a crash in between is recovered by name. */
  phase: WorkflowPhase | 'Submitting';
  submittedAt: string;
  finishedAt?: string;
  failedStep?: string;
  message?: string;
}

export interface ClusterRecord {
  cluster: string;
  /** e.g. clusters/dev */
  path: string;
  phase: ClusterPhase;
  /** Commit at which the folder last changed as this reconciler saw it, its tree, and the spec hash there. */
  gitRevision?: string;
  gitTree?: string;
  specHash?: string;
  /** capflow version that computed specHash (a new version re-reads every spec once). */
  hashedBy?: string;
  /**
   * What the load read outside the folder (AddonCharts' chart folders, the `classes/` folder of a
   * topology's ClusterClass), with each path's Git object id at gitRevision ('' when it was absent):
   * a commit that changes one of them loads the spec again, as a change of the folder does.
   */
  inputs?: Record<string, string>;
  /** What was last applied successfully. */
  appliedRevision?: string;
  appliedSpecHash?: string;
  appliedAt?: string;
  /** The current or last apply/delete run. */
  run?: RunRecord;
  /** Consecutive failed runs for the current spec; the next try waits until nextRetryAt. */
  failures: number;
  nextRetryAt?: string;
  /** Validation problems, formatted `file:line:column Kind/name field: message`. */
  errors?: string[];
  /** Drift: last plan run and its result. */
  drift: DriftState;
  driftCheckedAt?: string;
  driftChanges?: number;
  driftRun?: RunRecord;
  /** Counter of plan runs, used in their deterministic names. */
  planCount: number;
  /** A human-readable word on the state (why Removed, why waiting). */
  message?: string;
  /** Set while the spec last loaded is paused: where, `clusters/dev/cluster.yaml:7 spec.paused`. */
  paused?: string;
  /** The commit at which the reconciler first saw the pause (kept while the spec stays paused). */
  pausedRevision?: string;
  /**
   * 'set' once the pause's effects are made (the pause marker written, the run in flight
   * suspended); cleared with them when the cluster is unpaused. Written after the effects, so a
   * crash in between makes them again (both are idempotent).
   */
  pauseMarker?: 'set';
  /** Kubernetes optimistic concurrency: set by the store on read, checked on write. */
  resourceVersion?: string;
}

/**
 * A verified push webhook that a replica not leading received and handed to the leader through the
 * state object (the Service sends a webhook to either replica; the leader watches that object).
 */
export interface PushHandover {
  provider: PushEvent['provider'];
  /** Commit id after the push ('' when the payload had none). */
  after: string;
  /** When the replica received it (ISO 8601). */
  at: string;
  /** The replica that received it (its identity, the pod name). */
  by: string;
}

/** The reconciler's own state, one object per namespace. */
export interface ReconcilerState {
  /** The branch head of the last pass. */
  gitRevision?: string;
  lastPassAt?: string;
  leader?: string;
  /** The last push handed over by a replica not leading; the leader passes when it changes. */
  lastPush?: PushHandover;
  resourceVersion?: string;
}

/** What a record watch reports: a record added or changed, one that does not decode, or one deleted. */
export type RecordEvent =
  | { type: 'put'; cluster: string; record: ClusterRecord }
  | { type: 'invalid'; cluster: string; resourceVersion: string; error: unknown }
  | { type: 'removed'; cluster: string; resourceVersion: string };

export interface RecordStore {
  list(): Promise<Map<string, ClusterRecord>>;
  /**
   * Calls back for every record after an initial list (one 'put' each), then for every change,
   * restarting after a cut (a 410 Gone lists again and reports what was deleted meanwhile); the
   * returned function stops watching. Optional: without it every pass lists the records.
   */
  watch?(onEvent: (event: RecordEvent) => void): Promise<() => Promise<void>>;
  get(cluster: string): Promise<ClusterRecord | undefined>;
  /** Creates or updates; a stale resourceVersion throws ConflictError (code RECORD_CONFLICT). Returns the stored record. */
  put(record: ClusterRecord): Promise<ClusterRecord>;
  readState(): Promise<ReconcilerState>;
  writeState(state: ReconcilerState): Promise<ReconcilerState>;
  /**
   * Calls back with the state on every add and change (after an initial read); the returned function
   * stops watching. Optional: without it, handed-over pushes wait for the leader's next poll.
   */
  watchState?(onChange: (state: ReconcilerState) => void): Promise<() => Promise<void>>;
}

// ------------------------------------------------------------------------------------------------
// Leader election

export interface LeaderElector {
  /** Starts campaigning; resolves once the first attempt is made. */
  start(): Promise<void>;
  isLeader(): boolean;
  /** Called with true when this replica becomes leader, false when it loses the lease. */
  onChange(listener: (leading: boolean) => void): void;
  /** Stops renewing and, if leading, releases the lease so another replica takes over at once. */
  stop(): Promise<void>;
}

// ------------------------------------------------------------------------------------------------
// Metrics

export interface ReconcilerMetrics {
  /** Prometheus exposition text and its content type. */
  render(): Promise<{ contentType: string; body: string }>;
  passCompleted(result: 'ok' | 'error', seconds: number): void;
  submission(kind: RunKind, result: 'created' | 'adopted' | 'error'): void;
  /** Seconds from the commit first seen to its Workflow created. */
  commitToSubmission(seconds: number): void;
  /** replay: a verified push received before (same delivery id or signed body), answered and not acted on. */
  webhook(provider: string, result: 'accepted' | 'ignored' | 'unauthorized' | 'bad-request' | 'replay'): void;
  /**
   * Pushes handed over between replicas: 'sent' and 'failed' count on the replica that does not
   * lead (it received the webhook), 'received' on the leader (it passed for it).
   */
  pushHandover(result: 'sent' | 'failed' | 'received'): void;
  /** Current counts: clusters by phase, drifted clusters, leadership. */
  setClusters(byPhase: Partial<Record<ClusterPhase, number>>, drifted: number): void;
  setLeader(leading: boolean): void;
}
