/**
 * A one-line progress bar for the CLI with rate and ETA. On a terminal it redraws in place (\r) at most ten times a
 * second; otherwise (a pipe, a log file) it writes one line per bar, when the bar finishes.
 */
export interface ProgressStream {
  isTTY?: boolean;
  write(text: string): unknown;
}

/** 75 -> "1:15", 3725 -> "1:02:05" (tqdm's style). */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  const [h, m, sec] = [Math.floor(s / 3600), Math.floor((s % 3600) / 60), s % 60];
  const mm = h > 0 ? String(m).padStart(2, '0') : String(m);
  return `${h > 0 ? `${h}:` : ''}${mm}:${String(sec).padStart(2, '0')}`;
}

export class ProgressBar {
  private readonly total: number;
  private readonly label: string;
  private readonly stream: ProgressStream;
  private readonly now: () => number;
  private readonly start: number;
  private lastDraw = -Infinity;
  private current = 0;
  private suffix = '';
  private done = false;

  /** `now` (milliseconds) is for tests; the default is the wall clock. */
  constructor(total: number, label: string, stream: ProgressStream = process.stderr, now: () => number = Date.now) {
    this.total = total;
    this.label = label;
    this.stream = stream;
    this.now = now;
    this.start = now();
  }

  /** Advances to `current`; `suffix` is appended (losses, img/s). */
  update(current: number, suffix = ''): void {
    this.current = current;
    this.suffix = suffix;
    if (!this.stream.isTTY) return;
    const t = this.now();
    if (t - this.lastDraw < 100 && current < this.total) return;
    this.lastDraw = t;
    this.stream.write(`\r${this.line()}\x1b[K`);
  }

  /** Completes the bar: the final line, then a newline. Later calls do nothing. */
  finish(suffix?: string): void {
    if (this.done) return;
    this.done = true;
    if (this.total > 0) this.current = Math.max(this.current, this.total);
    if (suffix !== undefined) this.suffix = suffix;
    this.stream.write(this.stream.isTTY ? `\r${this.line()}\x1b[K\n` : `${this.line()}\n`);
  }

  /** "label  42% ━━━──── 21/50 3.2it/s 0:06<0:09 suffix" */
  line(): string {
    const width = 24;
    const frac = this.total > 0 ? Math.min(1, this.current / this.total) : 0;
    const filled = Math.round(frac * width);
    const secs = (this.now() - this.start) / 1000;
    const rate = secs > 0 ? this.current / secs : 0;
    const eta = rate > 0 ? Math.max(0, this.total - this.current) / rate : NaN;
    return (
      `${this.label} ${String(Math.round(frac * 100)).padStart(3)}% ` +
      `${'━'.repeat(filled)}${'─'.repeat(width - filled)} ${this.current}/${this.total} ` +
      `${rate.toFixed(1)}it/s ${formatDuration(secs)}<${formatDuration(eta)}${this.suffix ? ` ${this.suffix}` : ''}`
    );
  }
}
