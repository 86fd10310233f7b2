// `npm start`: the generations API on Node, on the embedded default (PGlite + local disk) unless configured.
import { ConfigError } from '../functions/_shared/config.ts';
import { DataDirLockedError } from './data-dir-lock.ts';
import { loadDotEnv } from './local-env.ts';
import { ListenError, startNodeServer } from './node-host.ts';

loadDotEnv();
try {
  const server = await startNodeServer(process.env);
  const base = `${server.url}/functions/v1/generations`;
  console.error(
    [
      '',
      `  codebegen-storage is listening on ${base}`,
      `  health:  curl ${base}/health`,
      `  token:   TOKEN=$(npm run -s token -- --user <user-uuid>)   (or --service for the backend)`,
      `  save:    curl -X POST ${base} -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \\`,
      `             -d '{"project_id":"<project-uuid>","files":{"app/main.py":"print(1)"}}'`,
      '',
    ].join('\n'),
  );
  const stop = (signal: string) => {
    console.error(`  ${signal}: finishing in-flight requests…`);
    const force = setTimeout(() => process.exit(1), 15_000);
    force.unref();
    server.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
} catch (err) {
  // What the person starting it can fix (a setting, a taken port, a data dir in use) is one line, no stack trace.
  const fixable = err instanceof ConfigError || err instanceof ListenError || err instanceof DataDirLockedError;
  console.error(fixable ? err.message : err);
  process.exit(1);
}
