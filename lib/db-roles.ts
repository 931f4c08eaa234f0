import pg from 'pg';

/** The role migration 014 grants the service's privileges to (NOLOGIN unless it is the login role). */
export const APP_ROLE = 'creditflow_app';

const ALREADY_EXISTS = new Set(['42710', '23505']); // duplicate_object; unique_violation (concurrent CREATE ROLE)

/**
 * Lets the service log in as DATABASE_URL's user with least privilege: that role gets LOGIN (and
 * the URL's password, if any) and membership in creditflow_app. Run as the owner, after the
 * migrations. Refuses a role that could undo the point of it: a superuser, or one that is (a member
 * of) the owner of the schema's tables. Idempotent; roles are cluster-wide, so another database's
 * migrate may be doing the same at the same time.
 */
export async function provisionServiceRole(ownerUrl: string, serviceUrl: string): Promise<void> {
  // Two ALTER ROLEs of one role at once: the loser fails with "tuple concurrently updated" (role
  // rows take no lock). Every step is idempotent, so doing it again is the fix; bounded.
  for (let attempt = 1; ; attempt++) {
    try {
      return await provisionOnce(ownerUrl, serviceUrl);
    } catch (err) {
      const e = err as { code?: string; message?: string };
      if (attempt >= 5 || e.code !== 'XX000' || !/concurrently updated/.test(e.message ?? '')) throw err;
      await new Promise((r) => setTimeout(r, 50 * attempt));
    }
  }
}

async function provisionOnce(ownerUrl: string, serviceUrl: string): Promise<void> {
  const service = new URL(serviceUrl);
  const user = decodeURIComponent(service.username);
  const password = service.password ? decodeURIComponent(service.password) : undefined;
  if (!user) throw new Error('DATABASE_URL names no user: the service role cannot be set up');
  const client = new pg.Client({ connectionString: ownerUrl });
  await client.connect();
  try {
    const role = pg.escapeIdentifier(user);
    if (user !== APP_ROLE) {
      await client.query(`CREATE ROLE ${role} LOGIN`).catch((err: { code?: string }) => {
        if (!ALREADY_EXISTS.has(err.code ?? '')) throw err;
      });
    }
    const owners = await client.query<{ super: boolean; owns: boolean }>(
      `SELECT r.rolsuper AS super,
              EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                       WHERE n.nspname = 'public' AND pg_has_role(r.oid, c.relowner, 'MEMBER')) AS owns
         FROM pg_roles r WHERE r.rolname = $1`,
      [user],
    );
    const found = owners.rows[0];
    if (!found || found.super || found.owns)
      throw new Error(
        `DATABASE_URL's user ${user} is a superuser or owns the schema: the service must connect as a role of its own (see README "Database roles")`,
      );
    const secret = password === undefined ? '' : ` PASSWORD ${client.escapeLiteral(password)}`;
    await client.query(`ALTER ROLE ${role} LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB NOBYPASSRLS${secret}`);
    if (user !== APP_ROLE) await client.query(`GRANT ${APP_ROLE} TO ${role}`);
  } finally {
    await client.end();
  }
}
