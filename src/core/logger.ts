/**
 * Operator-style logging on winston. JSON lines when not on a TTY (containers,
 * Argo logs), readable lines on a TTY. Everything passes through redaction.
 * Logs go to stderr: stdout carries only the step's JSON summary line.
 */
import winston from 'winston';
import { redact, redactString } from './redact.js';

export type LogLevel = 'error' | 'warn' | 'info' | 'debug';
export type LogFormat = 'json' | 'pretty';

export interface Logger {
  error(message: string, meta?: Record<string, unknown>): void;
  warn(message: string, meta?: Record<string, unknown>): void;
  info(message: string, meta?: Record<string, unknown>): void;
  debug(message: string, meta?: Record<string, unknown>): void;
  /** A logger that adds these fields to every line (e.g. step, cluster). */
  child(meta: Record<string, unknown>): Logger;
}

export interface LoggerOptions {
  level?: LogLevel;
  format?: LogFormat;
  /** Where lines go; stderr by default. */
  stream?: NodeJS.WritableStream;
  /** Default fields on every line. */
  meta?: Record<string, unknown>;
}

const redactFormat = winston.format((info) => {
  const cleaned = redact({ ...info });
  for (const key of Object.keys(info)) delete (info as Record<string, unknown>)[key];
  Object.assign(info, cleaned);
  if (typeof info.message === 'string') info.message = redactString(info.message);
  return info;
});

function prettyLine(info: winston.Logform.TransformableInfo): string {
  const { level, message, timestamp, ...rest } = info as Record<string, unknown>;
  const fields = Object.entries(rest)
    .filter(([k]) => typeof k === 'string')
    .map(([k, v]) => `${k}=${typeof v === 'string' ? (/\s/.test(v) ? JSON.stringify(v) : v) : JSON.stringify(v)}`)
    .join(' ');
  const time = typeof timestamp === 'string' ? timestamp.slice(11, 19) : '';
  return `${time} ${String(level).padEnd(5)} ${String(message)}${fields ? `  ${fields}` : ''}`;
}

export function defaultLogFormat(stream: NodeJS.WritableStream = process.stderr): LogFormat {
  const env = process.env.CAPFLOW_LOG_FORMAT;
  if (env === 'json' || env === 'pretty') return env;
  return (stream as NodeJS.WriteStream).isTTY ? 'pretty' : 'json';
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const stream = options.stream ?? process.stderr;
  const format = options.format ?? defaultLogFormat(stream);
  const level = options.level ?? ((process.env.CAPFLOW_LOG_LEVEL as LogLevel | undefined) ?? 'info');
  const base = winston.createLogger({
    level,
    defaultMeta: options.meta,
    format: winston.format.combine(
      redactFormat(),
      winston.format.timestamp(),
      format === 'json' ? winston.format.json() : winston.format.printf(prettyLine),
    ),
    transports: [new winston.transports.Stream({ stream })],
  });
  return wrap(base);
}

function wrap(w: winston.Logger): Logger {
  return {
    error: (m, meta) => void w.error(m, meta ?? {}),
    warn: (m, meta) => void w.warn(m, meta ?? {}),
    info: (m, meta) => void w.info(m, meta ?? {}),
    debug: (m, meta) => void w.debug(m, meta ?? {}),
    child: (meta) => wrap(w.child(meta)),
  };
}

/** A logger that keeps lines in memory: for tests and for quiet library use. */
export function createMemoryLogger(): Logger & { lines: Array<{ level: LogLevel; message: string; meta: Record<string, unknown> }> } {
  const lines: Array<{ level: LogLevel; message: string; meta: Record<string, unknown> }> = [];
  const make = (bound: Record<string, unknown>): Logger => {
    const push = (level: LogLevel) => (message: string, meta?: Record<string, unknown>) =>
      void lines.push({ level, message: redactString(message), meta: redact({ ...bound, ...(meta ?? {}) }) });
    return { error: push('error'), warn: push('warn'), info: push('info'), debug: push('debug'), child: (m) => make({ ...bound, ...m }) };
  };
  return Object.assign(make({}), { lines });
}
