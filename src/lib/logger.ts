import { pino, type Logger } from 'pino';
export type { Logger };

/** Structured JSON logs; secrets and tokens are redacted wherever they appear in fields. */
export function createLogger(opts: { level?: string; name?: string; destination?: number | string } = {}): Logger {
  return pino(
    {
      name: opts.name ?? 'runyard',
      level: opts.level ?? process.env.RUNYARD_LOG_LEVEL ?? 'info',
      redact: {
        paths: ['token', 'secret', 'secrets', '*.token', '*.secret', '*.secrets', 'authorization', '*.authorization', 'credential'],
        censor: '[redacted]',
      },
    },
    pino.destination({ dest: opts.destination ?? 2, sync: false }),
  );
}

export const silentLogger: Logger = pino({ level: 'silent' });
