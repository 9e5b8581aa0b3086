/** Where the stand-in's parts report: an operator's message and its fields; the caller adds the time. */
export type KubeletLog = (message: string, fields?: Record<string, unknown>) => void;
