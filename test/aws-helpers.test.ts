/*
 * The AWS test helpers the ECS and EC2 fakes stand on: the SigV4 check accepts what the real SDK
 * and the real AWS CLI v2 sign, and refuses a changed body, a wrong key and a missing signature;
 * moto's server starts and answers the SDK.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { spawn } from 'node:child_process';
import { ECSClient, ListClustersCommand } from '@aws-sdk/client-ecs';
import { EC2Client, DescribeRegionsCommand } from '@aws-sdk/client-ec2';
import { TEST_CREDENTIALS, verifySigV4, type SignedRequest } from './helpers/aws/sigv4.js';
import { startMoto, type Moto } from './helpers/aws/moto.js';
import { runAws } from './helpers/aws/cli.js';

describe('SigV4 check', () => {
  let server: Server;
  let url = '';
  const seen: SignedRequest[] = [];
  before(async () => {
    server = createServer(async (req: IncomingMessage, res) => {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const r = { method: req.method!, url: req.url!, headers: req.headers, body: Buffer.concat(chunks) };
      seen.push(r);
      const v = verifySigV4(r);
      // Answer as ECS would, so the clients parse it and tests see the error type.
      res.writeHead(v.ok ? 200 : 400, { 'content-type': 'application/x-amz-json-1.1' });
      res.end(JSON.stringify(v.ok ? { clusterArns: [] } : { __type: v.code, message: v.message }));
    });
    await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
    url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  });
  after(() => new Promise<void>((ok) => server.close(() => ok())));

  test('accepts the SDK, refuses a wrong secret with the AWS error type', async () => {
    const ok = new ECSClient({ endpoint: url, region: 'eu-west-1', credentials: TEST_CREDENTIALS });
    assert.deepEqual((await ok.send(new ListClustersCommand({}))).clusterArns, []);
    const wrong = new ECSClient({ endpoint: url, region: 'eu-west-1', credentials: { ...TEST_CREDENTIALS, secretAccessKey: 'not-the-key' }, maxAttempts: 1 });
    await assert.rejects(wrong.send(new ListClustersCommand({})), (e: any) => e.name === 'SignatureDoesNotMatch');
  });

  test('refuses a request whose body changed after signing, and one with no signature', async () => {
    const r = seen.find((s) => verifySigV4(s).ok)!;
    assert.ok(r, 'a signed SDK request was captured');
    assert.equal((verifySigV4({ ...r, body: Buffer.from('{"maxResults":1}') }) as any).code, 'SignatureDoesNotMatch');
    const { authorization: _, ...unsigned } = r.headers;
    assert.equal((verifySigV4({ ...r, headers: unsigned }) as any).code, 'MissingAuthenticationToken');
    assert.equal((verifySigV4(r, { ...TEST_CREDENTIALS, accessKeyId: 'AKIDOTHER' }) as any).code, 'UnrecognizedClientException');
  });

  test('accepts the real AWS CLI v2', async () => {
    const before = seen.length;
    const r = await runAws(url, ['ecs', 'list-clusters']);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout).clusterArns, []);
    assert.ok(seen.length > before && verifySigV4(seen.at(-1)!).ok);
  });
});

describe('moto server', () => {
  let moto: Moto;
  before(async () => (moto = await startMoto()));
  after(() => moto?.close());

  test('answers the real SDK for ECS and EC2', async () => {
    const ecs = new ECSClient({ endpoint: moto.url, region: 'us-east-1', credentials: TEST_CREDENTIALS });
    assert.ok(Array.isArray((await ecs.send(new ListClustersCommand({}))).clusterArns));
    const ec2 = new EC2Client({ endpoint: moto.url, region: 'us-east-1', credentials: TEST_CREDENTIALS });
    assert.ok(((await ec2.send(new DescribeRegionsCommand({}))).Regions ?? []).length > 0);
  });
});
