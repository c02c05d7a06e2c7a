/**
 * The TTY progress display: one line per blob with bytes, rate and ETA, then
 * its phase (verifying, unpacking, done). Redrawn at most every 100 ms; used
 * only when stderr is a terminal, so pipes and CI logs stay clean.
 */
import type { ProgressEvent, ProgressSink } from '../context.js';
import { formatBytes } from './command.js';

interface Line {
  label: string;
  total?: number;
  bytes: number;
  phase: string;
  startedAt: number;
}

export function createProgressRenderer(out: NodeJS.WriteStream): ProgressSink {
  const lines = new Map<string, Line>();
  let drawn = 0;
  let lastDraw = 0;
  let timer: NodeJS.Timeout | undefined;

  const render = () => {
    timer = undefined;
    lastDraw = Date.now();
    const width = Math.max(40, (out.columns ?? 80) - 1);
    let text = drawn > 0 ? `\x1b[${drawn}A` : '';
    for (const line of lines.values()) text += `\x1b[2K${describe(line).slice(0, width)}\n`;
    drawn = lines.size;
    out.write(text);
  };
  const schedule = (now = false) => {
    if (now) {
      if (timer) clearTimeout(timer);
      render();
    } else if (!timer) {
      timer = setTimeout(render, Math.max(0, 100 - (Date.now() - lastDraw)));
      timer.unref();
    }
  };

  return (event: ProgressEvent) => {
    switch (event.kind) {
      case 'start':
        lines.set(event.id, { label: event.label, total: event.total, bytes: 0, phase: 'downloading', startedAt: Date.now() });
        schedule();
        break;
      case 'advance': {
        const line = lines.get(event.id);
        if (line) line.bytes += event.bytes;
        schedule();
        break;
      }
      case 'phase': {
        const line = lines.get(event.id);
        if (line) line.phase = event.phase;
        schedule(event.phase === 'done' || event.phase === 'cached');
        break;
      }
      case 'message':
        schedule(true);
        out.write(`${event.text}\n`);
        drawn = 0;
        break;
    }
  };
}

function describe(line: Line): string {
  const head = `${line.label}: `;
  if (line.phase !== 'downloading') {
    const size = line.total ?? line.bytes;
    return `${head}${line.phase}${size ? ` (${formatBytes(size)})` : ''}`;
  }
  const seconds = (Date.now() - line.startedAt) / 1000;
  const rate = seconds > 0 ? line.bytes / seconds : 0;
  if (!line.total) return `${head}${formatBytes(line.bytes)} ${formatBytes(rate)}/s`;
  const fraction = Math.min(1, line.bytes / line.total);
  const bar = '='.repeat(Math.round(fraction * 20)).padEnd(20);
  const eta = rate > 0 ? Math.ceil((line.total - line.bytes) / rate) : undefined;
  return `${head}[${bar}] ${formatBytes(line.bytes)}/${formatBytes(line.total)} ${formatBytes(rate)}/s${eta === undefined ? '' : ` ETA ${eta}s`}`;
}
