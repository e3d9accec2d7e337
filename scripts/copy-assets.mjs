// Copies non-TypeScript assets (SQL migrations, dashboard files) next to the compiled code.
import { cpSync, existsSync } from 'node:fs';
for (const dir of ['store/migrations', 'web/assets']) {
  if (existsSync(`src/${dir}`)) cpSync(`src/${dir}`, `dist/${dir}`, { recursive: true });
}
