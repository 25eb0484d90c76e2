import { describe, expect, it } from 'vitest';
import { expectDocumentedResponse } from '../helpers/openapi.js';

// The helper many integration tests lean on must be able to fail: a response is "documented"
// only when its status, its content type and its body all match openapi.yaml.

const json = (status: number, body: unknown, type = 'application/json; charset=utf-8') => ({
  status,
  headers: { 'content-type': type },
  text: JSON.stringify(body),
});

const command = {
  id: '1',
  system: 'poweroffice',
  flow: 'ansatt-employee',
  recordType: 'employee',
  recordId: '100001',
  operation: 'update',
  status: 'dead',
  attempts: 1,
  payload: { JobTitle: 'Sjef' },
  lastError: {
    status: 400,
    detail: 'IsArchived cannot be set if the contact has ledger balances.',
  },
  createdAt: '2025-01-01T10:00:00.000Z',
};

describe('expectDocumentedResponse', () => {
  it('accepts a response whose status, content type and body the spec documents', async () => {
    await expectDocumentedResponse('GET', '/healthz', json(200, { status: 'ok' }));
  });

  it('fails a body that does not match the schema: a missing required property, a wrong value', async () => {
    await expect(expectDocumentedResponse('GET', '/healthz', json(200, {}))).rejects.toThrow(
      /body matches openapi\.yaml/,
    );
    await expect(
      expectDocumentedResponse('GET', '/healthz', json(200, { status: 'fine' })),
    ).rejects.toThrow(/body matches openapi\.yaml/);
    await expect(
      expectDocumentedResponse('GET', '/admin/commands', json(200, { items: [] })),
    ).rejects.toThrow(/body matches openapi\.yaml/);
  });

  it('fails an undocumented status and an undocumented content type', async () => {
    await expect(
      expectDocumentedResponse('GET', '/healthz', json(418, { status: 'ok' })),
    ).rejects.toThrow(/documents status 418/);
    await expect(
      expectDocumentedResponse('GET', '/healthz', {
        status: 200,
        headers: { 'content-type': 'text/plain' },
        text: 'ok',
      }),
    ).rejects.toThrow(/content type/);
  });

  it('fails an operation the spec does not have', async () => {
    await expect(
      expectDocumentedResponse('DELETE', '/healthz', json(200, { status: 'ok' })),
    ).rejects.toThrow(/is in openapi\.yaml/);
  });

  it('checks each item of a list against its schema', async () => {
    await expectDocumentedResponse(
      'GET',
      '/admin/commands',
      json(200, { items: [command], nextCursor: null }),
    );
    const wrongStatus = { ...command, status: 'lost' };
    await expect(
      expectDocumentedResponse(
        'GET',
        '/admin/commands',
        json(200, { items: [wrongStatus], nextCursor: null }),
      ),
    ).rejects.toThrow(/body matches openapi\.yaml/);
  });
});
