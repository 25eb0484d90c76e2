import type { SystemName } from './db/schema.js';
import { contactPersonAdapter } from './poweroffice/contact-person.js';
import { customerAdapter } from './poweroffice/customer.js';
import { employeeAdapter } from './poweroffice/employee.js';
import { projectAdapter } from './poweroffice/project.js';
import type { RecordAdapter, RecordType } from './record-adapter.js';
import { ansattAdapter } from './tidsbanken/ansatt.js';
import { kundeAdapter } from './tidsbanken/kunde.js';
import { prosjektAdapter } from './tidsbanken/prosjekt.js';

// Every record type the service knows, each with its adapter. A type missing here, or an
// adapter missing a piece, does not compile.

const adapters = {
  ansatt: ansattAdapter,
  kunde: kundeAdapter,
  prosjekt: prosjektAdapter,
  employee: employeeAdapter,
  customer: customerAdapter,
  contactperson: contactPersonAdapter,
  project: projectAdapter,
} satisfies Record<RecordType, RecordAdapter>;

export const RECORD_ADAPTERS: Readonly<Record<RecordType, RecordAdapter>> = adapters;

/** The adapter of a stored type name; undefined for a name this version does not know. */
export function adapterOf(type: string): RecordAdapter | undefined {
  return Object.hasOwn(RECORD_ADAPTERS, type) ? RECORD_ADAPTERS[type as RecordType] : undefined;
}

/** The record types of one system, in registry order (the order pollers read them). */
export function recordTypesOf(system: SystemName): [RecordType, ...RecordType[]] {
  return Object.values(RECORD_ADAPTERS)
    .filter((a) => a.system === system)
    .map((a) => a.type) as [RecordType, ...RecordType[]];
}
