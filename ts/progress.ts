/** A one-line terminal progress bar for the CLI (redraws in place on a TTY, plain lines otherwise). */
export class ProgressBar {
  private readonly total: number;
  private readonly label: string;
  private readonly stream: NodeJS.WriteStream;
  private readonly start = Date.now();
  private lastDraw = 0;
  private current = 0;

  constructor(total: number, label: string, stream: NodeJS.WriteStream = process.stderr) {
    this.total = total;
    this.label = label;
    this.stream = stream;
  }

  /** Advances to `current` and redraws at most ten times a second; `suffix` is appended (losses, img/s). */
  update(current: number, suffix = ''): void {
    this.current = current;
    const now = Date.now();
    if (now - this.lastDraw < 100 && current < this.total) return;
    this.lastDraw = now;
    this.draw(suffix);
  }

  finish(suffix = ''): void {
    this.current = this.total;
    this.draw(suffix);
    if (this.stream.isTTY) this.stream.write('\n');
  }

  private draw(suffix: string): void {
    const width = 24;
    const frac = this.total > 0 ? Math.min(1, this.current / this.total) : 0;
    const filled = Math.round(frac * width);
    const secs = (Date.now() - this.start) / 1000;
    const rate = secs > 0 ? this.current / secs : 0;
    const line =
      `${this.label} ${String(Math.round(frac * 100)).padStart(3)}% ` +
      `${'━'.repeat(filled)}${'─'.repeat(width - filled)} ${this.current}/${this.total} ` +
      `${secs.toFixed(1)}s ${rate.toFixed(1)}it/s ${suffix}`;
    if (this.stream.isTTY) this.stream.write(`\r${line}\x1b[K`);
    else if (this.current >= this.total) this.stream.write(`${line}\n`);
  }
}
