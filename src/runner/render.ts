/**
 * Renderers of runner events: a live tree for terminals, one plain line per
 * state change otherwise, and a summary table at the end. They write to the
 * stream they are given and never to anything else.
 */
import type { NodePhase, NodeRecord, RunResult, RunnerEvent } from './types.js';

export interface Renderer {
  onEvent(e: RunnerEvent): void;
  /** Stops timers and restores the terminal; idempotent. */
  close(): void;
}

type Stream = NodeJS.WritableStream;

const SYMBOLS: Record<NodePhase, string> = {
  Pending: '◷',
  Running: '●',
  Succeeded: '✔',
  Failed: '✖',
  Error: '⚠',
  Skipped: '○',
  Omitted: '-',
};
const SPINNER = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
const COLORS: Record<NodePhase, string> = {
  Pending: '\x1b[90m',
  Running: '\x1b[36m',
  Succeeded: '\x1b[32m',
  Failed: '\x1b[31m',
  Error: '\x1b[31m',
  Skipped: '\x1b[90m',
  Omitted: '\x1b[90m',
};
const RESET = '\x1b[0m';

/** `1.2s`, `1m05s`, `1h02m`. */
export function formatDuration(ms: number): string {
  if (ms < 0) ms = 0;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`;
  const s = Math.floor(ms / 1000);
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

function clock(d: Date): string {
  return d.toTimeString().slice(0, 8);
}

function label(n: NodeRecord): string {
  return n.path || n.displayName;
}

function elapsed(n: NodeRecord, now: number): number | undefined {
  if (!n.startedAt) return undefined;
  return (n.finishedAt?.getTime() ?? now) - n.startedAt.getTime();
}

// ---------------------------------------------------------------- plain

/**
 * One line per state change: `12:00:01 provision-vpc            Running`,
 * with the attempt, the duration of finished nodes and the message.
 */
export function createPlainRenderer(stream: Stream, options: { width?: number } = {}): Renderer {
  const width = options.width ?? 28;
  const last = new Map<string, string>();
  return {
    onEvent(e) {
      switch (e.type) {
        case 'run-started':
          stream.write(`${clock(e.time)} ${e.workflowName} started (WorkflowTemplate ${e.templateName}, logs in ${e.runDir})\n`);
          return;
        case 'mutex-waiting':
          stream.write(`${clock(e.time)} ${e.nodeName.padEnd(width)} Waiting for mutex ${e.mutex}\n`);
          return;
        case 'semaphore-waiting':
          stream.write(`${clock(e.time)} ${e.nodeName.padEnd(width)} Waiting for semaphore ${e.semaphore} (limit ${e.limit})\n`);
          return;
        case 'retry':
          return; // the node's Pending line says it
        case 'run-finished': {
          const r = e.result;
          stream.write(`${clock(e.time)} ${r.workflowName} ${r.phase} in ${formatDuration(r.finishedAt.getTime() - r.startedAt.getTime())}${r.message ? `: ${r.message}` : ''}\n`);
          return;
        }
        case 'mutex-acquired':
        case 'semaphore-acquired':
          return;
        case 'node': {
          const n = e.node;
          if (n.depth === 0 && n.type === 'DAG') return; // the run-started/run-finished lines say it
          const attempt = n.attempts.length > 1 && n.phase === 'Running' ? ` (attempt ${n.attempts.length})` : '';
          const key = `${n.phase}|${n.attempts.length}|${n.message ?? ''}`;
          if (last.get(n.id) === key) return;
          last.set(n.id, key);
          if (n.phase === 'Pending' && !n.message) return;
          const done = n.finishedAt ? ` ${formatDuration(elapsed(n, e.time.getTime()) ?? 0)}` : '';
          const msg = n.message ? `  ${n.message}` : '';
          stream.write(`${clock(e.time)} ${label(n).padEnd(width)} ${n.phase}${attempt}${done}${msg}\n`);
        }
      }
    },
    close() {},
  };
}

// ---------------------------------------------------------------- tty

export interface TtyRendererOptions {
  /** Frames per second; default 10. */
  fps?: number;
  /** Columns to cut lines at; default the stream's columns or 120. */
  columns?: number;
}

/** A live tree redrawn in place: symbol, task path, phase, elapsed time. */
export function createTtyRenderer(stream: Stream, options: TtyRendererOptions = {}): Renderer {
  const nodes = new Map<string, NodeRecord>();
  const order: string[] = [];
  let header = '';
  let footer = '';
  let drawn = 0;
  let frame = 0;
  let closed = false;
  const columns = (): number => options.columns ?? (stream as { columns?: number }).columns ?? 120;
  const showCursor = (): void => {
    stream.write('\x1b[?25h');
  };
  stream.write('\x1b[?25l');
  process.once('exit', showCursor);

  const lines = (now: number): string[] => {
    const out = [header];
    for (const id of order) {
      const n = nodes.get(id)!;
      if (n.depth === 0 && n.type === 'DAG') continue;
      const sym = n.phase === 'Running' ? SPINNER[frame % SPINNER.length]! : SYMBOLS[n.phase];
      const indent = '  '.repeat(Math.max(0, n.depth - (n.displayName === 'onExit' ? 0 : 1)));
      const t = elapsed(n, now);
      const attempt = n.attempts.length > 1 ? ` attempt ${n.attempts.length}` : '';
      const msg = n.message && n.phase !== 'Succeeded' ? `  ${n.message}` : '';
      const plain = `${indent}${sym} ${n.displayName}  ${n.phase}${attempt}${t !== undefined ? ` ${formatDuration(t)}` : ''}${msg}`;
      const cut = plain.length > columns() - 1 ? `${plain.slice(0, columns() - 2)}…` : plain;
      out.push(`${COLORS[n.phase]}${cut}${RESET}`);
    }
    if (footer) out.push(footer);
    return out;
  };
  const draw = (): void => {
    if (closed) return;
    frame++;
    const ls = lines(Date.now());
    let s = drawn > 0 ? `\x1b[${drawn}A\r` : '';
    s += ls.map((l) => `\x1b[2K${l}`).join('\n') + '\n';
    s += '\x1b[J';
    stream.write(s);
    drawn = ls.length;
  };
  const timer = setInterval(draw, Math.round(1000 / (options.fps ?? 10)));
  timer.unref();

  return {
    onEvent(e) {
      switch (e.type) {
        case 'run-started':
          header = `${e.workflowName}  (WorkflowTemplate ${e.templateName}; logs in ${e.runDir})`;
          break;
        case 'node':
          if (!nodes.has(e.node.id)) order.push(e.node.id);
          nodes.set(e.node.id, e.node);
          break;
        case 'mutex-waiting':
          footer = `◷ waiting for mutex ${e.mutex}`;
          break;
        case 'semaphore-waiting':
          footer = `◷ waiting for semaphore ${e.semaphore} (limit ${e.limit})`;
          break;
        case 'mutex-acquired':
        case 'semaphore-acquired':
          footer = '';
          break;
        case 'run-finished':
          footer = `${e.result.workflowName} ${e.result.phase} in ${formatDuration(e.result.finishedAt.getTime() - e.result.startedAt.getTime())}`;
          draw();
          break;
        case 'retry':
          break;
      }
    },
    close() {
      if (closed) return;
      draw();
      closed = true;
      clearInterval(timer);
      showCursor();
      process.removeListener('exit', showCursor);
    },
  };
}

// ---------------------------------------------------------------- summary

/** The end-of-run table: one row per node, indented by depth. */
export function formatSummaryTable(result: RunResult): string {
  const rows: string[][] = [['STEP', 'TEMPLATE', 'PHASE', 'ATTEMPTS', 'DURATION', 'MESSAGE']];
  for (const n of result.nodes) {
    if (n.depth === 0 && n.type === 'DAG') continue;
    const indent = '  '.repeat(Math.max(0, n.depth - (n.displayName === 'onExit' ? 0 : 1)));
    const d = elapsed(n, result.finishedAt.getTime());
    rows.push([
      `${indent}${n.displayName}`,
      n.templateRef ?? n.templateName,
      n.phase,
      n.type === 'Pod' ? String(n.attempts.length) : '',
      d !== undefined && n.type !== 'Skipped' ? formatDuration(d) : '',
      (n.message ?? '').replace(/\s+/g, ' ').slice(0, 80),
    ]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const lines = rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd());
  const total = formatDuration(result.finishedAt.getTime() - result.startedAt.getTime());
  lines.push('', `${result.workflowName}: ${result.phase} in ${total}${result.message ? ` (${result.message})` : ''}`);
  if (Object.keys(result.outputs).length > 0) {
    lines.push('outputs:');
    for (const [k, v] of Object.entries(result.outputs)) lines.push(`  ${k} = ${v}`);
  }
  return lines.join('\n') + '\n';
}
