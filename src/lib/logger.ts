import { pino, type DestinationStream, type Logger } from 'pino';
import { prettyLine } from './pretty-log.js';
export type { Logger };

/**
 * Structured logs; secrets and tokens are redacted wherever they appear in fields. JSON lines,
 * except on a terminal (stderr a TTY), where they are readable lines; RUNYARD_LOG_FORMAT=json or
 * pretty chooses either way.
 */
export function createLogger(opts: { level?: string; name?: string; destination?: number | string; format?: 'json' | 'pretty' } = {}): Logger {
  const dest = opts.destination ?? 2;
  const format = opts.format ?? (process.env.RUNYARD_LOG_FORMAT === 'json' || process.env.RUNYARD_LOG_FORMAT === 'pretty' ? process.env.RUNYARD_LOG_FORMAT : dest === 2 && process.stderr.isTTY ? 'pretty' : 'json');
  return pino(
    {
      name: opts.name ?? 'runyard',
      level: opts.level ?? process.env.RUNYARD_LOG_LEVEL ?? 'info',
      redact: {
        paths: ['token', 'secret', 'secrets', '*.token', '*.secret', '*.secrets', 'authorization', '*.authorization', 'credential'],
        censor: '[redacted]',
      },
    },
    format === 'pretty' && dest === 2 ? prettyStderr() : pino.destination({ dest, sync: false }),
  );
}

/** pino writes whole JSON lines to a stream's write(); this one prints them readable on stderr. */
function prettyStderr(): DestinationStream {
  const color = !!process.stderr.isTTY && !process.env.NO_COLOR;
  return { write: (line: string) => void process.stderr.write(prettyLine(line, color)) };
}

export const silentLogger: Logger = pino({ level: 'silent' });
