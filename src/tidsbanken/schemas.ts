import { z } from 'zod';

// Tidsbanken API v3 records as the API returns them (docs/vendor-apis.md).
// Loose: unknown fields are kept (they belong to the record), only the fields we use are
// typed. Blank text comes back as "" rather than null; both are accepted.

const text = z.string().nullish();
const flag = z.boolean().nullish();

export const AnsattSchema = z.looseObject({
  // The employee number; numeric, supplied by the caller on create. A webhook sender may
  // write it as its decimal string ("100" is Ansatt 100): read as the number.
  Id: z.union([
    z.number().int().nonnegative(),
    z
      .string()
      .regex(/^[0-9]{1,15}$/, { error: 'must be an employee number (digits)' })
      .transform(Number),
  ]),
  Fornavn: text,
  Etternavn: text,
  Adresse: text,
  Postnummer: text,
  Poststed: text,
  TlfPrivat: text,
  Mobil: text,
  Epost: text,
  Fodt: text,
  Tittel: text,
  AnsattDato: text,
  Personnummer: text,
  Sluttet: flag,
  SluttetDato: text,
  AvdelingId: text,
  Aktiv: flag,
  SistEndretDato: text,
  OpprettetDato: text,
});
export type Ansatt = z.infer<typeof AnsattSchema>;

export const KundeSchema = z.looseObject({
  // A string key (quoted in OData); a number is taken as its decimal string.
  Id: z.union([z.string().min(1), z.number().int().nonnegative()]).transform(String),
  Navn: text,
  Epost: text,
  Telefon: text,
  Mobil: text,
  Url: text,
  Organisasjonsnummer: text,
  Gateadresse: text,
  Postadresse: text,
  Postnr: text,
  Poststed: text,
  SistEndretDato: text,
});
export type Kunde = z.infer<typeof KundeSchema>;

export const ProsjektSchema = z.looseObject({
  // The project number: a string key, like Kunde's.
  Id: KundeSchema.shape.Id,
  Navn: text,
  // References: a Kunde's Id (string) and an Ansatt's Id (number).
  KundeId: z.union([z.string(), z.number().int()]).nullish(),
  AnsvarligId: z.union([z.number().int(), z.string()]).nullish(),
  StartDato: text,
  AvsluttetDato: text,
  Avsluttet: flag,
  SistEndretDato: text,
});
export type Prosjekt = z.infer<typeof ProsjektSchema>;

/** A thin reference: only the id, to be completed with a GET before processing. */
export const AnsattRefSchema = z.looseObject({ Id: AnsattSchema.shape.Id });
export const KundeRefSchema = z.looseObject({ Id: KundeSchema.shape.Id });
export const ProsjektRefSchema = z.looseObject({ Id: ProsjektSchema.shape.Id });

/** OData v4 list envelope: `{ "@odata.context": …, "value": [...] }`. */
export function odataList<T extends z.ZodType>(item: T) {
  return z.looseObject({ value: z.array(item) });
}
