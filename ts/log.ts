/**
 * The package's logging: runs and predict streams emit `log` events ({level, text}). Without a `log` listener,
 * warnings go to process.emitWarning (type 'Yolo26Warning') unless the mode's `verbose` option is false.
 * Repeated warnings of one kind are capped, then summed up in one line, so 2000 bad labels do not flood a terminal.
 */
import type { EventEmitter } from 'node:events';

export interface LogEvent {
  level: 'info' | 'warning';
  text: string;
}

/** How many warnings of one kind are delivered one by one before the rest are only counted. */
export const REPEAT_LIMIT = 10;

export class Logger {
  private readonly counts = new Map<string, number>();

  constructor(
    private readonly target: EventEmitter,
    private readonly verbose: boolean,
  ) {}

  /** Delivers one line now. */
  emit(level: LogEvent['level'], text: string): void {
    if (this.target.listenerCount('log') > 0) this.target.emit('log', { level, text } satisfies LogEvent);
    else if (this.verbose && level === 'warning') process.emitWarning(text, 'Yolo26Warning');
  }

  /** A warning of `kind`: delivered while fewer than REPEAT_LIMIT of that kind were, then only counted (see summarize). */
  warn(text: string, kind = text): void {
    const n = (this.counts.get(kind) ?? 0) + 1;
    this.counts.set(kind, n);
    if (n <= REPEAT_LIMIT) this.emit('warning', text);
  }

  /** One line per kind that went over the limit: "... and N more <what>". */
  summarize(describe: (kind: string) => string = (k) => `warnings like '${k}'`): void {
    for (const [kind, n] of this.counts)
      if (n > REPEAT_LIMIT) this.emit('warning', `... and ${n - REPEAT_LIMIT} more ${describe(kind)} (${n} in all)`);
    this.counts.clear();
  }
}
