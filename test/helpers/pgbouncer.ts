import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './child-service.js';
import { waitFor } from './wait.js';

// A PgBouncer in transaction pooling mode in front of the test server, for tests that show the
// service keeps no session state: each transaction may run on another server session, and a
// few server sessions are shared by every client. Debian's package (`apt-get install
// pgbouncer`; CI installs it).

const CANDIDATES = ['/usr/sbin/pgbouncer', '/usr/bin/pgbouncer', '/usr/local/bin/pgbouncer'];

/** The PgBouncer binary, when one is installed. */
export const pgbouncerBinary: string | undefined = CANDIDATES.find((p) => existsSync(p));

export interface PgBouncer {
  /** `url` with its host and port replaced by the bouncer's. */
  via: (url: string) => string;
  close(): Promise<void>;
}

/** Starts PgBouncer (transaction mode, `poolSize` server sessions per database) for `url`'s server. */
export async function startPgBouncer(url: string, poolSize = 3): Promise<PgBouncer> {
  if (pgbouncerBinary === undefined) throw new Error('pgbouncer is not installed');
  const target = new URL(url);
  const port = await freePort();
  const dir = await mkdtemp(join(tmpdir(), 'tbpo-pgbouncer-'));
  await chmod(dir, 0o777);
  const user = decodeURIComponent(target.username || 'postgres');
  await writeFile(join(dir, 'users.txt'), `"${user}" ""\n`);
  await writeFile(
    join(dir, 'pgbouncer.ini'),
    [
      '[databases]',
      `* = host=${target.hostname} port=${target.port || '5432'}`,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      'unix_socket_dir =',
      'auth_type = trust',
      `auth_file = ${join(dir, 'users.txt')}`,
      'pool_mode = transaction',
      `default_pool_size = ${poolSize}`,
      'max_client_conn = 200',
      // Startup parameters PgBouncer cannot pass on in transaction mode (README "PgBouncer").
      'ignore_startup_parameters = statement_timeout,idle_in_transaction_session_timeout',
      '',
    ].join('\n'),
  );
  // PgBouncer refuses to run as root; -u switches to an unprivileged user first.
  const asRoot = process.getuid?.() === 0 ? ['-u', 'postgres'] : [];
  const child: ChildProcess = spawn(pgbouncerBinary, [...asRoot, join(dir, 'pgbouncer.ini')], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let output = '';
  child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  const via = (u: string) => {
    const routed = new URL(u);
    routed.hostname = '127.0.0.1';
    routed.port = String(port);
    return routed.toString();
  };
  await waitFor(
    `pgbouncer listening on ${port}`,
    () => {
      if (child.exitCode !== null) throw new Error(`pgbouncer exited: ${output}`);
      return /listening on/.test(output);
    },
    10_000,
  );
  return {
    via,
    async close() {
      child.kill('SIGTERM');
      await exited;
      await rm(dir, { recursive: true, force: true });
    },
  };
}
